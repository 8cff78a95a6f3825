"""The pipeline between events and reloads: scheduler + policy + state + counters + journal.

No threads and no I/O of its own beyond what it is handed: reading a sysfs snapshot and
the hardware, the state store, the backend's probe. The daemon (or the CLI, or the demo)
feeds events, requests and the clock, runs the reload it is handed, and reports the
outcome back with :meth:`Controller.reload_finished`.

What it keeps across restarts (through the store): whether kdumpd owes a crash kernel
it unloaded, and the fingerprint of the hardware the loaded image describes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any, Callable

from kdumpd import journal_ids
from kdumpd.backends import Backend
from kdumpd.capacity import Capacity
from kdumpd.events import SUBSYSTEMS, Event
from kdumpd.exposure import Exposure
from kdumpd.hardware import Hardware
from kdumpd.header_proof import HeaderProof
from kdumpd.load_wait import LoadWait
from kdumpd.loaded_header import CURRENT, STALE, HeaderCheck
from kdumpd.policy import Decision, decide, is_loaded, is_unloaded, kernel_updates
from kdumpd.reloader import Outcome
from kdumpd.retry import DELAYS_S, RetrySchedule
from kdumpd.scheduler import Burst, ReloadScheduler
from kdumpd.skip_lines import SkipLines
from kdumpd.state import RETRY_S as STATE_RETRY_S
from kdumpd.state import LastLoad, State, Store
from kdumpd.sysfs import ABSENT, OK, RE_READ_S, Snapshot, Value

log = logging.getLogger("kdumpd")

# A 0 read from crash_hotplug or kexec_crash_loaded is read again this much later before
# it is acted on, unless the last read for the same image already gave 0: crash_hotplug
# reads 0 while anyone holds the kexec lock (a loader between its trylock and freeing the
# old image: microseconds), kexec_crash_loaded while x86 swaps in an updated header
# (docs/design.md).
CONFIRM_S = RE_READ_S
RESTORE_DELAYS_S = DELAYS_S  # the retry schedule of a reload that failed (retry.py)
# When kdumpd takes reloads back from the distribution's rules (its backend works
# again), the rules have just reacted to the same events: let their reload finish first.
TAKE_BACK_S = 5.0

REASON_RESTORE = "restoring the crash kernel kdumpd unloaded"
REASON_RETRY = "retrying the reload that failed"
REASON_HARDWARE = "hardware changed while kdumpd was not running"
REASON_INTERRUPTED = "a reload of kdumpd's was interrupted"
REASON_DURING_LOAD = ("the hardware changed while our load ran: the new image, or the "
                      "kernel's update of it, may lack the change")
REASON_LOST = "events were lost"
REASON_HEADER_STALE = "the loaded header, read back at start, is stale"
REASON_UNPROTECTED = ("replacing the loaded image once with kdumpd's, whose dump kernel "
                      "survives memory growth ([reload] growth_safe = false turns this off)")
REASON_KERNEL_SKIPPED = ("the kernel skipped a hotplug update of the crash kernel's "
                         "header (\"kexec_trylock() failed\" in its log)")
# A line with no hotplug event near it is a failed read of crash_hotplug (skip_lines.py):
# said at most this often, with the count since.
READ_LINE_LOG_S = 60.0


@dataclass
class Stats:
    events: int = 0  # relevant events seen
    skipped: int = 0  # events whose burst needed no reload
    reloads: int = 0  # reloads that succeeded
    failed: int = 0  # reloads that failed after all retries
    lost: int = 0  # times the event socket overflowed
    failed_reads: int = 0  # kernel skip lines with no hotplug event: reads of crash_hotplug
    last_reload_at: float | None = None  # unix seconds
    last_duration_s: float | None = None
    crash_kernel_missing: bool = False  # kdumpd owes a crash kernel it unloaded
    restore_at: float | None = None  # unix seconds of the next restore attempt
    handed_back: bool = False  # reloads are left to the distribution's rules
    state_unsaved: bool = False  # the state file cannot be written (state.py)

    def status_line(self) -> str:
        parts = [f"events {self.events}", f"skipped {self.skipped}", f"reloads {self.reloads}"]
        if self.failed:
            parts.append(f"failed {self.failed}")
        if self.lost:
            parts.append(f"overflows {self.lost}")
        if self.failed_reads:
            parts.append(f"refused crash_hotplug reads {self.failed_reads}")
        line = ", ".join(parts)
        if self.last_reload_at is not None and self.last_duration_s is not None:
            line += f"; last reload {_clock_time(self.last_reload_at)} took " \
                    f"{self.last_duration_s:.2f} s"
        if self.crash_kernel_missing:
            line += "; crash kernel NOT loaded"
            if self.restore_at is not None:
                line += f", next restore attempt {_clock_time(self.restore_at)}"
        if self.handed_back:
            line += "; reloads handed back to the distribution"
        if self.state_unsaved:
            line += "; state NOT saved (see the journal)"
        return line


def _clock_time(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def burst_fields(burst: Burst) -> dict[str, Any]:
    last = burst.last
    fields: dict[str, Any] = {
        "KDUMPD_SUBSYSTEM": ",".join(sorted(burst.subsystems)),
        "KDUMPD_EVENTS": burst.events,
    }
    if last is not None:
        fields["KDUMPD_ACTION"] = last.action
        fields["KDUMPD_DEVPATH"] = last.devpath
    if burst.reasons:
        fields["KDUMPD_REQUEST"] = "; ".join(burst.reasons)
    return fields


def what(burst: Burst) -> str:
    """What the decision is about, for the log: "8 event(s) on memory", a request, or both."""
    parts = list(burst.reasons)
    if burst.events:
        parts.insert(0, f"{burst.events} event(s) on {','.join(sorted(burst.subsystems))}")
    return " + ".join(parts) or "a decision"


def kernel_keeps_current(snapshot: Snapshot) -> bool:
    """A crash kernel is loaded and the kernel updates its header for every subsystem."""
    return is_loaded(snapshot.crash_loaded) and all(
        kernel_updates(snapshot.crash_hotplug.get(s, _MISSING)) for s in SUBSYSTEMS
    )


_MISSING = Value("", ABSENT)


def _text(value: Value) -> str:
    return value.text if value.kind == OK else ""


class Controller:
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
        capacity: Callable[[Hardware], Capacity] | None = None,
        verify: Callable[[], HeaderCheck] | None = None,
        protection: Callable[[str], str | None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.snapshot = snapshot
        self.store = store
        self.hardware = hardware
        self.backend = backend
        self.dry_run = dry_run
        self._wall = wall
        self.confirm_s = confirm_s
        self.take_back_s = take_back_s
        self.arch = arch  # uname -m: which events can leave the header stale (policy.py)
        # The reservation against the RAM online (capacity.py), checked after memory bursts.
        self.capacity = capacity
        self.last_capacity: Capacity | None = None
        # Exposure accounting (exposure.py), on the monotonic clock of `now`.
        self._stale_since: float | None = None  # first event of a burst that needs a reload
        self._unloaded_since: float | None = None  # a reload of ours left no crash kernel
        self.stats = Stats()
        # The loaded header read back (loaded_header.py), None: infer only.
        self.header = HeaderProof(verify, wall, protection=protection)
        self.last_decision: Decision | None = None
        self.state = State(boot_id=store.boot_id)
        self._reload_started_wall = 0.0
        self._loading: Hardware | None = None  # what the image being loaded describes
        self._retry = RetrySchedule()
        self._load_wait = LoadWait()
        # What crash_hotplug last read for the image loaded now (per subsystem), and the
        # kexec_crash_loaded of that read: a new image (ours, anyone's) forgets it.
        self._image_hotplug: dict[str, str] = {}
        self._image_loaded = ""
        self._image_read_at: float | None = None  # wall time of the last crash_hotplug read
        self._missed_while_away = ""  # a kernel skip seen while reloads were handed back
        self.skip_lines = SkipLines()
        self._read_line_said_at: float | None = None
        self._read_lines_unsaid = 0

    # -- what kdumpd owes ------------------------------------------------------------------

    @property
    def owed(self) -> bool:
        return self.state.owed

    @property
    def handed_back(self) -> bool:
        return self.stats.handed_back

    def _save(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.store.save(state)
        self.stats.crash_kernel_missing = state.owed
        self.stats.state_unsaved = self.store.problem is not None

    def state_retry_every(self) -> float | None:
        """For the loop's timer: how often to write a state that could not be saved."""
        return STATE_RETRY_S if self.store.problem is not None else None

    def retry_state_save(self) -> None:
        self.store.retry()
        self.stats.state_unsaved = self.store.problem is not None

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float, *, kernel_skips: int = 0) -> None:
        """Take up the state of this boot and request what a restart owes.

        The loaded header is read back first where it can be: a stale one is reloaded,
        and a command line that would not survive memory growth is replaced once. No
        state for this boot: record the hardware as the baseline (the distribution loaded
        the crash kernel at boot, before kdumpd). ``kernel_skips``, the kernel's
        "kexec_trylock() failed" lines this boot, are no reason by themselves: with no
        hotplug event to pair them with they cannot be told from failed reads of
        crash_hotplug (skip_lines.py). An owed crash kernel: restore it. A fingerprint
        that differs from the hardware now: decide over both subsystems.
        """
        state = self.store.load()
        hardware = self.hardware()
        snapshot = self._read(SUBSYSTEMS)
        self._remember(snapshot)  # what the image loaded at start says
        check = self.header.read() if is_loaded(snapshot.crash_loaded) else None
        if check is not None and check.verdict == STALE:
            log.warning("%s: %s", REASON_HEADER_STALE, check.why)
            self.request(now, SUBSYSTEMS, REASON_HEADER_STALE, missed=True)
        elif state is None and kernel_skips:
            log.info("the kernel logged \"kexec_trylock() failed\" %d time(s) this boot "
                     "before kdumpd ran: with no hotplug event beside them these lines "
                     "cannot be told from failed reads of crash_hotplug, so they decide "
                     "nothing", kernel_skips)
        if self.header.unprotected(peek=True):
            self.request(now, (), REASON_UNPROTECTED)  # decided when the host is quiet
        if state is not None and state.loading:
            # Killed during a load: the syscall may have freed the old image.
            log.warning("%s: deciding over both subsystems", REASON_INTERRUPTED)
            self._save(replace(state, owed=True, loading=False))
            self.request(now, SUBSYSTEMS, REASON_INTERRUPTED)
            return
        if state is None or not (state.owed or state.fingerprint):
            log.info("%s: recording the hardware as the baseline (%s)",
                     "no state for this boot" if state is None else
                     "no crash kernel was loaded by the last kdumpd", hardware.summary())
            base = state or State(self.store.boot_id)
            self._save(base.with_hardware(hardware.fingerprint, hardware.summary()))
            return
        self.state = state
        self.stats.crash_kernel_missing = state.owed
        if state.owed:
            log.critical("kdumpd unloaded the crash kernel before it stopped and could not "
                         "load it back: restoring it now",
                         extra={"MESSAGE_ID": journal_ids.CRASH_KERNEL_UNLOADED})
            self.request(now, (), REASON_RESTORE)
        elif state.fingerprint != hardware.fingerprint:
            log.info("the hardware changed while kdumpd was not running (was: %s; now: %s)",
                     state.hardware or "unknown", hardware.summary())
            self.request(now, SUBSYSTEMS, REASON_HARDWARE, unknown_events=True)

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
        log.warning(
            "event socket overflowed, events were lost: scheduling a resync decision",
            extra={"MESSAGE_ID": journal_ids.EVENTS_LOST},
        )
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
        self._read_lines_unsaid += 1
        if self._read_line_said_at is not None \
                and now - self._read_line_said_at < READ_LINE_LOG_S:
            return
        log.info("kernel: %s, %d time(s), with no hotplug event near: a read of "
                 "crash_hotplug during a load (it changes no header); no reload",
                 message.strip(), self._read_lines_unsaid,
                 extra={"MESSAGE_ID": journal_ids.KERNEL_READ_REFUSED})
        self._read_line_said_at, self._read_lines_unsaid = now, 0

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
        deadlines = [d for d in (self.scheduler.deadline(), self._retry.due_at) if d is not None]
        if self.scheduler.running:
            return None
        return min(deadlines) if deadlines else None

    # -- deciding --------------------------------------------------------------------------

    def poll(self, now: float) -> Burst | None:
        """Decide on the pending burst if it is due; return it when a reload must run now.

        The caller runs the reload and then calls :meth:`reload_finished`.
        """
        if self.scheduler.running:
            return None
        if self._retry.is_due(now):
            self._retry_due(now)
        burst = self.scheduler.take(now)
        if burst is None:
            return None
        snapshot = self._read(burst.subsystems)
        fields = burst_fields(burst)
        fields["KDUMPD_CRASH_HOTPLUG"] = ",".join(
            f"{s}={snapshot.crash_hotplug[s]}" for s in sorted(snapshot.crash_hotplug)
        )
        if self.owed and is_loaded(snapshot.crash_loaded):
            log.info("a crash kernel is loaded again (not by kdumpd): nothing is owed any more")
            self._save(replace(self.state, owed=False))
            self._retry.taken()
        if self.handed_back and not self.owed:
            problem = self.backend.probe()
            if problem:
                # A skip the kernel logged meanwhile (the distribution's own load held the
                # kexec lock) is owed at the take-back.
                self._missed_while_away = self._missed_while_away or burst.missed
                self._skip(burst, fields, "reloads are handed back to the distribution's "
                           f"rules while kdumpd's backend cannot work: {problem}")
                return None
            log.info("the backend works again: kdumpd takes reloads back and decides in "
                     "%.0f s, once the distribution's rules are done with these events",
                     self.take_back_s)
            self._take_back(now)
            self.scheduler.defer(burst, now + self.take_back_s)
            return None
        missed = burst.missed
        if not missed and burst.follow_up:
            missed = ("events arrived while our load held the kexec lock: the kernel may "
                      "have skipped their elfcorehdr update")
        decision = decide(burst.subsystems, snapshot, owed=self.owed, missed=missed,
                          zero_seen=burst.zero_seen or self._zero_known(snapshot),
                          actions=burst.actions, arch=self.arch)
        self._remember(snapshot)
        self.last_decision = decision
        acted_on = self._look_again(burst, decision, now)
        if acted_on is None:
            return None
        decision, proven = self._proven(acted_on, snapshot)
        if "memory" in burst.subsystems:
            self._check_capacity()
        for warning in decision.warnings:
            log.warning(warning, extra=fields)
        if not decision.reload:
            if burst.events and is_loaded(snapshot.crash_loaded) and all(
                    kernel_updates(snapshot.crash_hotplug.get(s, _MISSING))
                    for s in burst.subsystems):
                self.state = replace(self.state, exposure=self.state.exposure.avoided())
            self._skip(burst, fields, decision.reason, proven=proven)
            return None
        if self.dry_run:
            log.info("%s: would reload: %s", what(burst), decision.reason,
                     extra={"MESSAGE_ID": journal_ids.WOULD_RELOAD, **fields})
            return None
        log.info("%s: reloading: %s", what(burst), decision.reason, extra=fields)
        if self._stale_since is None:
            self._stale_since = burst.started_at
        self.scheduler.reload_started()
        self.skip_lines.load_started()
        self._loading = self.hardware()
        self._reload_started_wall = self._wall()
        self._save(replace(self.state, loading=True))  # if kdumpd dies now, it may owe one
        return burst

    def _proven(self, decision: Decision, snapshot: Snapshot) -> tuple[Decision, bool]:
        """``decision`` as the loaded header, read back now, has it, and whether that
        header was current (unchanged, False: nothing loaded, or it cannot be read)."""
        if not is_loaded(snapshot.crash_loaded):
            return decision, False
        earlier = self.header.last
        decision = self.last_decision = self._replace_unprotected(
            self.header.judge(decision))
        check = self.header.last
        return decision, check is not earlier and check is not None and \
            check.verdict == CURRENT

    def _replace_unprotected(self, decision: Decision) -> Decision:
        """A decision that keeps an image whose command line, read back, lacks what keeps
        its dump kernel alive after memory growth becomes one reload to kdumpd's own image
        (once per loaded command line; a decision that reloads anyway needs no more)."""
        if decision.reload or decision.confirm or decision.wait_for_load:
            return decision
        why = self.header.unprotected()
        if why is None:
            return decision
        log.warning("%s: %s", why, REASON_UNPROTECTED)
        return Decision(True, f"{why}: {REASON_UNPROTECTED}", decision.warnings)

    def _look_again(self, burst: Burst, decision: Decision, now: float) -> Decision | None:
        """Put ``burst`` back when ``decision`` needs another read first (a 0 to confirm, a
        load under way to wait for) and return None; else the decision to act on."""
        if decision.confirm:
            log.debug("%s: %s", what(burst), decision.reason)
            self.scheduler.defer(burst, now + self.confirm_s)
            return None
        if not decision.wait_for_load:
            self._load_wait.over()
            return decision
        level = logging.DEBUG if self._load_wait.waiting else logging.INFO
        look = self._load_wait.next_look(now)
        if look is not None:
            log.log(level, "%s: %s", what(burst), decision.reason)
            self.scheduler.defer(burst, look)
            return None
        self.last_decision = Decision(False, "no crash kernel loaded after waiting "
                                      f"{self._load_wait.longest_s:.0f} s: nothing to keep "
                                      "current")
        # Someone's load freed the old image and none came back: no dump now.
        log.warning("no crash kernel is loaded %.0f s after the kernel skipped a header "
                    "update: the load under way failed or none ran, and a panic now gives "
                    "no dump", self._load_wait.longest_s,
                    extra={"MESSAGE_ID": journal_ids.CRASH_KERNEL_UNLOADED})
        return self.last_decision

    def _account(self, exposure: Exposure, outcome: Outcome, now: float) -> Exposure:
        """The exposure after a reload of ours that ended at ``now``."""
        started = now - outcome.duration_s
        if outcome.ok:
            stale = now - self._stale_since if self._stale_since is not None else 0.0
            gap = now - (self._unloaded_since if self._unloaded_since is not None
                         else started)
            self._stale_since = self._unloaded_since = None
            return exposure.loaded(ok=True, stale_s=stale, gap_s=gap)
        if is_unloaded(outcome.crash_loaded) and self._unloaded_since is None:
            self._unloaded_since = started  # counted once a load works again
        return exposure.loaded(ok=False, stale_s=0.0, gap_s=0.0)

    def _check_capacity(self) -> None:
        """After memory changed: say once when the reservation is short for the RAM now
        (hot-added memory does not grow it; only the next boot can)."""
        if self.capacity is None:
            return
        warned = self.last_capacity is not None and bool(self.last_capacity.warning)
        self.last_capacity = self.capacity(self.hardware())
        if self.last_capacity.warning and not warned:
            log.warning(self.last_capacity.warning,
                        extra={"MESSAGE_ID": journal_ids.CAPACITY_SHORT})

    def _read(self, subsystems: Collection[str]) -> Snapshot:
        """kexec_crash_loaded, then crash_hotplug only when an image is loaded: a read of
        crash_hotplug takes the kexec lock, and while someone else's load holds it (the
        image freed: kexec_crash_loaded 0) the kernel logs the skip line for the read
        itself, which would ask for the next decision, and so on while the load runs."""
        loaded = self.snapshot(())
        if is_unloaded(loaded.crash_loaded):
            return loaded
        return self.snapshot(subsystems)

    def _zero_known(self, snapshot: Snapshot) -> bool:
        """Every crash_hotplug that reads 0 now read 0 the last time too, for the same
        image: a 0 that lasts is not a lock holder's instant; no second read needed."""
        if self._image_loaded != _text(snapshot.crash_loaded):
            return False
        zeros = [s for s, v in snapshot.crash_hotplug.items() if _text(v) == "0"]
        return bool(zeros) and all(self._image_hotplug.get(s) == "0" for s in zeros)

    def _remember(self, snapshot: Snapshot) -> None:
        loaded = _text(snapshot.crash_loaded)
        if loaded != self._image_loaded:
            self._image_hotplug = {}  # another image (or none): what we knew is void
            self._image_loaded = loaded
        read = {s: v.text for s, v in snapshot.crash_hotplug.items() if v.kind == OK}
        self._image_hotplug.update(read)
        if read:
            self._image_read_at = self._wall()

    def knowledge(self) -> dict[str, Any]:
        """What the daemon knows, as `kdumpd status` asks over the control socket: the
        last reads with their wall times, the header read back, the counts. Reads
        nothing: a read of crash_hotplug takes the kexec lock."""
        header = self.header.last
        return {
            "kexec_crash_loaded": self._image_loaded or None,
            "crash_hotplug": dict(self._image_hotplug),
            "crash_hotplug_read_at": self._image_read_at,
            "header": None if header is None else {
                **header.as_dict(), "read_at": self.header.last_at},
            "header_verification": "on" if self.header.enabled else
            f"off: {self.header.off_why}",
            "failed_reads": self.stats.failed_reads,
            "state_file": {"problem": self.store.problem,
                           "write_failures": self.store.write_failures},
            "status_line": self.stats.status_line(),
        }

    def image_updates(self) -> dict[str, bool]:
        """Per subsystem, whether crash_hotplug last read 1 for the image loaded now (no
        read: a read takes the kexec lock)."""
        loaded = self._image_loaded == "1"
        return {s: loaded and self._image_hotplug.get(s) == "1" for s in SUBSYSTEMS}

    def _forget_image(self) -> None:
        self._image_hotplug = {}
        self._image_loaded = ""

    def _take_back(self, now: float) -> None:
        """Decide as the owner again; a kernel skip seen meanwhile is decided on."""
        self.stats.handed_back = False
        if self._missed_while_away:
            self.request(now, SUBSYSTEMS, self._missed_while_away, missed=True)
            self._missed_while_away = ""

    def _retry_due(self, now: float) -> None:
        """The retry timer of a failed reload fired."""
        self._retry.taken()
        if self.owed:
            self.scheduler.request(now, (), REASON_RESTORE, due_now=True)
            return
        problem = self.backend.probe()
        if problem:
            log.warning("%s: not yet, kdumpd's backend still cannot work: %s",
                        REASON_RETRY, problem)
            self._schedule_retry(now)
            return
        self._take_back(now)  # the probe passed: decide as the owner again
        self.scheduler.request(now, SUBSYSTEMS, REASON_RETRY, due_now=True)

    def _schedule_retry(self, now: float) -> float:
        delay = self._retry.failed(now)
        self.stats.restore_at = self._wall() + delay
        return delay

    def _skip(self, burst: Burst, fields: dict[str, Any], reason: str, *,
              proven: bool = False) -> None:
        """No reload for ``burst``; ``proven``: the header read back for this decision
        was current."""
        self.stats.skipped += burst.events
        log.info("%s: no reload: %s", what(burst), reason,
                 extra={"MESSAGE_ID": journal_ids.SKIPPED, **fields})
        if self.dry_run:
            return
        # Proven current: nothing more to read (a crash_hotplug read takes the kexec lock).
        snapshot = None if proven else self._read(SUBSYSTEMS)
        if snapshot is None or kernel_keeps_current(snapshot):
            # The image describes the hardware of now: read back, or kept by the kernel.
            hardware = self.hardware()
            self._save(self.state.with_hardware(hardware.fingerprint, hardware.summary()))
        elif is_unloaded(snapshot.crash_loaded) and not self.owed:
            # No image: whoever loads the next one loads it for the hardware of then.
            self._save(self.state.with_hardware("", ""))

    def reload_finished(self, burst: Burst, outcome: Outcome, now: float) -> None:
        self.scheduler.reload_finished(now)
        self._forget_image()  # a load ran: whatever crash_hotplug read before is void
        self._remember(self._read(SUBSYSTEMS))  # what the image loaded now says
        fields = {
            **burst_fields(burst),
            "KDUMPD_RELOAD_DURATION_MS": round(outcome.duration_s * 1000),
            "KDUMPD_ATTEMPTS": outcome.attempts,
        }
        self.stats.last_reload_at = self._reload_started_wall
        self.stats.last_duration_s = outcome.duration_s
        missing = is_unloaded(outcome.crash_loaded)
        state = replace(self.state, owed=missing, loading=False, last_load=LastLoad(
            at=self._reload_started_wall, how=self.backend.last_command or self.backend.describe(),
            ok=outcome.ok,
            duration_s=round(outcome.duration_s, 3)))
        state = replace(state, exposure=self._account(state.exposure, outcome, now))
        stale: HeaderCheck | None = None
        if outcome.ok:
            self.stats.reloads += 1
            self.stats.handed_back = False
            changed: frozenset[str] = frozenset()
            if self._loading is not None:
                state = state.with_hardware(self._loading.fingerprint, self._loading.summary())
                changed = self._loading.changed_subsystems(self.hardware())
                if changed:
                    self.request(now, changed, REASON_DURING_LOAD, missed=True)
            log.info(
                "reloaded the crash kernel for %s in %.2f s", what(burst), outcome.duration_s,
                extra={"MESSAGE_ID": journal_ids.RELOAD_DONE, **fields},
            )
            # The post-condition, unless the hardware moved during the load (its own
            # decision follows): the image loaded now describes the host.
            stale = None if changed else self.header.after_load()
            if stale is not None:
                self.stats.failed += 1
                log.error("the load left a STALE header, read back: %s", stale.why,
                          extra={"MESSAGE_ID": journal_ids.RELOAD_FAILED, **fields})
        else:
            self.stats.failed += 1
            self.stats.handed_back = True
            log.error(
                "reload failed after %d attempt(s): %s", outcome.attempts, outcome.error,
                extra={"MESSAGE_ID": journal_ids.RELOAD_FAILED, **fields},
            )
        self._save(state)
        if outcome.ok and stale is None:
            self._retry.succeeded()
            self.stats.restore_at = None
            return
        delay = self._schedule_retry(now)
        if stale is not None:
            log.error("deciding again in %.0f s", delay, extra=fields)
        elif missing:
            log.critical(
                "no crash kernel is loaded after the reload: a panic now produces no dump; "
                "retrying in %.0f s", delay,
                extra={"MESSAGE_ID": journal_ids.CRASH_KERNEL_UNLOADED, **fields},
            )
        else:
            log.error("the crash kernel may describe old hardware; retrying in %.0f s", delay,
                      extra=fields)


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
