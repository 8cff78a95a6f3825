"""The decision path between events and reloads: intake, then one decision per burst.

Events, requests and the kernel's skip lines come in (intake); :meth:`Controller.poll`
decides on the burst that is due, top to bottom: read what is loaded, pay what is owed or
handed back, infer (policy.py), look again when a read needs confirming, let the header
read back overrule the inference (header_proof.py), then skip or hand a reload to the
caller, which reports its outcome with :meth:`Controller.reload_finished`.

The rooms it works with, each with one job: what the loaded image was last read as
(image_reads.py), what kdumpd owes and its retry and hand-back (owing.py), the start-up
check (startup.py), exposure (exposure.py), capacity (capacity_watch.py), and the
decision log: counters, journal fields and reason texts (decision_log.py). No threads
and no I/O of its own beyond what it is handed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any, Callable

from kdumpd import journal_ids, startup
from kdumpd.backends import Backend
from kdumpd.capacity import Capacity
from kdumpd.capacity_watch import CapacityWatch
from kdumpd.decision_log import (
    REASON_DURING_LOAD,
    REASON_FOLLOW_UP,
    REASON_KERNEL_SKIPPED,
    REASON_LOST,
    ReadLines,
    Stats,
    burst_fields,
    load_failed,
    outcome_fields,
    reload_failed_later,
    what,
)
from kdumpd.events import SUBSYSTEMS, Event
from kdumpd.hardware import Hardware
from kdumpd.header_proof import HeaderProof
from kdumpd.image_reads import ImageReads, kernel_keeps_current
from kdumpd.knowledge import Knowledge
from kdumpd.load_wait import LoadWait
from kdumpd.loaded_header import HeaderCheck
from kdumpd.our_load import OurLoad
from kdumpd.owing import Owing
from kdumpd.policy import Decision, decide, is_loaded, is_unloaded
from kdumpd.reloader import Outcome
from kdumpd.scheduler import Burst, ReloadScheduler
from kdumpd.skip_lines import SkipLines
from kdumpd.state import State, Store
from kdumpd.sysfs import RE_READ_S, Snapshot

log = logging.getLogger("kdumpd")

# A 0 read from crash_hotplug or kexec_crash_loaded is read again this much later before
# it is acted on, unless the last read for the same image already gave 0: crash_hotplug
# reads 0 while anyone holds the kexec lock (a loader between its trylock and freeing the
# old image: microseconds), kexec_crash_loaded while x86 swaps in an updated header
# (docs/design.md).
CONFIRM_S = RE_READ_S
# When kdumpd takes reloads back from the distribution's rules (its backend works
# again), the rules have just reacted to the same events: let their reload finish first.
TAKE_BACK_S = 5.0


class Controller:
    """Events in, one decision per burst out; see the module's docstring."""

    def __init__(
        self,
        scheduler: ReloadScheduler,
        snapshot: Callable[[Collection[str]], Snapshot],
        *,
        store: Store,
        hardware: Callable[[], Hardware],
        backend: Backend,
        dry_run: bool = False,
        wall: Callable[[], float] = time.time,
        confirm_s: float = CONFIRM_S,
        take_back_s: float = TAKE_BACK_S,
        arch: str = "x86_64",
        capacity: Callable[[Hardware, str | None], Capacity] | None = None,
        verify: Callable[[], HeaderCheck] | None = None,
        protection: Callable[[str], str | None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.dry_run = dry_run
        self._wall = wall
        self.confirm_s = confirm_s
        self.take_back_s = take_back_s
        self.arch = arch  # uname -m: which events can leave the header stale (policy.py)
        self.stats = Stats()
        self.owing = Owing(store, scheduler, self.stats, wall)
        self.reads = ImageReads(snapshot, wall)
        self.hardware = hardware
        self.backend = backend
        # The loaded header read back (loaded_header.py), None: infer only.
        self.header = HeaderProof(verify, wall, protection=protection)
        self.capacity = CapacityWatch(capacity)
        self.skip_lines = SkipLines()
        self._read_lines = ReadLines()
        self._load = OurLoad(wall)
        self._load_wait = LoadWait()
        self.last_decision: Decision | None = None

    def reconfigure(self, *, quiet_s: float, max_delay_s: float,
                    snapshot: Callable[[Collection[str]], Snapshot],
                    hardware: Callable[[], Hardware], backend: Backend) -> None:
        """SIGHUP: new debounce times, readers and backend; what was read, decided and
        owed stays."""
        self.scheduler.retime(quiet_s, max_delay_s)
        self.reads.read_with(snapshot)
        self.hardware = hardware
        self.backend = backend

    @property
    def state(self) -> State:
        return self.owing.state

    # -- intake ----------------------------------------------------------------------------

    def start(self, now: float, *, kernel_skips: int = 0) -> None:
        """Take up the state of this boot and request what a restart owes (startup.py),
        from the state file, the hardware and the loaded header read back now."""
        saved = self.owing.store.load()
        hardware = self.hardware()
        snapshot = self.reads.read(SUBSYSTEMS)
        self.reads.remember(snapshot)  # what the image loaded at start says
        check = self.header.read() if is_loaded(snapshot.crash_loaded) else None
        startup.take_up(now, saved, hardware, owing=self.owing, request=self.request,
                        check=check, unprotected=self.header.unprotected(peek=True)
                        is not None, kernel_skips=kernel_skips)

    def on_event(self, event: Event, now: float) -> None:
        self.stats.events += 1
        self.scheduler.add(event, now)
        if self.skip_lines.event(now):
            self.stats.failed_reads = self.skip_lines.reads
            self._missed_by_kernel(now, "\"kexec_trylock() failed\" just before a hotplug "
                                   "event")

    def on_events_lost(self, now: float) -> None:
        """The socket overflowed: some events are gone, so decide as if both changed."""
        self.stats.lost += 1
        log.warning("event socket overflowed, events were lost: scheduling a resync "
                    "decision", extra={"MESSAGE_ID": journal_ids.EVENTS_LOST})
        self.request(now, SUBSYSTEMS, REASON_LOST, unknown_events=True)

    def on_kernel_skip(self, now: float, message: str) -> None:
        """The kernel logged "kexec_trylock() failed". Next to a hotplug event it skipped
        that event's header update (someone held the kexec lock): the image may lack the
        change whatever crash_hotplug says, and the burst is decided as missed (while a
        load of ours runs, in its follow-up). With no event near it, it is a failed read
        of crash_hotplug during a load: counted, and it decides nothing."""
        if self.skip_lines.line(now, loading=self.scheduler.running):
            self._missed_by_kernel(now, message.strip())
            return
        self.stats.failed_reads = self.skip_lines.reads
        self._read_lines.line(now, message)

    def _missed_by_kernel(self, now: float, message: str) -> None:
        # One line per decision, not per message: a load can hold the lock over dozens.
        level = logging.DEBUG if self.scheduler.has_reason(REASON_KERNEL_SKIPPED) \
            else logging.WARNING
        log.log(level, "kernel: %s: deciding over both subsystems", message,
                extra={"MESSAGE_ID": journal_ids.KERNEL_SKIPPED})
        self.request(now, SUBSYSTEMS, REASON_KERNEL_SKIPPED, missed=True)

    def request(
        self, now: float, subsystems: Iterable[str], reason: str, *, due_now: bool = False,
        missed: bool = False, unknown_events: bool = False,
    ) -> None:
        """Ask for a decision over ``subsystems`` without an event: due like a burst, or at
        once with ``due_now``; ``missed``: reload a loaded image whatever crash_hotplug says;
        ``unknown_events``: events may have happened unseen (lost, or while kdumpd was
        away), so assume any action, a removal too."""
        self.scheduler.request(now, subsystems, reason, due_now=due_now, missed=missed,
                               unknown_events=unknown_events)

    def deadline(self) -> float | None:
        if self.scheduler.running:
            return None
        deadlines = [d for d in (self.scheduler.deadline(), self.owing.retry.due_at)
                     if d is not None]
        return min(deadlines) if deadlines else None

    # -- deciding --------------------------------------------------------------------------

    def poll(self, now: float) -> Burst | None:
        """Decide on the pending burst if it is due; return it when a reload must run now.

        The caller runs the reload and then calls :meth:`reload_finished`.
        """
        if self.scheduler.running:
            return None
        if self.owing.retry.is_due(now):
            self.owing.retry_due(now, self.backend.probe)
        burst = self.scheduler.take(now)
        if burst is None:
            return None
        snapshot = self.reads.read(burst.subsystems)
        fields = burst_fields(burst)
        fields["KDUMPD_CRASH_HOTPLUG"] = ",".join(
            f"{s}={snapshot.crash_hotplug[s]}" for s in sorted(snapshot.crash_hotplug)
        )
        if self.owing.owed and is_loaded(snapshot.crash_loaded):
            self.owing.paid_by_someone()
        if self.owing.handed_back and not self.owing.owed:
            away = self.owing.away(burst.missed, now, self.backend.probe, self.take_back_s,
                                   defer=lambda at: self.scheduler.defer(burst, at))
            if away:
                self._skip(burst, fields, away)
            return None
        missed = burst.missed or (REASON_FOLLOW_UP if burst.follow_up else "")
        decision = decide(burst.subsystems, snapshot, owed=self.owing.owed, missed=missed,
                          zero_seen=burst.zero_seen or self.reads.zero_known(snapshot),
                          actions=burst.actions, arch=self.arch)
        self.reads.remember(snapshot)
        self.last_decision = decision
        acted_on = self._load_wait.look_again(
            decision, now, about=what(burst), confirm_s=self.confirm_s,
            defer=lambda at: self.scheduler.defer(burst, at))
        if acted_on is None:
            return None
        self.last_decision = acted_on
        decision, proven = acted_on, False
        if is_loaded(snapshot.crash_loaded):  # read back, the header overrules
            decision, proven = self.header.proven(acted_on)
            self.last_decision = decision
        if "memory" in burst.subsystems and not decision.reload:
            self._check_capacity()  # a reload is checked once its image is loaded
        for warning in decision.warnings:
            log.warning(warning, extra=fields)
        if not decision.reload:
            if burst.events and kernel_keeps_current(snapshot, burst.subsystems):
                self.owing.adopt(replace(self.state, exposure=self.state.exposure.avoided()))
            self._skip(burst, fields, decision.reason, proven=proven, decided=True)
            return None
        if self.dry_run:
            log.info("%s: would reload: %s", what(burst), decision.reason,
                     extra={"MESSAGE_ID": journal_ids.WOULD_RELOAD, **fields})
            return None
        log.info("%s: reloading: %s", what(burst), decision.reason, extra=fields)
        self.scheduler.reload_started()
        self.skip_lines.load_started()
        self.owing.save(self._load.starting(self.state, self.hardware(), burst.started_at))
        return burst

    def _skip(self, burst: Burst, fields: dict[str, Any], reason: str, *,
              proven: bool = False, decided: bool = False) -> None:
        """No reload for ``burst``; ``proven``: the header read back for this decision
        was current; ``decided``: this decision read crash_hotplug (remembered)."""
        self.stats.skipped += burst.events
        log.info("%s: no reload: %s", what(burst), reason,
                 extra={"MESSAGE_ID": journal_ids.SKIPPED, **fields})
        if self.dry_run:
            return
        # Proven current, or this image's crash_hotplug already read 1 for both
        # subsystems: nothing more to read (a crash_hotplug read takes the kexec lock).
        snapshot = None if proven or decided and self.reads.kernel_keeps_current() \
            else self.reads.read(SUBSYSTEMS)
        if snapshot is None or kernel_keeps_current(snapshot):
            # The image describes the hardware of now: read back, or kept by the kernel.
            hardware = self.hardware()
            self.owing.save(self.state.with_hardware(hardware.fingerprint,
                                                     hardware.summary()))
        elif is_unloaded(snapshot.crash_loaded) and not self.owing.owed:
            # No image: whoever loads the next one loads it for the hardware of then.
            self.owing.save(self.state.with_hardware("", ""))

    # -- a reload of ours ended --------------------------------------------------------------

    def reload_finished(self, burst: Burst, outcome: Outcome, now: float) -> None:
        self.scheduler.reload_finished(now)
        self.reads.forget()  # a load ran: whatever crash_hotplug read before is void
        self.reads.remember(self.reads.read(SUBSYSTEMS))  # what the image loaded now says
        fields = outcome_fields(burst, outcome)
        self.stats.last_reload_at = self._load.started_wall
        self.stats.last_duration_s = outcome.duration_s
        state = self._load.ended(self.state, outcome, now=now,
                                 how=self.backend.last_command or self.backend.describe())
        self.owing.hand_back(not outcome.ok)
        stale: HeaderCheck | None = None
        if outcome.ok:
            self.stats.reloads += 1
            log.info("reloaded the crash kernel for %s in %.2f s", what(burst),
                     outcome.duration_s, extra={"MESSAGE_ID": journal_ids.RELOAD_DONE, **fields})
            changed = self._load.moved(self.hardware())
            if changed:
                self.request(now, changed, REASON_DURING_LOAD, missed=True)
            # The post-condition, unless the hardware moved during the load (its own
            # decision follows): the image loaded now describes the host.
            stale = None if changed else self.header.after_load()
        if "memory" in burst.subsystems:
            self._check_capacity()  # for the image loaded now (or kept, if the load failed)
        if stale is not None or not outcome.ok:
            self.stats.failed += 1
            load_failed(outcome, stale, fields)
        self.owing.save(state)
        if outcome.ok and stale is None:
            self.owing.succeeded()
            return
        reload_failed_later(self.owing.failed(now), stale=stale is not None,
                            missing=state.owed, fields=fields)

    def _check_capacity(self) -> None:
        """The reservation against the RAM now, for the dump kernel's command line as
        last read back (None: not read)."""
        last = self.header.last
        self.capacity.check(self.hardware(), last.loaded_cmdline if last else None)

    # -- what the daemon knows -------------------------------------------------------------

    def knowledge(self) -> Knowledge:
        """What the daemon knows (knowledge.py); reads nothing."""
        return Knowledge(
            kexec_crash_loaded=self.reads.loaded, crash_hotplug=dict(self.reads.hotplug),
            crash_hotplug_read_at=self.reads.read_at, header=self.header.last,
            header_read_at=self.header.last_at, header_verification=self.header.verification,
            stats=replace(self.stats), state=self.state, capacity=self.capacity.last,
            state_problem=self.owing.store.problem,
            state_write_failures=self.owing.store.write_failures)


def run_pending(
    controller: Controller,
    reload: Callable[[], Outcome],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Decide, reload and report in this thread until nothing is pending: the CLI and
    the demo (the daemon runs reloads in a worker, through the same poll/reload_finished).
    A restore retry on a timer is the daemon's business, not waited for here."""
    while True:
        burst = controller.poll(clock())
        if burst is not None:
            controller.reload_finished(burst, reload(), clock())
            continue
        deadline = controller.scheduler.deadline()
        if deadline is None:
            return
        sleep(max(0.0, deadline - clock()))
