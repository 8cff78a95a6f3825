"""The daemon loop's time: its clock and its wait on the selector, injected together.

:class:`RealTime` is the monotonic clock and a real ``select``. ``fakes.clock.MockTime`` is
virtual time in the spirit of trio's ``MockClock(autojump_threshold=0)``: when the loop
would sleep and no thread outside virtual time is running, the clock jumps straight to the
loop's next deadline or the next scripted action, so a daemon test asserts exact counts at
exact virtual times and takes milliseconds.
"""

from __future__ import annotations

import selectors
import time
from typing import Protocol

Ready = list[tuple[selectors.SelectorKey, int]]

class LoopTime(Protocol):
    def __call__(self) -> float:
        """Now, on a monotonic clock (seconds)."""
        ...

    def select(self, selector: selectors.BaseSelector, timeout: float | None, *,
               thread_busy: bool) -> Ready:
        """Wait up to ``timeout`` for the selector; ``thread_busy``: a reload thread runs
        and will wake the loop."""
        ...


class RealTime:
    def __call__(self) -> float:
        return time.monotonic()

    def select(self, selector: selectors.BaseSelector, timeout: float | None, *,
               thread_busy: bool) -> Ready:
        return selector.select(timeout)
