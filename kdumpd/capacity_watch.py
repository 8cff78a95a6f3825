"""Says once when the crash reservation is short for the RAM online (capacity.py):
hot-added memory does not grow the reservation; only the next boot can."""

from __future__ import annotations

import logging
from typing import Callable

from kdumpd import journal_ids
from kdumpd.capacity import Capacity
from kdumpd.hardware import Hardware

log = logging.getLogger("kdumpd")


class CapacityWatch:
    def __init__(self, capacity: Callable[[Hardware, str | None], Capacity] | None) -> None:
        self._capacity = capacity  # None: not checked
        self.last: Capacity | None = None

    def check(self, hardware: Hardware, loaded_cmdline: str | None = None) -> None:
        """After memory changed: warn when the reservation became short (for the loaded
        dump kernel's command line, read back; None: not known)."""
        if self._capacity is None:
            return
        warned = self.last is not None and bool(self.last.warning)
        self.last = self._capacity(hardware, loaded_cmdline)
        if self.last.warning and not warned:
            log.warning(self.last.warning, extra={"MESSAGE_ID": journal_ids.CAPACITY_SHORT})
