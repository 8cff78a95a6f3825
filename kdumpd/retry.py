"""When a reload that failed for good is tried again, without waiting for an event.

A crash kernel kdumpd unloaded must come back, and a stale one must become current: the
first attempts come soon, then at a pace that does not flood the journal
(docs/design.md). Pure: monotonic seconds in, deadlines out.
"""

from __future__ import annotations

from collections.abc import Sequence

# After these delays, then every DELAYS_S[-1] seconds.
DELAYS_S = (10.0, 30.0, 60.0, 120.0, 300.0)


class RetrySchedule:
    def __init__(self, delays: Sequence[float] = DELAYS_S) -> None:
        self._delays = tuple(delays)
        self._failures = 0
        self.due_at: float | None = None  # monotonic; None: nothing scheduled

    def failed(self, now: float) -> float:
        """One more failure at ``now``: schedule the next attempt; return its delay."""
        delay = self._delays[min(self._failures, len(self._delays) - 1)]
        self._failures += 1
        self.due_at = now + delay
        return delay

    def is_due(self, now: float) -> bool:
        return self.due_at is not None and now >= self.due_at

    def taken(self) -> None:
        """The attempt was started (or is no longer needed); the backoff goes on."""
        self.due_at = None

    def succeeded(self) -> None:
        """A reload worked: the next failure starts the backoff over."""
        self.due_at = None
        self._failures = 0
