"""The daemon's stop: a running reload may finish (within one budget, the unit's
TimeoutStopSec sized for it, with the watchdog petted meanwhile: systemd keeps it armed
while a service stops and a load may take minutes), and a crash kernel kdumpd unloaded is
never left behind without one last bounded attempt to load it."""

from __future__ import annotations

import logging
from typing import Callable

from kdumpd.controller import Controller
from kdumpd.decision_log import REASON_RESTORE
from kdumpd.looptime import LoopTime
from kdumpd.reload_worker import ReloadWorker
from kdumpd.reloader import Reloader
from kdumpd.sysfs import Sysfs
from kdumpd.systemd import Notify

log = logging.getLogger("kdumpd")


class Stopping:
    def __init__(self, worker: ReloadWorker, controller: Controller, clock: LoopTime,
                 *, notify: Notify, watchdog_s: float | None,
                 collect: Callable[[], None]) -> None:
        self._worker = worker
        self._controller = controller
        self._clock = clock
        self._notify = notify
        self._watchdog_s = watchdog_s
        self._collect = collect  # hands finished reloads' outcomes to the controller
        self._deadline = float("inf")
        self._budget_s = 0.0

    def stop(self, budget_s: float, reloader: Reloader, sysfs: Sysfs) -> int:
        """Finish the running reload and restore what is owed, in ``budget_s`` in all;
        returns 1 when kdumpd exits owing a crash kernel, else 0."""
        self._budget_s = budget_s
        self._deadline = self._clock() + budget_s
        self._finish_running_reload()
        return self._restore_before_exit(reloader, sysfs)

    def _restore_before_exit(self, reloader: Reloader, sysfs: Sysfs) -> int:
        """Never leave an image kdumpd unloaded behind: one last bounded attempt (the
        state file keeps the debt for the next start; Restart= may come sooner)."""
        controller = self._controller
        if not controller.owing.owed or controller.dry_run:
            return 0
        if self._worker.busy:  # a reload still runs past the budget: never two at once
            log.critical("exiting with no crash kernel loaded; the next start restores it")
            return 1
        now = self._clock()
        controller.request(now, (), REASON_RESTORE, due_now=True)
        burst = controller.poll(now)
        if burst is not None:
            log.critical("stopping with no crash kernel loaded: one last attempt to load it")
            self._worker.start(burst, reloader, sysfs, retries=False)
            self._join_worker()
            self._collect()
        if controller.owing.owed:
            log.critical("exiting with no crash kernel loaded; the next start restores it")
            return 1
        return 0

    def _finish_running_reload(self) -> None:
        if not self._worker.busy:
            return
        log.info("stopping: waiting for the running reload to finish (no further retries)")
        self._worker.cancel()
        self._join_worker()
        if self._worker.alive:
            log.critical("the running reload did not finish in %.0f s; exiting anyway",
                         self._budget_s)
            return
        self._collect()

    def _join_worker(self) -> None:
        """Wait for the reload until the budget is used up, petting the watchdog."""
        step = self._watchdog_s / 2 if self._watchdog_s else self._budget_s
        while self._worker.alive:
            left = self._deadline - self._clock()
            if left <= 0:
                return
            self._worker.join(min(step, left))
            if self._watchdog_s:
                self._notify("WATCHDOG=1")
