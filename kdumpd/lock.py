"""One owner of reloads: ``kdumpd run`` holds an flock on ``<state dir>/lock``.

The lock file holds the owner's pid, so ``kdumpd reload`` can hand its request to the
running daemon instead of reloading beside it. The file is never deleted (deleting a
lock file races with the next owner); the kernel releases the lock when the owner dies.

Only root may open it (mode 0600, an older 0644 file is set to 0600 at every take): flock
needs no write access, so any user who can open the file read-only could hold the lock and
keep kdumpd from starting (issue 30, item 2).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

FILE_NAME = "lock"
MODE = 0o600


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is what its file says (0 if unreadable)."""

    def __init__(self, path: Path, pid: int, command: str = "") -> None:
        owner = f"pid {pid}" if pid else "another process"
        doing = f"kdumpd {command}" if command else "another kdumpd"
        super().__init__(f"{doing} ({owner}) owns reloads: lock {path} is held")
        self.path = path
        self.pid = pid
        self.command = command  # "run" or "reload"; "" if unreadable


def acquire(directory: Path, command: str = "run") -> int:
    """Take the lock for ``command`` without waiting; returns the descriptor to keep open.
    The file is made mode 0600 first, whoever holds it (never through a symlink).

    Raises LockHeld, or OSError when the file cannot be opened or its mode set.
    """
    path = directory / FILE_NAME
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, MODE)
    try:
        # A file an older kdumpd created 0644: nobody but root may open it from now on
        # (who opened it before keeps the descriptor until they close it).
        os.fchmod(fd, MODE)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, holder = _read_owner(fd)
        os.close(fd)
        raise LockHeld(path, pid, holder) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {command}\n".encode())
    return fd


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _read_owner(fd: int) -> tuple[int, str]:
    """(pid, command) from the lock file; (0, "") when unreadable."""
    try:
        words = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        return 0, ""
    if not words or not words[0].isdigit():
        return 0, ""
    return int(words[0]), words[1] if len(words) > 1 else ""
