"""The daemon's side of the kernel's messages (kernel_log.py): the look-back at start,
the skip lines as they arrive (from the loop's selector, or on a timer for a followed
file), and going blind loudly, once, when the messages cannot be read any more."""

from __future__ import annotations

import contextlib
import logging
import selectors
from typing import Callable

from kdumpd.kernel_log import KernelLog

log = logging.getLogger("kdumpd")

KERNEL = "kernel"  # the selector key's data


class KernelLogEdge:
    def __init__(self, kernel_log: KernelLog | None, on_skip: Callable[[str], None]) -> None:
        self._log = kernel_log  # None: the kernel's messages cannot be read
        self._on_skip = on_skip

    @property
    def poll_s(self) -> float | None:
        """How often to read on a timer; None: never (none, or the selector wakes us)."""
        return self._log.poll_s if self._log is not None else None

    def start(self, selector: selectors.BaseSelector) -> int:
        """Listen to the kernel's messages; return the skipped header updates this boot
        logged before kdumpd started."""
        if self._log is None:
            return 0
        try:
            skips, seen = self._log.lookback()
            if self._log.poll_s is None:  # else read on a timer
                selector.register(self._log.fileno(), selectors.EVENT_READ, KERNEL)
        except OSError as error:
            self._lose(f"the journal cannot be read ({error})")
            return 0
        if not seen:
            log.warning("the journal holds no kernel message of this boot (is "
                        "systemd-journald running?): a header update the kernel skips "
                        "cannot be seen until one arrives")
        return skips

    def read(self, selector: selectors.BaseSelector) -> None:
        """Hand every new skip line to ``on_skip``."""
        if self._log is None:
            return
        try:
            skips = self._log.new_skips()
        except OSError as error:
            if self._log.poll_s is None:
                with contextlib.suppress(OSError, KeyError, ValueError):  # gone already
                    selector.unregister(self._log.fileno())
            self._lose(f"reading the kernel's messages failed ({error})")
            return
        for message in skips:
            self._on_skip(message)

    def _lose(self, why: str) -> None:
        log.warning("%s: kdumpd does not see the header updates the kernel skips "
                    "(\"kexec_trylock() failed\")", why)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
        self._log = None
