"""What the kernel says about its own updates of the crash kernel's header.

The kernel's hotplug handler (``crash_handle_hotplug_event()``) takes the kexec lock
with a trylock; when someone holds it (any load syscall, a read of
``/sys/kernel/kexec_crash_size``) it updates nothing, logs one line, and
``crash_hotplug`` keeps reading 1. The identical line is printed by a *read* of
``crash_hotplug`` whose own trylock fails during a load; that read skips nothing (the
update and the read both take ``__crash_hotplug_lock`` first), so which one a line is
is told by skip_lines.py, from the hotplug events around it. kdumpd reads this boot's
kernel messages from the journal (``_TRANSPORT=kernel``: not its own messages, which
quote the line): the unit's ``ProtectKernelLogs=yes`` hides /dev/kmsg, not the journal.

:class:`JournalKernelLog` is the real edge (systemd-python's ``journal.Reader``), and the
daemon takes anything with the :class:`KernelLog` shape: :class:`FileKernelLog` follows a
file of kernel messages (``[events] kernel_log = "/path"``: demos, fake roots, black-box
tests of ``kdumpd run``), and tests pass :class:`FakeKernelLog`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

log = logging.getLogger("kdumpd")

# crash_handle_hotplug_event(), pr_fmt "crash hp: ": 6.11 and later, then 6.6-6.10.
SKIP_LINES = (
    "kexec_trylock() failed, kdump image may be inaccurate",
    "kexec_trylock() failed, elfcorehdr may be inaccurate",
)
# Reading back through a boot's kernel messages at start stops after this long (a host up
# for months may have many; the daemon must reach READY well within systemd's timeout).
LOOKBACK_BUDGET_S = 2.0


def is_skip(message: str) -> bool:
    """True for the kernel's line saying it skipped a header update."""
    return any(line in message for line in SKIP_LINES)


# How often a followed file is looked at (a regular file is always "readable").
FILE_POLL_S = 0.25
FILE_LIMIT = 16 << 20  # what a followed file may hold; a longer one is read from its end


class KernelLog(Protocol):
    # None: fileno() becomes readable when new messages may have arrived; else look for
    # new messages this often (seconds).
    poll_s: float | None

    def fileno(self) -> int:
        """A descriptor that becomes readable when new messages may have arrived."""

    def new_skips(self) -> list[str]:
        """The "kexec_trylock() failed" lines logged since the last call (or since
        :meth:`lookback`): skips or failed reads, skip_lines.py tells which."""

    def lookback(self) -> tuple[int, int]:
        """(skip lines, kernel messages) this boot so far; positions after the last one."""

    def close(self) -> None: ...


class JournalKernelLog:
    """This boot's kernel messages from the journal."""

    poll_s: float | None = None

    def __init__(self, reader: Any, *, clock: Callable[[], float] = time.monotonic,
                 budget_s: float = LOOKBACK_BUDGET_S) -> None:
        self._reader = reader
        self._clock = clock
        self._budget_s = budget_s
        self._at_tail = False

    def fileno(self) -> int:
        return int(self._reader.fileno())

    def lookback(self) -> tuple[int, int]:
        skips, seen, deadline = 0, 0, self._clock() + self._budget_s
        self._reader.seek_head()
        while True:
            entry = self._reader.get_next()
            if not entry:
                break
            seen += 1
            skips += is_skip(_message(entry))
            if self._clock() > deadline:
                log.warning("reading back this boot's kernel messages took over %.0f s: "
                            "stopped early, at the end of the journal", self._budget_s)
                self._reader.seek_tail()
                self._reader.get_previous()
                break
        self._at_tail = True
        return skips, seen

    def new_skips(self) -> list[str]:
        if not self._at_tail:
            self._reader.seek_tail()
            self._reader.get_previous()
            self._at_tail = True
        self._reader.process()  # acknowledge the wakeup; the entries are read below
        found: list[str] = []
        while True:
            entry = self._reader.get_next()
            if not entry:
                return found
            message = _message(entry)
            if is_skip(message):
                found.append(message)

    def close(self) -> None:
        self._reader.close()


def open_journal(root: Path, reader: Callable[[], Any] | None = None
                 ) -> tuple[JournalKernelLog | None, str]:
    """The journal's kernel messages of this boot, or None and why not (one line).

    Only for the host's own tree: under another ``[sysfs] root`` (tests, demos, the
    benchmark) the host's kernel messages describe another kernel than the one read.
    Only ``_TRANSPORT=kernel``: kdumpd's own warnings quote the kernel's line, and must
    never be read back as the kernel's. ``reader`` makes the journal.Reader (tests).
    """
    if root != Path("/"):
        return None, f"[sysfs] root is {root}, not the host's /"
    if reader is None:
        try:
            from systemd import journal
        except ImportError as error:
            return None, f"systemd-python is not installed ({error})"
        reader = journal.Reader
    try:
        opened = reader()
        opened.this_boot()
        opened.add_match(_TRANSPORT="kernel")
    except (OSError, ValueError) as error:
        return None, f"the journal cannot be opened ({error})"
    return JournalKernelLog(opened), ""


def _message(entry: dict[str, Any]) -> str:
    message = entry.get("MESSAGE", "")
    if isinstance(message, bytes):
        return message.decode("utf-8", "replace")
    return str(message)


class FileKernelLog:
    """A file of kernel messages, one per line, followed as it grows: what is there at
    :meth:`lookback` is this boot's earlier messages. A file that shrinks was replaced or
    truncated: it is read again from its start. Only whole lines are taken."""

    poll_s: float | None = FILE_POLL_S

    def __init__(self, path: Path) -> None:
        self.path = path
        self._at = 0
        self._partial = b""
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise OSError(errno.EINVAL, "not a regular file (a file of kernel messages, one "
                          "per line, is followed; /dev/kmsg is not)", str(path))

    def fileno(self) -> int:
        return self._fd

    def lookback(self) -> tuple[int, int]:
        lines = self._read_lines()
        return sum(map(is_skip, lines)), len(lines)

    def new_skips(self) -> list[str]:
        return [line for line in self._read_lines() if is_skip(line)]

    def _read_lines(self) -> list[str]:
        size = os.fstat(self._fd).st_size
        if size < self._at:
            self._at, self._partial = 0, b""
        start = max(self._at, size - FILE_LIMIT)
        if start > self._at:
            self._partial = b""  # skipped ahead: a partial line before is void
        chunk = os.pread(self._fd, size - start, start)
        self._at = start + len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def open_kernel_log(setting: str, root: Path) -> tuple[KernelLog | None, str]:
    """``[events] kernel_log``: the journal (of the host's own tree only), or a file."""
    if setting == "journal":
        return open_journal(root)
    try:
        return FileKernelLog(Path(setting)), ""
    except OSError as error:
        return None, f"{setting}: {error.strerror}"


class FakeKernelLog:
    """Kernel messages pushed by a test or the demo; readable through a pipe like the
    journal's inotify descriptor."""

    poll_s: float | None = None

    def __init__(self, earlier: list[str] | None = None) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._lock = threading.Lock()  # tests push from another thread
        self._earlier = list(earlier or [])
        self._queue: list[str] = []

    def push(self, message: str) -> None:
        with self._lock:
            self._queue.append(message)
        os.write(self._write, b"x")

    def fileno(self) -> int:
        return self._read

    def lookback(self) -> tuple[int, int]:
        return sum(map(is_skip, self._earlier)), len(self._earlier)

    def new_skips(self) -> list[str]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read, 65536)
        with self._lock:
            messages, self._queue = self._queue, []
        return [m for m in messages if is_skip(m)]

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
