"""`python -m bench.patched run ...`: kdumpd with a proposed UdevSource.drain, to measure it.

Not a fix of kdumpd (bench/ does not edit kdumpd/): it replaces ``UdevSource.drain`` in
this process only, so the benchmark can show what the proposals in RESULTS.md would do.
``KDUMPD_BENCH_DRAIN`` picks the variant:

- ``poll-error``: the loop of the time, but an errno-less ``OSError`` from pyudev's poll
  (it raises ``OSError("Error while polling fd")`` on POLLERR, which is how an overflowed
  netlink socket reports) counts as lost events, like ENOBUFS. Adopted by kdumpd in
  d332910, so the benchmark no longer runs it.
- ``receive``: no poll per event; receive from the non-blocking socket until EAGAIN, with
  ENOBUFS (from recvmsg) or a pending socket error meaning lost events.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any

from kdumpd import cli, source
from kdumpd.events import Event, relevant
from kdumpd.source import EventsLost, UdevSource


def drain_poll_error(self: Any, limit: int = 4096) -> list[Event]:
    events: list[Event] = []
    for _ in range(limit):
        try:
            device = self._monitor.poll(timeout=0)
        except OSError as error:
            if error.errno in (errno.ENOBUFS, None):
                raise EventsLost from None
            raise
        if device is None:
            break
        if relevant(device.subsystem, device.action):
            events.append(Event(device.subsystem, device.action, device.device_path))
    return events


def drain_receive(self: Any, limit: int = 4096) -> list[Event]:
    events: list[Event] = []
    monitor = self._monitor
    for _ in range(limit):
        try:
            device = monitor._receive_device()  # None on EAGAIN: the socket is empty
        except OSError as error:
            if error.errno == errno.ENOBUFS:
                raise EventsLost from None
            raise
        if device is None:
            with socket.fromfd(monitor.fileno(), socket.AF_NETLINK, socket.SOCK_RAW) as sock:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise EventsLost  # a pending error (ENOBUFS) that no read reported
            break
        action, subsystem = device.action, device.subsystem
        if relevant(subsystem, action):
            events.append(Event(subsystem, action, device.device_path))
    return events


VARIANTS = {"poll-error": drain_poll_error, "receive": drain_receive}


def main() -> int:
    variant = os.environ.get("KDUMPD_BENCH_DRAIN", "poll-error")
    UdevSource.drain = VARIANTS[variant]  # type: ignore[method-assign]
    assert source.UdevSource.drain is VARIANTS[variant]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
