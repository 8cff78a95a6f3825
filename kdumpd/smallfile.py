"""Reading a small file that must not block or run on: the one way kdumpd does it.

A FIFO, a device or a directory planted where a configuration or a kernel attribute is
expected would stall the event loop or exhaust memory, so the file is opened
non-blocking and refused unless it is a regular file, and at most ``limit`` bytes are
read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable


class Refused(OSError):
    """The opened file failed the caller's check (``vet``); nothing was read."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(errno.EPERM, problem, str(path))


class NotRegularFile(OSError):
    """The path names something other than a regular file; nothing was read."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


def read_regular(path: Path, limit: int,
                 vet: Callable[[int], str | None] | None = None) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``.

    ``vet(fd)`` checks the opened file before anything is read (the file that is read,
    not whatever the name points to by then); a problem it returns raises Refused.
    Raises FileNotFoundError, NotRegularFile, Refused, or another OSError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(path)
        problem = vet(fd) if vet is not None else None
        if problem:
            raise Refused(path, problem)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    finally:
        os.close(fd)
