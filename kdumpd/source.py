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
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable, Protocol

from kdumpd.events import SUBSYSTEMS, Event, relevant

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
UDEV_CONTROL = Path("/run/udev/control")


class EventsLost(Exception):
    """The netlink socket overflowed (ENOBUFS): events were dropped and are gone."""


class EventSource(Protocol):
    kind: str  # "udev" or "kernel"

    def fileno(self) -> int: ...

    def drain(self, limit: int = 4096) -> list[Event]: ...

    def reopen(self, kind: str | None = None, receive_buffer: int | None = None) -> None: ...

    def close(self) -> None: ...


# systemd-udevd's control message (src/udev/udev-ctrl.c, UdevCtrlMessageWire): a 16-byte
# version string, the magic, the type and a 256-byte value. Type 0 is
# _UDEV_CTRL_END_MESSAGES, what `udevadm control` sends last: udevd ignores it quietly and
# closes the connection. A connection closed without a whole message would make udevd log
# "Received message with invalid length" each time.
UDEV_CTRL_MAGIC = 0xDEAD1DEA
UDEV_CTRL_END_MESSAGES = 0
UDEV_CTRL_MESSAGE = struct.pack("=16sII256s", b"udev-kdumpd", UDEV_CTRL_MAGIC,
                                UDEV_CTRL_END_MESSAGES, b"")


def udev_answers(control: Path = UDEV_CONTROL, timeout: float = 1.0) -> bool:
    """True when a udevd answers on its control socket: it takes a well-formed message
    and closes the connection, as for `udevadm control --ping` (a stale socket file
    refuses the connection; a hung udevd does not close it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        try:
            # udevd wants our credentials with the message (SCM_CREDENTIALS, uid 0).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.connect(str(control))
            sock.sendall(UDEV_CTRL_MESSAGE)
            return sock.recv(1) == b""  # udevd closed the connection: it answered
        except OSError:
            return False


def resolve_source(setting: str, udev_alive: Callable[[], bool] = udev_answers) -> str:
    """``auto`` means udev when a udevd answers on its control socket, else kernel."""
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
