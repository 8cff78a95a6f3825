"""The pipeline between events and reloads: scheduler + policy + counters + journal.

No threads and no I/O of its own beyond reading a sysfs snapshot through the injected
function; the daemon (or a test, or the demo) feeds events and the clock, runs the reload
it is handed, and reports the outcome back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Callable

from kdumpd import journal_ids
from kdumpd.events import SUBSYSTEMS, Event
from kdumpd.policy import Decision, decide
from kdumpd.reloader import Outcome
from kdumpd.scheduler import Burst, ReloadScheduler
from kdumpd.sysfs import OK, Snapshot

log = logging.getLogger("kdumpd")


@dataclass
class Stats:
    events: int = 0  # relevant events seen
    skipped: int = 0  # events whose burst needed no reload
    reloads: int = 0  # reloads that succeeded
    failed: int = 0  # reloads that failed after all retries
    lost: int = 0  # times the event socket overflowed
    last_reload_at: float | None = None  # unix seconds
    last_duration_s: float | None = None
    crash_kernel_missing: bool = False  # a reload of ours left no crash kernel loaded

    def status_line(self) -> str:
        parts = [f"events {self.events}", f"skipped {self.skipped}", f"reloads {self.reloads}"]
        if self.failed:
            parts.append(f"failed {self.failed}")
        if self.lost:
            parts.append(f"overflows {self.lost}")
        line = ", ".join(parts)
        if self.last_reload_at is not None and self.last_duration_s is not None:
            when = time.strftime("%H:%M:%S", time.localtime(self.last_reload_at))
            line += f"; last reload {when} took {self.last_duration_s:.2f} s"
        if self.crash_kernel_missing:
            line += "; crash kernel NOT loaded"
        return line


def burst_fields(burst: Burst) -> dict[str, Any]:
    return {
        "KDUMPD_SUBSYSTEM": ",".join(sorted(burst.subsystems)),
        "KDUMPD_ACTION": burst.last.action,
        "KDUMPD_DEVPATH": burst.last.devpath,
        "KDUMPD_EVENTS": burst.events,
    }


class Controller:
    def __init__(
        self,
        scheduler: ReloadScheduler,
        snapshot: Callable[[Collection[str]], Snapshot],
        *,
        dry_run: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.scheduler = scheduler
        self.snapshot = snapshot
        self.dry_run = dry_run
        self._wall = wall
        self.stats = Stats()
        self.last_decision: Decision | None = None
        self._reload_started_wall = 0.0

    def on_event(self, event: Event, now: float) -> None:
        self.stats.events += 1
        self.scheduler.add(event, now)

    def on_events_lost(self, now: float) -> None:
        """The socket overflowed: some events are gone, so decide as if both changed."""
        self.stats.lost += 1
        log.warning(
            "event socket overflowed, events were lost: scheduling a resync decision",
            extra={"MESSAGE_ID": journal_ids.EVENTS_LOST},
        )
        self.scheduler.add_resync(now, frozenset(SUBSYSTEMS))

    def deadline(self) -> float | None:
        return self.scheduler.deadline()

    def poll(self, now: float) -> Burst | None:
        """Decide on the pending burst if it is due; return it when a reload must run now.

        The caller runs the reload and then calls :meth:`reload_finished`.
        """
        burst = self.scheduler.take(now)
        if burst is None:
            return None
        snapshot = self.snapshot(burst.subsystems)
        decision = decide(burst.subsystems, snapshot, owed=self.stats.crash_kernel_missing)
        self.last_decision = decision
        fields = burst_fields(burst)
        fields["KDUMPD_CRASH_HOTPLUG"] = ",".join(
            f"{s}={snapshot.crash_hotplug[s]}" for s in sorted(snapshot.crash_hotplug)
        )
        for warning in decision.warnings:
            log.warning(warning, extra=fields)
        if not decision.reload:
            self.stats.skipped += burst.events
            log.info(
                "%d event(s) on %s: no reload: %s",
                burst.events, fields["KDUMPD_SUBSYSTEM"], decision.reason,
                extra={"MESSAGE_ID": journal_ids.SKIPPED, **fields},
            )
            return None
        if self.dry_run:
            log.info(
                "%d event(s) on %s: would reload: %s",
                burst.events, fields["KDUMPD_SUBSYSTEM"], decision.reason,
                extra={"MESSAGE_ID": journal_ids.WOULD_RELOAD, **fields},
            )
            return None
        log.info(
            "%d event(s) on %s: reloading: %s",
            burst.events, fields["KDUMPD_SUBSYSTEM"], decision.reason, extra=fields,
        )
        self.scheduler.reload_started()
        self._reload_started_wall = self._wall()
        return burst

    def reload_finished(self, burst: Burst, outcome: Outcome) -> None:
        self.scheduler.reload_finished()
        fields = {
            **burst_fields(burst),
            "KDUMPD_RELOAD_DURATION_MS": round(outcome.duration_s * 1000),
            "KDUMPD_ATTEMPTS": outcome.attempts,
        }
        self.stats.last_reload_at = self._reload_started_wall
        self.stats.last_duration_s = outcome.duration_s
        loaded = outcome.crash_loaded
        self.stats.crash_kernel_missing = loaded.kind == OK and loaded.text == "0"
        if outcome.ok:
            self.stats.reloads += 1
            log.info(
                "reloaded the crash kernel for %d event(s) in %.2f s",
                burst.events, outcome.duration_s,
                extra={"MESSAGE_ID": journal_ids.RELOAD_DONE, **fields},
            )
        else:
            self.stats.failed += 1
            log.error(
                "reload failed after %d attempt(s): %s", outcome.attempts, outcome.error,
                extra={"MESSAGE_ID": journal_ids.RELOAD_FAILED, **fields},
            )
        if self.stats.crash_kernel_missing:
            log.critical(
                "no crash kernel is loaded after the reload: a panic now produces no dump",
                extra={"MESSAGE_ID": journal_ids.CRASH_KERNEL_UNLOADED, **fields},
            )
