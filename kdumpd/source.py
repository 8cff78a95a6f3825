"""Where events come from: a pyudev netlink monitor (real) or a pipe-backed fake.

Both expose ``fileno()`` for a selector and ``drain()``, which returns the relevant events
received so far without blocking and raises :class:`EventsLost` when the kernel dropped
messages because the socket buffer overflowed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from collections.abc import Iterable
from typing import Any, Callable, Protocol

from kdumpd import command
from kdumpd.command import CommandError, Runner
from kdumpd.events import SUBSYSTEMS, Event, relevant

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class EventsLost(Exception):
    """The netlink socket overflowed (ENOBUFS): events were dropped and are gone."""


class EventSource(Protocol):
    kind: str  # "udev" or "kernel"

    def fileno(self) -> int: ...

    def drain(self, limit: int = 4096) -> list[Event]: ...

    def reopen(self, kind: str | None = None, receive_buffer: int | None = None) -> None: ...

    def close(self) -> None: ...


# Whether a udevd answers, asked the way systemd's tools ask: `udevadm control --ping`
# (systemd >= 241) sends a ping over /run/udev/control and exits 0 once udevd has taken it
# and closed the connection; a missing or stale socket fails at once, a hung udevd after
# --timeout (udevadm 252 gives up 1.24 s after --timeout=1, measured). The runner's own
# timeout is for the one wait --timeout does not cover: udevadm's blocking connect() to a
# udevd whose listen backlog is full. The daemon pings every 3 s from its loop
# (daemon.UDEV_WATCH_S), so the worst case stays well inside the 60 s watchdog.
UDEV_PING_TIMEOUT_S = 1
UDEV_PING_KILL_S = 3.0


def udev_answers(runner: Runner = command.run, udevadm: str = "udevadm") -> bool:
    """True when a udevd answers ``udevadm control --ping`` (run through ``runner``).

    False when it does not (no socket, a stale one, no reply within
    ``UDEV_PING_TIMEOUT_S``), when udevadm is not installed or had to be killed.
    Never raises.
    """
    argv = [udevadm, "control", "--ping", f"--timeout={UDEV_PING_TIMEOUT_S}"]
    try:
        done = runner(argv, UDEV_PING_KILL_S)
    except CommandError:
        return False
    return done.returncode == 0


def resolve_source(setting: str, udev_alive: Callable[[], bool] = udev_answers) -> str:
    """``auto`` means udev when a udevd answers its ping, else kernel."""
    if setting != "auto":
        return setting
    return "udev" if udev_alive() else "kernel"


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes; returns what the kernel granted.

    SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it SO_RCVBUF is capped by
    net.core.rmem_max, which is still better than nothing.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class UdevSource:
    """pyudev monitor for cpu and memory devices; libudev objects stay on one thread."""

    def __init__(self, kind: str, receive_buffer: int) -> None:
        self.kind = kind
        self._receive_buffer = receive_buffer
        self.granted_buffer = 0
        self._monitor: Any = None
        self._open()

    def _open(self) -> None:
        import pyudev  # the OS edge: imported where the real source is built

        monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source=self.kind)
        for subsystem in SUBSYSTEMS:
            monitor.filter_by(subsystem)
        monitor.start()
        # fromfd duplicates the descriptor; options apply to the shared socket.
        with socket.fromfd(monitor.fileno(), socket.AF_NETLINK, socket.SOCK_RAW) as sock:
            self.granted_buffer = set_receive_buffer(sock, self._receive_buffer)
        self._monitor = monitor

    def fileno(self) -> int:
        return int(self._monitor.fileno())

    def drain(self, limit: int = 4096) -> list[Event]:
        events: list[Event] = []
        for _ in range(limit):
            try:
                device = self._monitor.poll(timeout=0)
            except OSError as error:
                # An overflowed netlink socket has sk_err = ENOBUFS: recv fails with
                # ENOBUFS, and poll() reports POLLERR, which pyudev raises as an OSError
                # without errno ("Error while polling fd").
                if error.errno in (None, errno.ENOBUFS):
                    raise EventsLost(str(error)) from None
                raise
            if device is None:
                break
            action = device.action
            subsystem = device.subsystem
            if relevant(subsystem, action):
                events.append(Event(subsystem, action, device.device_path))
        return events

    def reopen(self, kind: str | None = None, receive_buffer: int | None = None) -> None:
        """Start over with a fresh socket (after an overflow, or of another kind)."""
        self.close()
        self.kind = kind or self.kind
        self._receive_buffer = receive_buffer or self._receive_buffer
        self._open()

    def close(self) -> None:
        self._monitor = None  # libudev closes the socket when the monitor is freed


class FakeSource:
    """Events pushed by a test or the demo; readable through a pipe like a real socket."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._lock = threading.Lock()  # tests and benchmarks push from another thread
        self._queue: list[Event] = []
        self._failure: Exception | None = None
        self.reopened = 0
        self.kind = "kernel"

    def push(self, events: Iterable[Event]) -> None:
        with self._lock:
            self._queue.extend(events)
        os.write(self._write, b"x")

    def overflow(self, error: Exception | None = None) -> None:
        """Make the next drain fail like an overflowed socket (or with ``error``)."""
        self._failure = error if error is not None else EventsLost()
        os.write(self._write, b"x")

    def fileno(self) -> int:
        return self._read

    def drain(self, limit: int = 4096) -> list[Event]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read, 65536)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        with self._lock:
            taken, self._queue = self._queue[:limit], self._queue[limit:]
            more = bool(self._queue)
        if more:
            os.write(self._write, b"x")
        return [e for e in taken if relevant(e.subsystem, e.action)]

    def reopen(self, kind: str | None = None, receive_buffer: int | None = None) -> None:
        self.reopened += 1
        self.kind = kind or self.kind

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
