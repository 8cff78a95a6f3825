"""The one virtual clock of kdumpd's tests and demo (the daemon loop's :class:`LoopTime`
in virtual time, looptime.py has the real one)."""

from __future__ import annotations

import heapq
import itertools
import selectors
import threading
from collections.abc import Callable

from kdumpd.looptime import Ready

# While a reload thread runs, MockTime waits for it in real time, at most this long per
# wait (the thread wakes the loop when it is done).
THREAD_WAIT_S = 1.0


class Stalled(AssertionError):
    """The loop would wait for ever: nothing is due, scripted or running."""


class MockTime:
    """The one virtual clock of kdumpd's tests and demo: monotonic seconds that move only
    when told (:meth:`advance`, :meth:`advance_to`) or when the loop would sleep, with
    scripted actions (:meth:`at`, :meth:`after`), autojumping.

    ``sleep`` advances virtual time (running the actions due meanwhile): give it to the fake
    backend as its sleep, and a load takes virtual time during which events can arrive.
    Actions run on whichever thread moves the clock; they should only push events, set
    flags or ask the daemon to stop (all thread-safe).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._actions: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.RLock()

    def __call__(self) -> float:
        return self._now

    def at(self, when: float, action: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._actions, (when, next(self._order), action))

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self._now + delay, action)

    def advance_to(self, when: float) -> None:
        """Move to ``when``, running each action at its own time on the way."""
        with self._lock:
            while self._actions and self._actions[0][0] <= when:
                due, _, action = heapq.heappop(self._actions)
                self._now = max(self._now, due)
                action()
            self._now = max(self._now, when)

    def sleep(self, seconds: float) -> None:
        self.advance_to(self._now + seconds)

    advance = sleep  # a test moving time by hand says what it does

    def select(self, selector: selectors.BaseSelector, timeout: float | None, *,
               thread_busy: bool) -> Ready:
        ready = selector.select(0)
        if ready:
            return ready
        if thread_busy:  # the reload thread moves the clock and wakes the loop
            return selector.select(THREAD_WAIT_S if timeout is None else
                                   min(THREAD_WAIT_S, max(timeout, 0.001)))
        with self._lock:
            targets = [t for t in (None if timeout is None else self._now + timeout,
                                   self._actions[0][0] if self._actions else None)
                       if t is not None]
            if not targets:
                raise Stalled(f"at {self._now:.3f} s nothing is due: the loop would wait "
                              "for ever")
            self.advance_to(min(targets))
        return selector.select(0)
