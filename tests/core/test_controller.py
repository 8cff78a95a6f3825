from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

import pytest

from kdumpd import journal_ids
from kdumpd.backends import BackendError
from kdumpd.backends.fake import FakeBackend
from kdumpd.controller import TAKE_BACK_S, Controller, run_pending
from kdumpd.decision_log import REASON_HARDWARE
from kdumpd.events import Event
from kdumpd.fakes import fakesysfs
from kdumpd.fakes.clock import MockTime
from kdumpd.fakes.fakekernel import SKIP_LINE, FakeKernel
from kdumpd.hardware import read_hardware
from kdumpd.reloader import Outcome, Reloader
from kdumpd.retry import DELAYS_S as RESTORE_DELAYS_S
from kdumpd.scheduler import Burst, ReloadScheduler
from kdumpd.state import LastLoad, MemoryStore, State
from kdumpd.sysfs import Snapshot, Sysfs


def memory_events(n: int) -> list[Event]:
    return [Event("memory", "online", f"/devices/system/memory/memory{i}") for i in range(n)]


class Rig:
    """The pipeline on fake time with the fake backend; reloads run when told to."""

    def __init__(self, root: Path, clock: MockTime, *, dry_run: bool = False, fail: int = 0,
                 hotplug_after_load: bool = False, delay_ms: int = 0,
                 store: MemoryStore | None = None, arch: str = "x86_64") -> None:
        self.clock = clock
        self.sysfs = Sysfs(root)
        self.log = root / "fake.log"
        self.backend = FakeBackend(self.log, self.sysfs, fail=fail, delay_ms=delay_ms,
                                   hotplug_after_load=hotplug_after_load, sleep=clock.advance,
                                   wall=clock)
        self.store = store if store is not None else MemoryStore()
        self.root = root
        self.controller = Controller(ReloadScheduler(0.25, 3.0), self.sysfs.snapshot,
                                     store=self.store, hardware=lambda: read_hardware(root),
                                     backend=self.backend, dry_run=dry_run, wall=clock,
                                     arch=arch)
        self.reloader = Reloader(self.backend, self.sysfs, retries=2, sleep=clock.advance,
                                 clock=clock)

    def feed(self, events: list[Event], spacing: float = 0.0001) -> None:
        for event in events:
            self.controller.on_event(event, self.clock())
            self.clock.advance(spacing)

    def take(self) -> Burst:
        """Advance to the pending burst's decision (through a confirmation) and return the
        reload it starts."""
        while (deadline := self.controller.scheduler.deadline()) is not None:
            self.clock.advance_to(deadline)
            burst = self.controller.poll(self.clock())
            if burst is not None:
                return burst
        raise AssertionError("no reload was started")

    def settle(self) -> None:
        """Let every pending burst become due and run its reload to the end (a restore
        retry on the timer is not waited for)."""
        while (deadline := self.controller.scheduler.deadline()) is not None:
            self.clock.advance_to(deadline)
            burst = self.controller.poll(self.clock())
            if burst is not None:
                self.controller.reload_finished(burst, self.reloader.reload(), self.clock())

    def ops(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line)["op"] for line in self.log.read_text().splitlines()]


def test_burst_of_3840_events_reloads_once(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(3840))
    rig.settle()
    assert rig.ops() == ["load"]
    assert rig.controller.stats.reloads == 1
    assert rig.controller.stats.events == 3840


def test_burst_with_crash_hotplug_1_reloads_never(root: Path, clock: MockTime) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    rig.feed(memory_events(3840))
    rig.settle()
    assert rig.ops() == []
    assert rig.controller.stats.skipped == 3840


