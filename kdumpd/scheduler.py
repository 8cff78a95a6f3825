"""Coalescing hotplug events into bursts: one reload per burst, as soon as it is over.

Pure timing: the caller passes monotonic seconds in and asks when the next deadline is,
so tests drive it with a fake clock and no sleeps.

A burst is due once no event arrived for ``quiet_s``, or ``max_delay_s`` after its first
event, whichever comes first. While a reload runs nothing is due; events arriving then
form the next burst, which becomes due after the reload finished (exactly one follow-up,
decided with what sysfs says after the reload).
"""

from __future__ import annotations

from dataclasses import dataclass

from kdumpd.events import Event


@dataclass(frozen=True)
class Burst:
    """The events collected between two decisions."""

    events: int
    subsystems: frozenset[str]
    first: Event
    last: Event
    started_at: float  # monotonic seconds of the first event
    resync: bool = False  # events may have been lost: decide as if both subsystems changed


class ReloadScheduler:
    def __init__(self, quiet_s: float, max_delay_s: float) -> None:
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self.running = False
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._subsystems: set[str] = set()
        self._first_at: float | None = None
        self._last_at = 0.0
        self._first: Event | None = None
        self._last: Event | None = None
        self._resync = False

    @property
    def pending(self) -> int:
        """Number of events waiting for a decision."""
        return self._count

    def add(self, event: Event, now: float) -> None:
        """Record one relevant event. O(1): this runs for every event of a storm."""
        if self._first_at is None:
            self._first_at = now
            self._first = event
        self._last_at = now
        self._last = event
        self._count += 1
        self._subsystems.add(event.subsystem)

    def add_resync(self, now: float, subsystems: frozenset[str]) -> None:
        """Events were lost (socket overflow): schedule a decision over ``subsystems``."""
        for subsystem in sorted(subsystems):
            self.add(Event(subsystem, "resync", ""), now)
        self._count -= len(subsystems)
        self._resync = True

    def deadline(self) -> float | None:
        """Monotonic time at which the pending burst is due; None if nothing can be due."""
        if self._first_at is None or self.running:
            return None
        return min(self._last_at + self.quiet_s, self._first_at + self.max_delay_s)

    def take(self, now: float) -> Burst | None:
        """Hand out the pending burst if it is due at ``now``, and start a new one."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        if self._first is None or self._last is None or self._first_at is None:
            return None  # unreachable: a deadline implies a first event
        burst = Burst(
            events=self._count,
            subsystems=frozenset(self._subsystems),
            first=self._first,
            last=self._last,
            started_at=self._first_at,
            resync=self._resync,
        )
        self._reset()
        return burst

    def reload_started(self) -> None:
        self.running = True

    def reload_finished(self) -> None:
        self.running = False
