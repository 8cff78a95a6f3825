"""What kdumpd owes: a crash kernel it unloaded, the retry of a reload that failed, and
reloads handed back to the distribution's rules while kdumpd's backend cannot work.

The debt lives in the state file (state.py), so a restart pays it; the retry schedule
(retry.py) and the hand-back live as long as the process. Decisions still come from the
controller: this room asks the scheduler for them when a retry is due.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from kdumpd.decision_log import REASON_RESTORE, REASON_RETRY, Stats
from kdumpd.events import SUBSYSTEMS
from kdumpd.retry import RetrySchedule
from kdumpd.scheduler import ReloadScheduler
from kdumpd.state import RETRY_S as STATE_RETRY_S
from kdumpd.state import State, Store

log = logging.getLogger("kdumpd")


class Owing:
    def __init__(self, store: Store, scheduler: ReloadScheduler, stats: Stats,
                 wall: Callable[[], float]) -> None:
        self.store = store
        self._scheduler = scheduler
        self._stats = stats  # crash_kernel_missing, restore_at, handed_back are ours
        self._wall = wall
        self.state = State(boot_id=store.boot_id)
        self.retry = RetrySchedule()
        self._missed_while_away = ""  # a kernel skip seen while reloads were handed back

    @property
    def owed(self) -> bool:
        return self.state.owed

    @property
    def handed_back(self) -> bool:
        return self._stats.handed_back

    def save(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.store.save(state)
        self._stats.crash_kernel_missing = state.owed
        self._stats.state_unsaved = self.store.problem is not None

    def state_retry_every(self) -> float | None:
        """For the loop's timer: how often to write a state that could not be saved (the
        debt is kept in memory meanwhile); None while the file is current."""
        return STATE_RETRY_S if self.store.problem is not None else None

    def retry_state_save(self) -> None:
        self.store.retry()
        self._stats.state_unsaved = self.store.problem is not None

    def adopt(self, state: State) -> None:
        """``state`` taken up as it is, not written now (the state file's at start; a
        count the next save writes)."""
        self.state = state
        self._stats.crash_kernel_missing = state.owed

    def paid_by_someone(self) -> None:
        """A crash kernel is loaded again, not by kdumpd: nothing is owed any more."""
        log.info("a crash kernel is loaded again (not by kdumpd): nothing is owed any more")
        self.save(replace(self.state, owed=False))
        self.retry.taken()

    def away(self, missed: str, now: float, probe: Callable[[], str | None],
             take_back_s: float, *, defer: Callable[[float], None]) -> str:
        """A burst while reloads are handed back: why it is skipped while kdumpd's
        backend still cannot work (``probe`` names the problem; the burst's ``missed``
        is kept for the take-back); else "": reloads are taken back and the burst
        deferred ``take_back_s``, for the distribution's rules to finish first."""
        problem = probe()
        if problem:
            self._missed_while_away = self._missed_while_away or missed
            return ("reloads are handed back to the distribution's rules while kdumpd's "
                    f"backend cannot work: {problem}")
        log.info("the backend works again: kdumpd takes reloads back and decides in "
                 "%.0f s, once the distribution's rules are done with these events",
                 take_back_s)
        self.take_back(now)
        defer(now + take_back_s)
        return ""

    def take_back(self, now: float) -> None:
        """Decide as the owner again; a kernel skip seen meanwhile is decided on."""
        self._stats.handed_back = False
        if self._missed_while_away:
            self._scheduler.request(now, SUBSYSTEMS, self._missed_while_away, missed=True)
            self._missed_while_away = ""

    def retry_due(self, now: float, probe: Callable[[], str | None]) -> None:
        """The retry timer of a failed reload fired: restore what is owed, or, once
        kdumpd's backend works again (``probe`` says no problem), decide as the owner."""
        self.retry.taken()
        if self.owed:
            self._scheduler.request(now, (), REASON_RESTORE, due_now=True)
            return
        problem = probe()
        if problem:
            log.warning("%s: not yet, kdumpd's backend still cannot work: %s",
                        REASON_RETRY, problem)
            self.failed(now)
            return
        self.take_back(now)
        self._scheduler.request(now, SUBSYSTEMS, REASON_RETRY, due_now=True)

    def failed(self, now: float) -> float:
        """A reload did not leave a current crash kernel: schedule the next attempt;
        return its delay."""
        delay = self.retry.failed(now)
        self._stats.restore_at = self._wall() + delay
        return delay

    def hand_back(self, back: bool = True) -> None:
        """Leave reloads to the distribution's rules (a reload of ours failed for good),
        or decide as the owner again (one worked)."""
        self._stats.handed_back = back

    def succeeded(self) -> None:
        """A reload left a current crash kernel: the next failure starts the backoff
        over."""
        self.retry.succeeded()
        self._stats.restore_at = None
