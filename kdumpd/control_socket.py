"""The control socket: ``kdumpd reload`` asks the running daemon to decide now and waits
for its answer (the decision and, when it reloaded, the outcome); ``kdumpd status`` asks
what the daemon last read (crash_hotplug with its time, the header read back, the counts)
and is answered at once, so that it never reads crash_hotplug itself, which takes the
kexec lock, while kdumpd runs.

The socket is a unix stream socket in kdumpd's runtime directory, mode 0600; the daemon
also checks each peer's credentials (SO_PEERCRED): only root may ask, and the client checks
that root answers. No process is ever signalled on the strength of a PID read from a file.
One request line, one JSON answer line, then the connection closes.

The server never blocks the daemon's loop: connections are non-blocking and read as their
bytes arrive (each one registered in the loop's selector); one that has not sent its line
within CONNECTION_DEADLINE_S is dropped by the loop's timer, at most MAX_CONNECTIONS wait at
once (more are refused), and an answer that does not fit the socket's buffer at once is
cut short rather than waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import stat
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REQUEST = b"reload\n"
STATUS = b"status\n"
MAX_ANSWER = 1 << 16  # a status answer (the header's ranges can be many)
MAX_LINE = 4096
CONNECTION_DEADLINE_S = 1.0  # a client that connects and says nothing is dropped
CHECK_S = 0.25  # how often the loop looks for such clients while any is connected
MAX_CONNECTIONS = 64  # connections still sending their line; more are refused
CLIENT_TIMEOUT_S = 1.0  # the client's send: a daemon reads at once


class ControlError(Exception):
    """The control socket cannot be used; one line."""


@dataclass(frozen=True)
class Answer:
    """What the daemon decided for a request: ``reload`` and ``reason`` are the decision;
    ``ok`` is False when the reload failed (``detail`` says why) or the daemon could not
    decide (stopping)."""

    reload: bool
    reason: str
    ok: bool = True
    detail: str = ""


@dataclass
class _Connection:
    sock: socket.socket
    pid: int
    deadline: float
    data: bytes = field(default=b"")


class ControlServer:
    """Listens at ``path``; :meth:`poll` returns the connections that asked for a
    decision, already vetted (``allowed_uid``, root in production). Nothing here blocks."""

    def __init__(self, path: Path, *, allowed_uid: int = 0,
                 known: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path = path
        self.allowed_uid = allowed_uid
        self._known = known  # what the daemon knows, for a status request
        self._sock: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._open: dict[int, _Connection] = {}  # by fd: still sending their line
        self._ready: list[tuple[socket.socket, int]] = []

    def open(self, selector: selectors.BaseSelector | None = None) -> None:
        """Bind and listen; a stale socket of an earlier run is replaced, any other file
        at ``path`` is refused. With ``selector``, the socket and every connection are
        registered in it (key data "control"). Raises ControlError."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            pass
        except OSError as error:
            raise ControlError(f"{self.path}: {error.strerror}") from None
        else:
            if not stat.S_ISSOCK(mode):
                raise ControlError(f"{self.path} exists and is not a socket: not replaced")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window with a wider mode
        try:
            sock.bind(str(self.path))
            sock.listen(MAX_CONNECTIONS)
        except OSError as error:
            sock.close()
            raise ControlError(f"cannot listen on {self.path}: {error.strerror}") from None
        finally:
            os.umask(old_umask)
        sock.setblocking(False)
        self._sock = sock
        if selector is not None:
            selector.register(sock, selectors.EVENT_READ, "control")
            self._selector = selector

    def fileno(self) -> int:
        if self._sock is None:
            raise ControlError("the control socket is not open")
        return self._sock.fileno()

    @property
    def connections(self) -> int:
        """Connections that have not sent their whole line yet."""
        return len(self._open)

    def poll(self, now: float) -> list[tuple[socket.socket, int]]:
        """Accept what is waiting, read what has arrived, drop who is past the deadline
        (all without blocking); answer status requests; return the connections that
        asked for a decision, each with its peer's pid."""
        self._accept_new(now)
        for conn in list(self._open.values()):
            self._read(conn)
        self.expire(now)
        ready, self._ready = self._ready, []
        return ready

    def accept(self) -> tuple[socket.socket, int] | None:
        """One connection that asked for a decision (:meth:`poll` on the monotonic
        clock), or None; the others stay for the next call."""
        self._ready = self.poll(time.monotonic()) + self._ready
        return self._ready.pop(0) if self._ready else None

    def expire(self, now: float) -> None:
        """Drop the connections that have not sent their line by their deadline."""
        for conn in [c for c in self._open.values() if now >= c.deadline]:
            self._forget(conn)
            reply(conn.sock, Answer(False, f"refused: no request within "
                                    f"{CONNECTION_DEADLINE_S:.0f} s", ok=False))

    def _accept_new(self, now: float) -> None:
        listener = self._sock
        if listener is None:
            return
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: the next wake-up tries again
                return
            sock.setblocking(False)
            pid, uid = peer(sock)
            if uid != self.allowed_uid:
                reply(sock, Answer(False, f"refused: uid {uid} may not ask (root only)",
                                   ok=False))
                continue
            if len(self._open) >= MAX_CONNECTIONS:
                reply(sock, Answer(False, f"refused: {MAX_CONNECTIONS} connections are "
                                   "waiting already; try again", ok=False))
                continue
            conn = _Connection(sock, pid, now + CONNECTION_DEADLINE_S)
            self._open[sock.fileno()] = conn
            if self._selector is not None:
                self._selector.register(sock, selectors.EVENT_READ, "control")

    def _read(self, conn: _Connection) -> None:
        try:
            chunk = conn.sock.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        conn.data += chunk
        if chunk and not conn.data.endswith(b"\n") and len(conn.data) < MAX_LINE:
            return  # more is coming
        self._forget(conn)
        line = conn.data
        if line == STATUS and self._known is not None:
            send_json(conn.sock, self._known())
        elif line == REQUEST:
            self._ready.append((conn.sock, conn.pid))
        else:
            reply(conn.sock, Answer(False, f"refused: unknown request {line[:40]!r}",
                                    ok=False))

    def _forget(self, conn: _Connection) -> None:
        self._open.pop(conn.sock.fileno(), None)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)

    def close(self) -> None:
        for conn in list(self._open.values()):
            self._forget(conn)
            conn.sock.close()
        for sock, _ in self._ready:
            sock.close()
        self._ready.clear()
        if self._sock is None:
            return
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._sock)
            self._selector = None
        self._sock.close()
        self._sock = None
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()


def peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def reply(conn: socket.socket, answer: Answer) -> None:
    """Send ``answer`` and close; a client that went away is no error."""
    send_json(conn, asdict(answer))


def send_json(conn: socket.socket, document: dict[str, Any]) -> None:
    """Send one JSON line and close, never waiting: a client that went away, or one whose
    socket buffer is full (an answer is at most MAX_ANSWER bytes; a fresh socket's buffer
    takes that whole), gets what fitted. No error either way."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.sendall((json.dumps(document, allow_nan=False) + "\n").encode())
    conn.close()


def ask_status(path: Path, timeout_s: float, *, server_uid: int = 0) -> dict[str, Any]:
    """What the daemon listening at ``path`` knows. Raises OSError when none answers
    (FileNotFoundError, ConnectionRefusedError, PermissionError for a non-root caller),
    ControlError for an answer that cannot be read or a listener that is not
    ``server_uid``'s (root's: anyone who can create the socket could answer otherwise)."""
    data = _exchange(path, STATUS, timeout_s, MAX_ANSWER, server_uid)
    try:
        document = json.loads(data)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ControlError(f"unreadable answer on {path}: {data[:80]!r}")
    return document


def _exchange(path: Path, request: bytes, timeout_s: float, limit: int,
              server_uid: int) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        _, uid = peer(sock)
        if uid != server_uid:
            raise ControlError(f"{path} is answered by uid {uid}, not by kdumpd (uid "
                               f"{server_uid}): not asked")
        sock.sendall(request)
        data = b""
        try:
            while not data.endswith(b"\n") and len(data) <= limit:
                chunk = sock.recv(limit)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            raise ControlError(f"no answer on {path} in {timeout_s:.0f} s") from None
    return data


def ask(path: Path, timeout_s: float, *, server_uid: int = 0) -> Answer:
    """Ask the daemon listening at ``path`` to decide now; its answer.

    Raises FileNotFoundError or ConnectionRefusedError when no daemon listens there,
    ControlError for an answer that cannot be read.
    """
    data = _exchange(path, REQUEST, timeout_s, MAX_LINE, server_uid)
    try:
        fields = json.loads(data)
        return Answer(bool(fields["reload"]), str(fields["reason"]), bool(fields["ok"]),
                      str(fields["detail"]))
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"unreadable answer on {path}: {data[:80]!r}") from None