def test_skip_is_logged_with_structured_fields(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    rig.feed(memory_events(3))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.settle()
    (record,) = [r for r in caplog.records if getattr(r, "MESSAGE_ID", "") == journal_ids.SKIPPED]
    assert record.KDUMPD_SUBSYSTEM == "memory"  # type: ignore[attr-defined]
    assert record.KDUMPD_ACTION == "online"  # type: ignore[attr-defined]
    assert record.KDUMPD_DEVPATH == "/devices/system/memory/memory2"  # type: ignore[attr-defined]
    assert record.KDUMPD_CRASH_HOTPLUG == "memory=1"  # type: ignore[attr-defined]


def test_events_during_a_reload_are_reloaded_for_even_when_crash_hotplug_reads_1(
    root: Path, clock: MockTime
) -> None:
    # The kernel skips its elfcorehdr update while a load holds the kexec lock, so events
    # that arrived during our hotplug-capable load may be missing from the new image even
    # though crash_hotplug reads 1 afterwards: exactly one more reload.
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.feed(memory_events(10))
    burst = rig.take()
    rig.feed(memory_events(50))
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    rig.settle()
    assert rig.ops() == ["load", "load"]
    decision = rig.controller.last_decision
    assert decision is not None and "held the kexec lock" in decision.reason
    clock.advance(1.0)
    rig.feed(memory_events(5))  # a later burst, no reload in flight: the cheap skip again
    rig.settle()
    assert rig.ops() == ["load", "load"]
    assert rig.controller.stats.skipped == 5


def test_events_in_the_grace_period_after_a_reload_count_as_overlapping(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.feed(memory_events(3))
    rig.settle()
    clock.advance(rig.controller.scheduler.grace_s - 0.01)  # udev delivers late: still suspect
    rig.feed(memory_events(1))
    rig.settle()
    assert rig.ops() == ["load", "load"]
    clock.advance(rig.controller.scheduler.grace_s)  # the last instant of the grace period counts
    rig.feed(memory_events(1))
    rig.settle()
    assert rig.ops() == ["load", "load", "load"]
    clock.advance(rig.controller.scheduler.grace_s + 0.01)  # well after: the kernel handled it
    rig.feed(memory_events(1))
    rig.settle()
    assert rig.ops() == ["load", "load", "load"]


def test_a_transient_crash_hotplug_0_is_confirmed_before_reloading(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(4))
    clock.advance(0.25)
    assert rig.controller.poll(clock()) is None  # first 0: read again later
    assert rig.controller.deadline() == pytest.approx(clock() + rig.controller.confirm_s)
    fakesysfs.build(root, crash_hotplug="1")  # the kernel's own update released the lock
    rig.settle()
    assert rig.ops() == []
    assert rig.controller.stats.skipped == 4


def test_absent_crash_hotplug_needs_no_confirmation(tmp_path: Path, clock: MockTime) -> None:
    root = fakesysfs.build(tmp_path / "r", crash_hotplug=None)
    rig = Rig(root, clock)
    rig.feed(memory_events(4))
    clock.advance(0.25)
    assert rig.controller.poll(clock()) is not None


def test_follow_up_reload_runs_when_the_kernel_still_needs_it(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(10))
    burst = rig.take()
    rig.feed(memory_events(50))
    assert rig.controller.poll(clock() + 100) is None  # nothing while the reload runs
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    rig.settle()
    assert rig.ops() == ["load", "load"]


def test_no_crash_kernel_loaded_means_no_reload(root: Path, clock: MockTime) -> None:
    fakesysfs.build(root, crash_loaded="0")
    rig = Rig(root, clock)
    rig.feed(memory_events(64))
    rig.settle()
    assert rig.ops() == []


def test_dry_run_decides_but_runs_nothing(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock, dry_run=True)
    rig.feed(memory_events(64))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.settle()
    assert rig.ops() == []
    assert not rig.log.exists()
    would = [r for r in caplog.records if getattr(r, "MESSAGE_ID", "") == journal_ids.WOULD_RELOAD]
    assert len(would) == 1
    assert "would reload" in would[0].getMessage()
    assert "crash_hotplug=0" in would[0].getMessage()


def test_failed_loads_are_retried_and_success_is_reported(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock, fail=2)
    rig.feed(memory_events(5))
    rig.settle()
    assert rig.ops() == ["load"] * 3
    assert rig.controller.stats.reloads == 1
    assert not rig.controller.stats.crash_kernel_missing


def test_retries_used_up_leave_a_critical_message_and_the_status_says_so(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock, fail=10)
    rig.feed(memory_events(5))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.settle()
    assert rig.ops() == ["load"] * 3  # 1 try + 2 retries
    stats = rig.controller.stats
    assert (stats.reloads, stats.failed) == (0, 1)
    assert stats.crash_kernel_missing
    assert "crash kernel NOT loaded" in stats.status_line()
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert [getattr(r, "MESSAGE_ID", "") for r in critical] == [journal_ids.CRASH_KERNEL_UNLOADED]
    failed = [r for r in caplog.records
              if getattr(r, "MESSAGE_ID", "") == journal_ids.RELOAD_FAILED]
    assert "fake load failed" in failed[0].getMessage()


def test_next_burst_retries_a_crash_kernel_our_reload_left_unloaded(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock, fail=3)  # 1 try + 2 retries all fail
    rig.feed(memory_events(5))
    rig.settle()
    assert rig.controller.stats.crash_kernel_missing
    rig.feed(memory_events(5))
    rig.settle()
    assert rig.ops() == ["load"] * 4
    assert rig.controller.stats.reloads == 1
    assert not rig.controller.stats.crash_kernel_missing


def test_lost_events_schedule_a_resync_decision(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock)
    rig.controller.on_events_lost(clock())
    rig.settle()
    assert rig.ops() == ["load"]
    assert rig.controller.stats.lost == 1


def test_lost_events_need_no_reload_when_the_kernel_keeps_it_current(
    root: Path, clock: MockTime
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, arch="ppc64le")
    rig.controller.on_events_lost(clock())
    rig.settle()
    assert rig.ops() == []


def test_lost_events_reload_on_x86_since_they_may_hide_a_memory_removal(
    root: Path, clock: MockTime
) -> None:
    # x86's own update never takes a removed range out of the header.
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    rig.controller.on_events_lost(clock())
    rig.settle()
    assert rig.ops() == ["load"]
    assert rig.controller.last_decision is not None
    assert "hot-remove" in rig.controller.last_decision.reason


def test_status_line_counts() -> None:
    from kdumpd.decision_log import Stats

    stats = Stats(events=10, skipped=4, reloads=1, last_reload_at=0.0, last_duration_s=0.5)
    line = stats.status_line()
    assert line.startswith("events 10, skipped 4, reloads 1; last reload ")
    assert line.endswith("took 0.50 s")


def fake_hardware(root: Path, *, cpus: str = "0-1", ram: str = "100000000-11fffffff") -> None:
    files = {
        "sys/devices/system/cpu/present": "0-3",
        "sys/devices/system/cpu/online": cpus,
        "proc/iomem": f"00001000-0009fbff : System RAM\n{ram} : System RAM\n"
                      "  100000000-100ffffff : Kernel code",
        "proc/zoneinfo": "Node 0, zone Normal\n  pages free 1\n        present  262144\n",
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def test_first_start_of_a_boot_records_the_baseline_without_reloading(
    root: Path, clock: MockTime
) -> None:
    fake_hardware(root)
    rig = Rig(root, clock)
    rig.controller.start(clock())
    rig.settle()
    assert rig.ops() == []
    assert rig.store.state is not None
    assert rig.store.state.fingerprint == read_hardware(root).fingerprint
    assert rig.store.state.hardware == read_hardware(root).summary()  # what status shows
    assert rig.store.state.boot_id == "boot-1" and not rig.store.state.owed


def test_hardware_changed_while_not_running_gives_exactly_one_reload(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hardware(root)
    before = read_hardware(root)
    fake_hardware(root, ram="100000000-13fffffff")  # a DIMM came while kdumpd was stopped
    store = MemoryStore(State("boot-1", fingerprint=before.fingerprint))
    rig = Rig(root, clock, store=store, hotplug_after_load=True)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.controller.start(clock())
        rig.settle()
    assert rig.ops() == ["load"]
    assert any(REASON_HARDWARE in r.getMessage() and "reloading" in r.getMessage()
               for r in caplog.records)
    assert store.state is not None
    assert store.state.fingerprint == read_hardware(root).fingerprint
    assert store.state.last_load is not None and store.state.last_load.ok


def test_unchanged_hardware_at_start_needs_no_reload(root: Path, clock: MockTime) -> None:
    fake_hardware(root)
    store = MemoryStore(State("boot-1", fingerprint=read_hardware(root).fingerprint))
    rig = Rig(root, clock, store=store)
    rig.controller.start(clock())
    rig.settle()
    assert rig.ops() == []


def test_hardware_changed_with_a_kernel_that_keeps_it_current_needs_no_reload(
    root: Path, clock: MockTime
) -> None:
    fake_hardware(root)
    store = MemoryStore(State("boot-1", fingerprint="stale"))
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, store=store, arch="ppc64le")
    rig.controller.start(clock())
    rig.settle()
    assert rig.ops() == []
    assert store.state is not None
    assert store.state.fingerprint == read_hardware(root).fingerprint  # kernel kept it current


def test_hardware_changed_while_away_reloads_on_x86_whatever_crash_hotplug_says(
    root: Path, clock: MockTime
) -> None:
    # The change may have been a DIMM removal, which x86's own update leaves in the header.
    fake_hardware(root)
    store = MemoryStore(State("boot-1", fingerprint="stale"))
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, store=store)
    rig.controller.start(clock())
    rig.settle()
    assert rig.ops() == ["load"]
    assert store.state is not None
    assert store.state.fingerprint == read_hardware(root).fingerprint


def test_an_owed_crash_kernel_is_restored_at_start(root: Path, clock: MockTime) -> None:
    fakesysfs.build(root, crash_loaded="0")
    store = MemoryStore(State("boot-1", owed=True))
    rig = Rig(root, clock, store=store)
    rig.controller.start(clock())
    rig.settle()
    assert rig.ops() == ["load"]
    assert rig.sysfs.crash_loaded().text == "1"
    assert store.state is not None and not store.state.owed


def test_an_owed_crash_kernel_someone_else_loaded_is_no_longer_owed(
    root: Path, clock: MockTime
) -> None:
    store = MemoryStore(State("boot-1", owed=True))
    rig = Rig(root, clock, store=store)  # kexec_crash_loaded reads 1 again
    rig.controller.start(clock())
    rig.settle()
    assert rig.ops() == []
    assert store.state is not None and not store.state.owed


def test_an_owed_crash_kernel_is_retried_on_a_timer_with_capped_backoff(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock, fail=100)
    rig.feed(memory_events(2))
    # One burst, then no event at all: the restore is retried on its own.
    starts: list[float] = []
    for _ in range(len(RESTORE_DELAYS_S) + 2):
        deadline = rig.controller.deadline()
        assert deadline is not None
        clock.advance_to(deadline)
        burst = rig.controller.poll(clock())
        if burst is None:
            continue
        starts.append(clock())
        rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
        assert rig.controller.owing.owed
    gaps = [round(b - a) for a, b in zip(starts, starts[1:])]
    assert len(starts) >= len(RESTORE_DELAYS_S) + 1
    # each gap: the reloader's own retries (1 + 2 s) plus the restore delay
    assert gaps[:len(RESTORE_DELAYS_S)] == [round(d + 3) for d in RESTORE_DELAYS_S]
    assert max(gaps) <= RESTORE_DELAYS_S[-1] + 3
    assert rig.controller.stats.failed == len(starts)  # each failed reload counted
    assert "next restore attempt" in rig.controller.stats.status_line()


def test_a_successful_reload_records_the_hardware_it_loaded_for(
    root: Path, clock: MockTime
) -> None:
    fake_hardware(root)
    rig = Rig(root, clock)
    rig.controller.start(clock())
    fake_hardware(root, cpus="0-2")
    rig.feed([Event("cpu", "online", "/devices/system/cpu/cpu2")])
    rig.settle()
    assert rig.ops() == ["load"]
    assert rig.store.state is not None
    assert rig.store.state.fingerprint == read_hardware(root).fingerprint
    assert "cpus 0-2 online" in rig.store.state.hardware


class Refusing:
    """A backend whose probe and loads fail (a setting is wrong) until ``problem`` is
    cleared; the loaded image is left alone."""

    name = "refusing"

    def __init__(self, problem: str | None = "reload.append too long") -> None:
        self.problem = problem
        self.loads = 0

    def reload(self) -> None:
        self.loads += 1
        if self.problem:
            raise BackendError(self.problem, permanent=True)

    def probe(self) -> str | None:
        return self.problem

    last_command = ""


    def describe(self) -> str:
        return "refusing"


def test_a_failure_that_kept_a_stale_image_hands_back_owes_nothing_and_retries(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    backend = Refusing()
    rig.controller.backend = backend
    rig.reloader = Reloader(backend, rig.sysfs, retries=0)
    rig.feed(memory_events(2))
    rig.settle()
    assert rig.controller.owing.handed_back and not rig.controller.owing.owed
    assert rig.controller.deadline() == pytest.approx(clock() + RESTORE_DELAYS_S[0])
    rig.feed(memory_events(2))
    rig.settle()  # left to the distribution's rules: kdumpd's backend still cannot work
    assert (backend.loads, rig.controller.stats.skipped) == (1, 2)
    clock.advance(RESTORE_DELAYS_S[0])
    assert rig.controller.poll(clock()) is None  # the retry: probe still fails
    assert rig.controller.deadline() == pytest.approx(clock() + RESTORE_DELAYS_S[1])
    backend.problem = None
    clock.advance(RESTORE_DELAYS_S[1])
    # The retry: the probe passes, and the 0 read after the failed load is known for
    # this image, so the reload starts at once.
    burst = rig.controller.poll(clock())
    assert burst is not None
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    assert backend.loads == 2 and not rig.controller.owing.handed_back
    assert rig.controller.deadline() is None


def test_taking_reloads_back_waits_for_the_distributions_reload_of_the_same_events(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    rig.controller.stats.handed_back = True  # an earlier reload failed for good
    rig.feed(memory_events(3))
    clock.advance(0.25)
    assert rig.controller.poll(clock()) is None
    assert not rig.controller.owing.handed_back  # the hand-over file comes back at once
    assert rig.controller.deadline() == pytest.approx(clock() + TAKE_BACK_S)
    fakesysfs.build(root, crash_hotplug="1")  # the distribution reloaded meanwhile
    rig.settle()
    assert rig.ops() == []


def test_a_load_kdumpd_dies_in_is_recorded_and_decided_at_the_next_start(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(3))
    burst = rig.take()
    assert rig.store.state is not None and rig.store.state.loading  # persisted first
    # kdumpd is killed here; the syscall had freed the old image.
    fakesysfs.build(root, crash_loaded="0")
    again = Rig(root, clock, store=rig.store)
    again.controller.start(clock())
    assert rig.store.state.owed and rig.store.state.loading is False  # found, not in flight
    again.settle()
    assert again.ops() == ["load"] and again.sysfs.crash_loaded().text == "1"
    assert rig.store.state is not None and not rig.store.state.loading
    assert not rig.store.state.owed
    assert burst.events == 3


def test_hardware_that_changed_during_our_load_forces_one_more_reload(
    root: Path, clock: MockTime
) -> None:
    fake_hardware(root)
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.feed(memory_events(2))
    burst = rig.take()
    fake_hardware(root, ram="100000000-13fffffff")  # a DIMM whose events udev delivers late
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    clock.advance(5.0)  # well after the grace period: only the hardware comparison knows
    rig.settle()
    assert rig.ops() == ["load", "load"]
    decision = rig.controller.last_decision
    assert decision is not None and "changed while our load ran" in decision.reason
    assert rig.controller.stats.reloads == 2
    assert rig.store.state is not None
    assert rig.store.state.fingerprint == read_hardware(root).fingerprint

def test_a_crash_kernel_loaded_while_none_was_known_is_taken_as_the_baseline(
    root: Path, clock: MockTime
) -> None:
    fake_hardware(root)
    fakesysfs.build(root, crash_loaded="0")
    rig = Rig(root, clock, store=MemoryStore(State("boot-1", fingerprint="old")))
    rig.controller.start(clock())
    rig.feed(memory_events(2))
    rig.settle()  # nothing loaded: the image of later is not ours to describe
    assert rig.store.state is not None and rig.store.state.fingerprint == ""
    fakesysfs.build(root, crash_loaded="1")  # the distribution loads one, kdumpd restarts
    fake_hardware(root, ram="100000000-13fffffff")
    again = Rig(root, clock, store=rig.store)
    again.controller.start(clock())
    again.settle()
    assert again.ops() == []
    assert rig.store.state.fingerprint == read_hardware(root).fingerprint


# -- what the journal and the state file say, exactly ---------------------------------------


def records(caplog: pytest.LogCaptureFixture, message_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "MESSAGE_ID", "") == message_id]


def test_a_reload_is_reported_with_its_fields_and_recorded_in_the_state(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hardware(root)
    rig = Rig(root, clock, delay_ms=1500)
    rig.feed(memory_events(4))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        burst = rig.take()
        started = clock()
        rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    (done,) = records(caplog, journal_ids.RELOAD_DONE)
    assert done.getMessage() == "reloaded the crash kernel for 4 event(s) on memory in 1.50 s"
    assert done.KDUMPD_RELOAD_DURATION_MS == 1500  # type: ignore[attr-defined]
    assert done.KDUMPD_ATTEMPTS == 1  # type: ignore[attr-defined]
    assert done.KDUMPD_EVENTS == 4  # type: ignore[attr-defined]
    (reloading,) = [r for r in caplog.records if "reloading:" in r.getMessage()]
    assert reloading.getMessage() == ("4 event(s) on memory: reloading: memory: "
                                      "crash_hotplug=0: the elfcorehdr is stale")
    stats = rig.controller.stats
    assert (stats.last_reload_at, stats.last_duration_s) == (started, 1.5)
    state = rig.store.state
    assert state is not None and state.last_load is not None
    assert state.last_load == LastLoad(at=started, how="fake plain load", ok=True,
                                       duration_s=1.5)
    assert (state.owed, state.loading) == (False, False)
    assert state.hardware == read_hardware(root).summary()
    assert stats.status_line().endswith("; last reload "
                                        + time.strftime("%H:%M:%S", time.localtime(started))
                                        + " took 1.50 s")


def test_start_logs_say_what_kdumpd_found(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hardware(root)
    summary = read_hardware(root).summary()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        Rig(root, clock).controller.start(clock())
        Rig(root, clock, store=MemoryStore(State("boot-1"))).controller.start(clock())
        Rig(root, clock, store=MemoryStore(State("boot-1", fingerprint="x", hardware="old"))
            ).controller.start(clock())
        Rig(root, clock, store=MemoryStore(State("boot-1", fingerprint="x"))).controller.start(
            clock())
        owed = Rig(root, clock, store=MemoryStore(State("boot-1", owed=True)))
        owed.controller.start(clock())
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:2] == [
        f"no state for this boot: recording the hardware as the baseline ({summary})",
        f"no crash kernel was loaded by the last kdumpd: recording the hardware as the "
        f"baseline ({summary})",
    ]
    assert f"the hardware changed while kdumpd was not running (was: old; now: {summary})" \
        in messages
    assert f"the hardware changed while kdumpd was not running (was: unknown; now: {summary})" \
        in messages
    (critical,) = records(caplog, journal_ids.CRASH_KERNEL_UNLOADED)
    assert critical.getMessage() == ("kdumpd unloaded the crash kernel before it stopped and "
                                     "could not load it back: restoring it now")
    assert owed.controller.stats.crash_kernel_missing
    assert "crash kernel NOT loaded" in owed.controller.stats.status_line()


def test_every_overflow_is_counted_logged_and_resynced(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.controller.on_events_lost(clock())
        rig.controller.on_events_lost(clock())
    lost = records(caplog, journal_ids.EVENTS_LOST)
    assert [r.getMessage() for r in lost] == [
        "event socket overflowed, events were lost: scheduling a resync decision"] * 2
    assert lost[0].levelno == logging.WARNING
    assert rig.controller.stats.lost == 2
    assert "overflows 2" in rig.controller.stats.status_line()
    clock.advance(0.25)
    assert rig.controller.poll(clock()) is None  # a 0 is confirmed first
    burst = rig.take()
    assert burst.reasons == ("events were lost",) and burst.subsystems == {"cpu", "memory"}


def test_run_pending_decides_reloads_and_reports_until_nothing_is_pending(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(2))
    outcomes: list[float] = []

    def reload() -> Outcome:
        outcomes.append(clock())
        return rig.reloader.reload()

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        clock.advance(seconds)

    run_pending(rig.controller, reload, clock, sleep)
    assert len(outcomes) == 1 and rig.controller.stats.reloads == 1
    assert slept == [0.25, 0.01]  # the quiet window, then the second read of the 0
    assert rig.controller.deadline() is None


def test_a_zero_is_read_twice_only_while_unknown_for_the_image(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)  # an image that reads crash_hotplug=0, and loads that keep it 0
    slept: list[float] = []

    def burst(events: int = 2) -> list[float]:
        clock.advance(5.0)  # well after any load of ours: no follow-up
        slept.clear()
        rig.feed(memory_events(events))
        run_pending(rig.controller, rig.reloader.reload, clock, sleep)
        return slept

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        clock.advance(seconds)

    rig.controller.start(clock())  # reads the image loaded at start: its 0 is known
    assert burst() == [0.25] and rig.ops() == ["load"]
    assert burst() == [0.25] and rig.ops() == ["load", "load"]  # our load read 0 after it

    fakesysfs.build(root, crash_loaded="0")  # someone unloads: a 0 is read twice
    assert burst() == [0.25, 0.01] and rig.ops() == ["load", "load"]
    fakesysfs.build(root, crash_loaded="1")  # ... and loads a new image reading 0:
    assert burst() == [0.25, 0.01]  # unknown for this image, so read twice
    assert rig.ops() == ["load", "load", "load"]


def test_the_status_line_names_every_state(clock: MockTime) -> None:
    from kdumpd.decision_log import Stats

    stats = Stats(events=5, skipped=1, reloads=2, failed=3, lost=4,
                  crash_kernel_missing=True, restore_at=0.0, handed_back=True)
    when = time.strftime("%H:%M:%S", time.localtime(0.0))
    assert stats.status_line() == (
        f"events 5, skipped 1, reloads 2, failed 3, overflows 4; crash kernel NOT loaded, "
        f"next restore attempt {when}; reloads handed back to the distribution")
    assert Stats().status_line() == "events 0, skipped 0, reloads 0"


def test_fields_and_what_describe_a_burst() -> None:
    from kdumpd.decision_log import burst_fields, what
    from kdumpd.scheduler import Burst

    event = Event("cpu", "online", "/devices/system/cpu/cpu1")
    burst = Burst(2, frozenset({"memory", "cpu"}), event, event, 1.0, ("kdumpd reload",))
    assert burst_fields(burst) == {
        "KDUMPD_SUBSYSTEM": "cpu,memory", "KDUMPD_EVENTS": 2, "KDUMPD_ACTION": "online",
        "KDUMPD_DEVPATH": "/devices/system/cpu/cpu1", "KDUMPD_REQUEST": "kdumpd reload"}
    assert what(burst) == "2 event(s) on cpu,memory + kdumpd reload"
    request = Burst(0, frozenset(), None, None, 1.0, ("a", "b"))
    assert burst_fields(request) == {"KDUMPD_SUBSYSTEM": "", "KDUMPD_EVENTS": 0,
                                     "KDUMPD_REQUEST": "a; b"}
    assert what(request) == "a + b"
    assert what(Burst(0, frozenset(), None, None, 1.0)) == "a decision"


def test_a_failed_reload_is_reported_with_its_error(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock, fail=5)
    rig.reloader = Reloader(rig.backend, rig.sysfs, retries=0)
    rig.feed(memory_events(1))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        burst = rig.take()
        rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    (failed,) = records(caplog, journal_ids.RELOAD_FAILED)
    assert failed.getMessage() == ("reload failed after 1 attempt(s): fake load failed "
                                   "(reload.fake.fail)")
    assert failed.levelno == logging.ERROR
    (critical,) = records(caplog, journal_ids.CRASH_KERNEL_UNLOADED)
    assert critical.getMessage() == ("no crash kernel is loaded after the reload: a panic now "
                                     f"produces no dump; retrying in {RESTORE_DELAYS_S[0]:.0f} s")
    assert rig.controller.stats.restore_at == pytest.approx(clock() + RESTORE_DELAYS_S[0])
    assert rig.store.state is not None and rig.store.state.last_load is not None
    assert not rig.store.state.last_load.ok


def test_the_restore_backoff_starts_over_after_a_success(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock, fail=3)  # the first reload fails all its 3 attempts
    rig.feed(memory_events(2))
    rig.settle()
    assert rig.controller.owing.owed
    assert rig.controller.deadline() == pytest.approx(clock() + RESTORE_DELAYS_S[0])
    clock.advance(RESTORE_DELAYS_S[0])
    restore = rig.controller.poll(clock())  # the restore timer, due at once
    assert restore is not None
    rig.controller.reload_finished(restore, rig.reloader.reload(), clock())
    assert not rig.controller.owing.owed and rig.controller.stats.restore_at is None

    backend = FakeBackend(rig.log, rig.sysfs, fail=3, sleep=clock.advance, wall=clock)
    rig.controller.backend = backend
    rig.reloader = Reloader(backend, rig.sysfs, retries=2, sleep=clock.advance, clock=clock)
    fakesysfs.build(root, crash_hotplug="0")
    rig.feed(memory_events(1))
    rig.settle()
    assert rig.controller.owing.owed
    assert rig.controller.deadline() == pytest.approx(clock() + RESTORE_DELAYS_S[0])


def test_skips_add_up_and_record_what_the_image_describes(root: Path, clock: MockTime) -> None:
    fake_hardware(root)
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    rig.feed(memory_events(3))
    rig.settle()
    clock.advance(1.0)
    rig.feed(memory_events(2))
    rig.settle()
    assert rig.controller.stats.skipped == 5
    now = read_hardware(root)
    assert rig.store.state is not None  # the kernel keeps the image current: it is now's
    assert (rig.store.state.fingerprint, rig.store.state.hardware) == (now.fingerprint,
                                                                      now.summary())

    fakesysfs.build(root, crash_loaded="0")  # no image at all: nothing to describe
    clock.advance(1.0)
    rig.feed(memory_events(1))
    rig.settle()
    assert (rig.store.state.fingerprint, rig.store.state.hardware) == ("", "")
    assert rig.controller.stats.skipped == 6


def journal(caplog: pytest.LogCaptureFixture) -> list[str]:
    """kdumpd's messages as an admin reads them in the journal: level and text."""
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "kdumpd"]


def test_the_journal_tells_the_owed_and_overlap_stories(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore(State("boot-1", owed=True))
    rig = Rig(root, clock, store=store, hotplug_after_load=True)  # someone loaded one again
    with caplog.at_level(logging.DEBUG, logger="kdumpd"):
        rig.controller.start(clock())
        rig.settle()
        assert store.state is not None and store.state.owed is False
        rig.feed(memory_events(1))
        rig.settle()  # kdumpd's own load: crash_hotplug=1 afterwards
        clock.advance(rig.controller.scheduler.grace_s / 2)
        rig.feed(memory_events(2))
        rig.settle()
    lines = journal(caplog)
    assert ("INFO a crash kernel is loaded again (not by kdumpd): nothing is owed any more"
            in lines)
    assert ("INFO 2 event(s) on memory: reloading: events arrived while our load held the "
            "kexec lock: the kernel may have skipped their elfcorehdr update") in lines


def test_the_journal_tells_the_hand_back_and_take_back_story(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    class Missing:
        name = "missing"
        problem: str | None = "kexec: command not found"

        def reload(self) -> None:
            raise AssertionError("no reload while handed back")

        def probe(self) -> str | None:
            return self.problem

        last_command = ""


        def describe(self) -> str:
            return "missing"

    rig = Rig(root, clock)
    backend = Missing()
    rig.controller.backend = backend
    rig.controller.stats.handed_back = True  # an earlier reload failed for good
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.feed(memory_events(3))
        rig.settle()
        backend.problem = None
        rig.feed(memory_events(1))
        clock.advance(0.25)
        assert rig.controller.poll(clock()) is None
    lines = journal(caplog)
    assert lines[0] == ("INFO 3 event(s) on memory: no reload: reloads are handed back to the "
                        "distribution's rules while kdumpd's backend cannot work: "
                        "kexec: command not found")
    assert lines[-1] == ("INFO the backend works again: kdumpd takes reloads back and decides "
                         f"in {TAKE_BACK_S:.0f} s, once the distribution's rules are done "
                         "with these events")
    assert rig.controller.stats.handed_back is False


SKIP = "crash hp: kexec_trylock() failed, kdump image may be inaccurate"


def test_a_skip_the_kernel_logged_beside_an_event_reloads_whatever_crash_hotplug_says(
    root: Path, clock: MockTime
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.controller.start(clock())
    rig.feed(memory_events(1))
    clock.advance(1.9)  # the journal passes the line on after udev's event
    rig.controller.on_kernel_skip(clock(), SKIP)
    rig.settle()
    assert rig.ops() == ["load"]
    assert rig.controller.last_decision is not None
    assert "kexec_trylock() failed" in rig.controller.last_decision.reason
    assert rig.controller.stats.failed_reads == 0


def test_a_skip_line_just_before_its_event_reloads_once(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.controller.start(clock())
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.controller.on_kernel_skip(clock(), SKIP)  # counted as a read until...
        assert rig.controller.stats.failed_reads == 1
        clock.advance(1.9)
        rig.feed(memory_events(3))  # ...the hotplug's event arrives: it was a skip
        rig.settle()
    assert rig.ops() == ["load"] and rig.controller.stats.failed_reads == 0
    assert ("kernel: \"kexec_trylock() failed\" just before a hotplug event: deciding over "
            "both subsystems") in caplog.messages


def test_a_line_with_no_event_near_it_is_a_read_and_decides_nothing(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.controller.start(clock())
    rig.feed(memory_events(1))
    rig.settle()
    clock.advance(2.01)  # just past the pairing window after the event
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        for _ in range(61):  # a reader every second during loads: one line a minute
            rig.controller.on_kernel_skip(clock(), SKIP)
            clock.advance(1.0)
        clock.advance(1.1)  # an event more than 2 s after the last line pairs with none
        rig.feed(memory_events(1))
        rig.settle()
        clock.advance(2.01)
        rig.controller.on_kernel_skip(clock(), SKIP)
        rig.settle()
    assert rig.ops() == []
    assert rig.controller.stats.failed_reads == 62
    said = [r for r in caplog.records if "with no hotplug event near" in r.getMessage()]
    assert [r.getMessage() for r in said] == [
        f"kernel: {SKIP}, 1 time(s), with no hotplug event near: a read of crash_hotplug "
        "during a load (it changes no header); no reload",
        f"kernel: {SKIP}, 60 time(s), with no hotplug event near: a read of crash_hotplug "
        "during a load (it changes no header); no reload",
    ]
    assert all(r.MESSAGE_ID == journal_ids.KERNEL_READ_REFUSED for r in said)
    assert "refused crash_hotplug reads 62" in rig.controller.stats.status_line()


def test_lines_during_our_own_load_without_new_events_change_nothing(
    root: Path, clock: MockTime
) -> None:
    fakesysfs.build(root, crash_hotplug="0")
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.feed(memory_events(2))
    burst = rig.take()  # the load covers the events before it
    for _ in range(40):  # a 50 ms poller during our 2 s load prints a line per read
        rig.controller.on_kernel_skip(clock(), SKIP)
        clock.advance(0.05)
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    for _ in range(10):
        rig.controller.on_kernel_skip(clock(), SKIP)
        clock.advance(0.05)
    rig.settle()
    assert rig.ops() == ["load"] and rig.controller.stats.failed_reads == 50


def test_a_skip_logged_during_our_load_joins_its_single_follow_up(
    root: Path, clock: MockTime
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.feed([Event("memory", "remove", "/devices/system/memory/memory9")])
    burst = rig.take()
    rig.feed(memory_events(4))  # during the load: the kernel skips their update...
    rig.controller.on_kernel_skip(clock(), SKIP)  # ...and says so
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    rig.settle()
    assert rig.ops() == ["load", "load"]


def test_lines_logged_this_boot_before_kdumpd_started_decide_nothing_by_themselves(
    root: Path, clock: MockTime
) -> None:
    # 76 reader lines at first start reloaded with no hotplug at all (issue 29): without
    # an event they cannot be told from failed reads.
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.controller.start(clock(), kernel_skips=76)
    rig.settle()
    assert rig.ops() == [] and rig.controller.deadline() is None
    again = Rig(root, clock, store=rig.store, hotplug_after_load=True)
    again.controller.start(clock(), kernel_skips=76)
    again.settle()
    assert again.ops() == []


def test_a_skip_while_reloads_are_handed_back_is_decided_on_at_the_take_back(
    root: Path, clock: MockTime
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    backend = Refusing()
    rig.controller.backend = backend
    rig.controller.stats.handed_back = True
    rig.feed(memory_events(1))
    rig.controller.on_kernel_skip(clock(), SKIP)  # the distribution's load held the lock
    rig.settle()
    assert backend.loads == 0  # handed back: not kdumpd's to reload
    backend.problem = None
    rig.feed(memory_events(1))
    rig.reloader = Reloader(backend, rig.sysfs, retries=0)
    rig.settle()  # taken back, then the skip seen meanwhile reloads despite crash_hotplug=1
    assert backend.loads == 1


def on_the_fake_kernel(root: Path, clock: MockTime, *, arch: str = "x86_64",
                       during: Callable[[FakeKernel], None] | None = None) -> Rig:
    """A rig whose loads go to the fake kernel and take 0.5 s of fake time; ``during`` runs
    inside the first one (with the kexec lock held)."""
    rig = Rig(root, clock, arch=arch)
    pending = [during] if during else []

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if pending:
            pending.pop()(rig.backend.kernel)

    rig.backend = FakeBackend(rig.log, rig.sysfs, delay_ms=500, hotplug_after_load=True,
                              sleep=sleep, wall=clock)
    rig.controller.backend = rig.backend
    rig.reloader = Reloader(rig.backend, rig.sysfs, retries=0, sleep=clock.advance,
                            clock=clock)
    return rig


def hotplug(rig: Rig, kernel: FakeKernel, block: str, *actions: str) -> None:
    """The kernel does each action, and udev delivers its event to kdumpd."""
    for action in actions:
        kernel.hotplug("memory", action, block)
        rig.feed([Event("memory", action, f"/devices/system/memory/{block}")])


def test_on_the_fake_kernel_a_dimm_during_our_load_and_its_removal_end_current(
    root: Path, clock: MockTime
) -> None:
    rig = on_the_fake_kernel(
        root, clock, during=lambda k: hotplug(rig, k, "memory9", "add", "online"))
    kernel = rig.backend.kernel
    rig.feed(memory_events(1))  # a crash_hotplug=0 image: kdumpd reloads...
    rig.settle()
    assert kernel.log == [SKIP_LINE]  # ...and the DIMM came online inside that load
    assert rig.ops() == ["load", "load"] and kernel.image_current()
    clock.advance(5)
    hotplug(rig, kernel, "memory9", "offline", "remove")
    assert not kernel.image_current()  # x86's own update keeps the removed block
    rig.settle()
    assert rig.ops() == ["load", "load", "load"] and kernel.image_current()


def test_on_the_fake_kernel_a_removal_is_missed_without_the_x86_rule(
    root: Path, clock: MockTime
) -> None:
    # The control: decide as on powerpc (whose update takes the range out) over an x86
    # kernel, and the removed block stays in the header.
    rig = on_the_fake_kernel(root, clock, arch="ppc64le")
    kernel = rig.backend.kernel
    rig.feed(memory_events(1))
    rig.settle()
    clock.advance(5)
    hotplug(rig, kernel, "memory9", "add", "online")
    rig.settle()
    assert kernel.image_current() and rig.ops() == ["load"]
    clock.advance(5)
    hotplug(rig, kernel, "memory9", "offline", "remove")
    rig.settle()
    assert rig.ops() == ["load"] and not kernel.image_current()


def test_on_the_fake_kernel_a_skip_after_our_load_is_caught_from_the_kernel_log(
    root: Path, clock: MockTime
) -> None:
    # Someone else's load holds the lock while a DIMM comes online, well after any load of
    # kdumpd's: crash_hotplug reads 1 and only the kernel's log says the image is stale.
    rig = on_the_fake_kernel(root, clock)
    kernel = rig.backend.kernel
    kernel.load("file", during=lambda: hotplug(rig, kernel, "memory9", "add", "online"))
    rig.settle()
    assert rig.ops() == [] and not kernel.image_current()  # crash_hotplug=1: skipped
    for line in kernel.log:
        rig.controller.on_kernel_skip(clock(), line)
    rig.settle()
    assert rig.ops() == ["load"] and kernel.image_current()


def test_on_the_fake_kernel_a_skip_during_someone_elses_load_waits_for_it_to_end(
    root: Path, clock: MockTime
) -> None:
    # The VM's scenario 17: a DIMM comes online while a foreign load holds the kexec lock.
    # kdumpd decides while that load runs (kexec_crash_loaded 0); the image it then
    # installs was built before the DIMM, so kdumpd must look again and reload.
    rig = on_the_fake_kernel(root, clock)
    kernel = rig.backend.kernel
    kernel.begin_load("file")
    hotplug(rig, kernel, "memory9", "add", "online")
    rig.controller.on_kernel_skip(clock(), kernel.log[-1])
    for _ in range(8):  # 2 s of decisions while the foreign load is under way
        deadline = rig.controller.deadline()
        assert deadline is not None
        clock.advance_to(deadline)
        assert rig.controller.poll(clock()) is None
    kernel.end_load("file")
    assert not kernel.image_current() and rig.ops() == []
    rig.settle()
    assert rig.ops() == ["load"] and kernel.image_current()


def test_a_skip_with_no_load_under_way_waits_a_bounded_time(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fakesysfs.build(root, crash_loaded="0")
    rig = Rig(root, clock)
    rig.feed([Event("memory", "add", "/devices/system/memory/memory9")], spacing=0)
    started = clock()
    with caplog.at_level(logging.DEBUG, logger="kdumpd"):
        rig.controller.on_kernel_skip(clock(), SKIP_LINE)
        rig.settle()
    assert rig.ops() == [] and clock() - started == pytest.approx(30.25, abs=0.3)
    assert rig.controller.last_decision is not None
    assert rig.controller.last_decision.reason == (
        "no crash kernel loaded after waiting 30 s: nothing to keep current")
    waits = [r for r in caplog.records if "waiting for the load under way" in r.getMessage()]
    assert [r.levelno for r in waits[:2]] == [logging.INFO, logging.DEBUG]
    assert waits[0].getMessage() == (
        "1 event(s) on cpu,memory + the kernel skipped a hotplug update of the crash "
        "kernel's header (\"kexec_trylock() failed\" in its log): no crash kernel is loaded "
        "now: waiting for the load under way to end (its image may predate the change)")
    confirms = [r.getMessage() for r in caplog.records if "confirming" in r.getMessage()]
    assert confirms == []  # a skip waits for the load instead of confirming a 0
    assert [(r.levelno, r.getMessage()) for r in caplog.records
            if "a panic now gives no dump" in r.getMessage()] == [(
        logging.WARNING, "no crash kernel is loaded 30 s after the kernel skipped a header "
        "update: the load under way failed or none ran, and a panic now gives no dump")]
    assert rig.controller.last_decision.reload is False
    # The next wait starts afresh: a skip later waits its full 30 s again.
    rig.feed([Event("memory", "add", "/devices/system/memory/memory10")], spacing=0)
    rig.controller.on_kernel_skip(clock(), SKIP_LINE)
    fakesysfs.build(root, crash_loaded="1", crash_hotplug="1")
    rig.settle()
    assert rig.ops() == ["load"]


def test_with_no_image_loaded_crash_hotplug_is_not_read(root: Path, clock: MockTime) -> None:
    # A read of crash_hotplug takes the kexec lock: while someone else's load holds it
    # (kexec_crash_loaded 0) the kernel would log its skip line for the read itself.
    fakesysfs.build(root, crash_loaded="0")
    rig = Rig(root, clock)
    asked: list[tuple[str, ...]] = []

    def snapshot(subsystems: Collection[str]) -> Snapshot:
        asked.append(tuple(sorted(subsystems)))
        return rig.sysfs.snapshot(subsystems)

    rig.controller.reads.read_with(snapshot)
    rig.controller.start(clock())
    rig.feed(memory_events(2))
    rig.controller.on_kernel_skip(clock(), SKIP_LINE)
    rig.settle()
    assert asked and all(a == () for a in asked) and rig.ops() == []
    fakesysfs.build(root, crash_loaded="1")
    rig.feed(memory_events(1))
    rig.settle()
    assert ("memory",) in asked  # loaded again: read as before


def test_a_storm_of_skip_lines_is_one_warning_per_decision(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    with caplog.at_level(logging.DEBUG, logger="kdumpd"):
        rig.feed(memory_events(1))
        for _ in range(5):
            rig.controller.on_kernel_skip(clock(), SKIP_LINE)
        rig.settle()
        rig.feed(memory_events(1))
        rig.controller.on_kernel_skip(clock(), SKIP_LINE)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING
              and "kexec_trylock" in r.getMessage()]
    assert len(warned) == 2 and rig.ops() == ["load"]


def test_the_start_says_how_many_skips_it_found_and_a_plain_request_waits_its_quiet(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.controller.start(clock(), kernel_skips=3)
    assert ("the kernel logged \"kexec_trylock() failed\" 3 time(s) this boot before kdumpd "
            "ran: with no hotplug event beside them these lines cannot be told from failed "
            "reads of crash_hotplug, so they decide nothing") in caplog.messages
    assert rig.controller.deadline() is None
    rig.controller.request(clock(), ["cpu"], "kdumpd reload")
    assert rig.controller.deadline() == pytest.approx(clock() + 0.25)


def test_a_reservation_short_for_the_ram_after_growth_is_said_once(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    from kdumpd.capacity import Capacity

    rig = Rig(root, clock)
    asked: list[int] = []
    lines: list[str | None] = []

    def capacity(hardware: object, loaded_cmdline: str | None) -> Capacity:
        asked.append(1)
        lines.append(loaded_cmdline)
        return Capacity(256 << 20, 512 << 20, "rule", warning=f"short #{len(asked)}")

    from kdumpd.capacity_watch import CapacityWatch

    rig.controller.capacity = CapacityWatch(capacity)
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        rig.feed(memory_events(4))
        rig.settle()
        rig.feed([Event("cpu", "online", "/devices/system/cpu/cpu1")])
        rig.settle()
        rig.feed(memory_events(2))
        rig.settle()
    assert len(asked) == 2  # after each memory burst, not after the CPU's
    assert lines == [None, None]  # no header read back here: the command line is not known
    shorts = [r for r in caplog.records if r.getMessage().startswith("short #")]
    assert [r.getMessage() for r in shorts] == ["short #1"]  # said once while it stays short
    assert getattr(shorts[0], "MESSAGE_ID", None) == journal_ids.CAPACITY_SHORT
    assert rig.controller.capacity.last is not None
    assert rig.controller.capacity.last.recommended_bytes == 512 << 20


def test_a_burst_the_kernel_keeps_current_reads_crash_hotplug_once(
        root: Path, clock: MockTime) -> None:
    # Each read of crash_hotplug takes the kexec lock: a skip whose decision read 1 for
    # both subsystems of this image records the hardware without reading again.
    fakesysfs.build(root, crash_loaded="1", crash_hotplug="1")
    rig = Rig(root, clock)
    rig.controller.start(clock())
    asked: list[tuple[str, ...]] = []

    def snapshot(subsystems: Collection[str]) -> Snapshot:
        asked.append(tuple(sorted(subsystems)))
        return rig.sysfs.snapshot(subsystems)

    rig.controller.reads.read_with(snapshot)
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/iomem").write_text("00001000-0009fbff : System RAM\n"
                                     "100000000-13fffffff : System RAM\n")
    before = rig.controller.state.fingerprint
    rig.feed(memory_events(3))
    rig.settle()
    assert rig.ops() == [] and rig.controller.stats.skipped == 3
    assert asked == [(), ("memory",)]  # kexec_crash_loaded, then crash_hotplug once
    assert before != rig.controller.state.fingerprint == read_hardware(root).fingerprint


# -- the rooms' seams, as the controller uses them (mutation survivors of the split) ------

def verdicts(*checks: str) -> tuple[list[str], Callable[[], object]]:
    """A header reader answering ``checks`` in turn (then the last one), and its calls."""
    from kdumpd.loaded_header import HeaderCheck

    calls: list[str] = []

    def verify() -> HeaderCheck:
        verdict = checks[min(len(calls), len(checks) - 1)]
        calls.append(verdict)
        return HeaderCheck(verdict, "RAM missing 0x1-0x2" if verdict == "stale" else "ok")

    return calls, verify


def test_what_the_daemon_knows_is_what_it_last_read(root: Path, clock: MockTime) -> None:
    from kdumpd.capacity import Capacity
    from kdumpd.capacity_watch import CapacityWatch

    fakesysfs.build(root, crash_hotplug="1")
    calls, verify = verdicts("current")
    rig = Rig(root, clock)
    rig.controller.header = __import__("kdumpd.header_proof", fromlist=["x"]).HeaderProof(
        verify, clock)  # type: ignore[arg-type]
    rig.controller.capacity = CapacityWatch(lambda hw, line: Capacity(1 << 28, 1 << 29,
                                                                       "rule"))
    off = rig.controller.knowledge()
    assert (off.kexec_crash_loaded, off.crash_hotplug_read_at, off.header) == ("", None, None)
    clock.advance(2.0)
    rig.controller.start(clock())
    rig.feed(memory_events(2))
    rig.settle()
    known = rig.controller.knowledge()
    assert known.kexec_crash_loaded == "1" and known.crash_hotplug == {"cpu": "1",
                                                                       "memory": "1"}
    assert known.crash_hotplug_read_at == clock() and known.header_read_at == clock()
    assert known.header is not None and known.header.verdict == "current"
    assert known.header_verification == "on"
    assert known.capacity is not None and known.capacity.recommended_bytes == 1 << 29
    assert known.stats.skipped == 2 and known.state == rig.controller.state
    assert known.as_dict()["header_verification"] == "on"
    assert Rig(root, clock).controller.knowledge().header_verification == \
        "off: [reload] verify_header = false"


def test_sighup_rewires_the_readers_the_backend_and_the_debounce(
        root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock)
    asked: list[tuple[str, ...]] = []

    def snapshot(subsystems: Collection[str]) -> Snapshot:
        asked.append(tuple(sorted(subsystems)))
        return rig.sysfs.snapshot(subsystems)

    other_log = root / "other.log"
    backend = FakeBackend(other_log, rig.sysfs, sleep=clock.advance, wall=clock)
    hardware_reads: list[int] = []

    def hardware() -> object:
        hardware_reads.append(1)
        return read_hardware(root)

    rig.controller.reconfigure(quiet_s=1.5, max_delay_s=9.0, snapshot=snapshot,
                               hardware=hardware, backend=backend)  # type: ignore[arg-type]
    rig.feed(memory_events(1))
    assert rig.controller.deadline() == pytest.approx(clock() + 1.5)
    rig.reloader = Reloader(backend, rig.sysfs, retries=0, sleep=clock.advance, clock=clock)
    rig.settle()
    assert asked and hardware_reads
    assert rig.ops() == [] and other_log.exists()  # the new backend loaded
    assert rig.controller.state.last_load is not None
    assert rig.controller.state.last_load.how == "fake plain load"


def test_a_skip_paired_with_an_event_is_logged_as_the_kernels_skip(
        root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        rig.controller.on_kernel_skip(clock(), SKIP_LINE)
        rig.feed(memory_events(1))
    (record,) = [r for r in caplog.records if r.getMessage().startswith("kernel: ")]
    assert getattr(record, "MESSAGE_ID", "") == journal_ids.KERNEL_SKIPPED
    assert rig.controller.deadline() == pytest.approx(clock() + 0.25 - 0.0001)


def test_a_read_line_during_our_load_never_pairs_with_a_later_event(
        root: Path, clock: MockTime) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.controller.request(clock(), ("memory",), "kdumpd reload", due_now=True, missed=True)
    burst = rig.take()
    rig.controller.on_kernel_skip(clock(), SKIP_LINE)  # someone read crash_hotplug
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    clock.advance(1.0)  # past the follow-up grace, within the pairing window
    rig.feed([Event("cpu", "online", "/devices/system/cpu/cpu1")])
    rig.settle()
    assert rig.ops() == ["load"] and rig.controller.stats.failed_reads == 1


def test_decision_warnings_and_the_reload_line_carry_the_bursts_fields(
        root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(root, clock)  # crash_hotplug 0: a reload
    (root / "sys/devices/system/cpu/crash_hotplug").write_text("1\n")
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.feed(memory_events(2))
        rig.settle()
    (line,) = [r for r in caplog.records if ": reloading: " in r.getMessage()]
    assert getattr(line, "KDUMPD_SUBSYSTEM", "") == "memory"
    assert getattr(line, "KDUMPD_CRASH_HOTPLUG", "") == "memory=0"


def test_a_request_kept_current_by_the_kernel_is_no_avoided_reload(
        root: Path, clock: MockTime) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    rig.controller.request(clock(), ("cpu", "memory"), "kdumpd reload", due_now=True)
    rig.settle()
    assert rig.controller.state.exposure.reloads_avoided == 0
    rig.feed(memory_events(2))
    rig.settle()
    assert rig.controller.state.exposure.reloads_avoided == 1


def test_a_skip_of_an_image_the_kernel_does_not_keep_current_keeps_its_fingerprint(
        root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock, arch="s390x")  # crash_hotplug 0; s390 never reloads
    rig.controller.start(clock())
    recorded = rig.controller.state.fingerprint
    (root / "sys/devices/system/cpu/cpu1").mkdir(parents=True, exist_ok=True)
    rig.feed([Event("cpu", "offline", "/devices/system/cpu/cpu1")])
    rig.settle()
    assert rig.ops() == [] and rig.controller.stats.skipped == 1
    assert rig.controller.state.fingerprint == recorded != ""


def test_no_header_is_read_at_start_while_nothing_is_loaded(
        root: Path, clock: MockTime) -> None:
    from kdumpd.header_proof import HeaderProof

    fakesysfs.build(root, crash_loaded="0")
    calls, verify = verdicts("unloaded")
    rig = Rig(root, clock)
    rig.controller.header = HeaderProof(verify, clock)  # type: ignore[arg-type]
    rig.controller.start(clock())
    assert calls == []


def test_the_header_is_not_judged_after_a_load_the_hardware_moved_during(
        root: Path, clock: MockTime) -> None:
    from kdumpd.header_proof import HeaderProof

    calls, verify = verdicts("stale")
    rig = Rig(root, clock)
    rig.controller.header = HeaderProof(verify, clock)  # type: ignore[arg-type]
    rig.feed(memory_events(2))
    burst = rig.take()
    before = len(calls)
    (root / "proc/iomem").write_text("00001000-0009fbff : System RAM\n"
                                     "100000000-17fffffff : System RAM\n")
    rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    assert len(calls) == before  # its own decision follows; no post-condition read now
    assert rig.controller.scheduler.has_reason(
        "the hardware changed while our load ran: the new image, or the kernel's update "
        "of it, may lack the change")


def test_a_load_that_left_a_stale_header_is_decided_again(
        root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture) -> None:
    from kdumpd.header_proof import HeaderProof

    calls, verify = verdicts("stale")
    rig = Rig(root, clock)
    rig.controller.header = HeaderProof(verify, clock)  # type: ignore[arg-type]
    rig.feed(memory_events(2))
    burst = rig.take()
    with caplog.at_level(logging.ERROR, logger="kdumpd"):
        rig.controller.reload_finished(burst, rig.reloader.reload(), clock())
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert said == ["the load left a STALE header, read back: RAM missing 0x1-0x2",
                    f"deciding again in {RESTORE_DELAYS_S[0]:.0f} s"]


def test_run_pending_decides_the_follow_up_a_load_leaves(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(2))

    def reload() -> Outcome:
        (root / "proc/iomem").write_text("00001000-0009fbff : System RAM\n"
                                         "100000000-1bfffffff : System RAM\n")
        return rig.reloader.reload()

    run_pending(rig.controller, reload, clock, clock.advance)
    assert rig.controller.stats.reloads == 2 and rig.controller.deadline() is None


def test_the_default_architecture_is_x86_64(root: Path, clock: MockTime) -> None:
    # x86's update cannot drop a removed range from the header: a removal reloads
    # whatever crash_hotplug says (policy.py).
    fakesysfs.build(root, crash_hotplug="1")
    sysfs = Sysfs(root)
    log = root / "fake.log"
    backend = FakeBackend(log, sysfs, sleep=clock.advance, wall=clock)
    controller = Controller(ReloadScheduler(0.25, 3.0), sysfs.snapshot, store=MemoryStore(),
                            hardware=lambda: read_hardware(root), backend=backend, wall=clock)
    controller.on_event(Event("memory", "remove", "/devices/system/memory/memory9"), clock())
    clock.advance(0.3)
    assert controller.poll(clock()) is not None


def test_a_skip_while_handed_back_reads_what_the_distributions_rules_left(
        root: Path, clock: MockTime) -> None:
    # The shortcut past a second crash_hotplug read is the decision path's only: a skip
    # while reloads are handed back reads again (the rules may have unloaded the image).
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    backend = Refusing()
    rig.controller.reconfigure(quiet_s=0.25, max_delay_s=3.0, snapshot=rig.sysfs.snapshot,
                               hardware=lambda: read_hardware(root), backend=backend)
    rig.reloader = Reloader(backend, rig.sysfs, retries=0)
    rig.controller.start(clock())
    rig.controller.request(clock(), ("cpu", "memory"), "kdumpd reload", due_now=True,
                           missed=True)
    rig.settle()  # the reload fails for good: handed back; 1 and 1 were read for the image
    assert rig.controller.owing.handed_back and rig.controller.state.fingerprint
    assert rig.controller.reads.kernel_keeps_current()
    fakesysfs.build(root, crash_loaded="0", crash_hotplug="1")  # the rules unloaded it
    rig.feed(memory_events(2))
    rig.settle()
    assert rig.controller.stats.skipped == 2
    assert rig.controller.state.fingerprint == ""  # no image: nothing recorded for it
