"""The control socket: ``kdumpd reload`` asks the running daemon to decide now and waits
for its answer (the decision and, when it reloaded, the outcome); ``kdumpd status`` asks
what the daemon last read (crash_hotplug with its time, the header read back, the counts)
and is answered at once, so that it never reads crash_hotplug itself, which takes the
kexec lock, while kdumpd runs.

The socket is a unix stream socket in kdumpd's runtime directory, mode 0600; the daemon
also checks each peer's credentials (SO_PEERCRED): only root may ask. No process is ever
signalled on the strength of a PID read from a file. One request line, one JSON answer
line, then the connection closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

REQUEST = b"reload\n"
STATUS = b"status\n"
MAX_ANSWER = 1 << 16  # a status answer (the header's ranges can be many)
MAX_LINE = 4096
REQUEST_TIMEOUT_S = 1.0  # a root client that connects and says nothing is dropped


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


class ControlServer:
    """Listens at ``path``; :meth:`accept` returns a connection that asked for a
    decision, already vetted (``allowed_uid``, root in production)."""

    def __init__(self, path: Path, *, allowed_uid: int = 0,
                 known: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path = path
        self.allowed_uid = allowed_uid
        self._known = known  # what the daemon knows, for a status request
        self._sock: socket.socket | None = None

    def open(self) -> None:
        """Bind and listen; a stale socket of an earlier run is replaced, any other file
        at ``path`` is refused. Raises ControlError."""
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
            sock.listen(8)
        except OSError as error:
            sock.close()
            raise ControlError(f"cannot listen on {self.path}: {error.strerror}") from None
        finally:
            os.umask(old_umask)
        sock.setblocking(False)
        self._sock = sock

    def fileno(self) -> int:
        if self._sock is None:
            raise ControlError("the control socket is not open")
        return self._sock.fileno()

    def accept(self) -> tuple[socket.socket, int] | None:
        """The next connection that asked for a decision, and its peer's pid; None when
        there was none or it was refused (and told why)."""
        if self._sock is None:
            return None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        pid, uid = peer(conn)
        if uid != self.allowed_uid:
            reply(conn, Answer(False, f"refused: uid {uid} may not ask (root only)", ok=False))
            return None
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            line = conn.recv(MAX_LINE)
        except OSError:
            line = b""
        if line == STATUS and self._known is not None:
            send_json(conn, self._known())
            return None
        if line != REQUEST:
            reply(conn, Answer(False, f"refused: unknown request {line[:40]!r}", ok=False))
            return None
        return conn, pid

    def close(self) -> None:
        if self._sock is None:
            return
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
    """Send one JSON line and close; a client that went away is no error."""
    with contextlib.suppress(OSError):
        conn.settimeout(REQUEST_TIMEOUT_S)
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
