"""What the daemon knows: one read model for everything that shows it.

Built by the controller from its rooms without reading anything (a read of
``crash_hotplug`` takes the kexec lock); rendered by STATUS= (:meth:`Knowledge.status_line`),
by ``kdumpd status`` over the control socket (:meth:`Knowledge.as_dict`) and by the
metrics file (metrics.gather).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdumpd.capacity import Capacity
from kdumpd.decision_log import Stats, status_line
from kdumpd.events import SUBSYSTEMS
from kdumpd.loaded_header import HeaderCheck
from kdumpd.state import State


@dataclass(frozen=True)
class Knowledge:
    kexec_crash_loaded: str  # as last read ("" never read)
    crash_hotplug: dict[str, str]  # per subsystem, as last read for the image loaded now
    crash_hotplug_read_at: float | None  # wall seconds of that read
    header: HeaderCheck | None  # the loaded header as last read back
    header_read_at: float | None  # monotonic seconds of that read
    header_verification: str  # "on", or "off: why"
    stats: Stats  # a copy of the counters
    state: State  # owed, the fingerprint the image describes, exposure, last load
    capacity: Capacity | None  # the reservation against the RAM, after the last memory burst
    state_problem: str | None = None  # why the state file could not be written (None: saved)
    state_write_failures: int = 0  # failed writes of the state file since the start

    def kernel_keeps_current(self) -> dict[str, bool]:
        """Per subsystem, whether crash_hotplug last read 1 for the image loaded now."""
        loaded = self.kexec_crash_loaded == "1"
        return {s: loaded and self.crash_hotplug.get(s) == "1" for s in SUBSYSTEMS}

    def status_line(self) -> str:
        return status_line(self.stats, self.state.exposure)

    def as_dict(self) -> dict[str, Any]:
        """What `kdumpd status` is answered over the control socket."""
        header = self.header
        return {
            "kexec_crash_loaded": self.kexec_crash_loaded or None,
            "crash_hotplug": dict(self.crash_hotplug),
            "crash_hotplug_read_at": self.crash_hotplug_read_at,
            "header": None if header is None else {
                **header.as_dict(), "read_at": self.header_read_at},
            "header_verification": self.header_verification,
            "failed_reads": self.stats.failed_reads,
            "state_file": {"problem": self.state_problem,
                           "write_failures": self.state_write_failures},
            "status_line": self.stats.status_line(),
        }
