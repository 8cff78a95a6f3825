from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kdumpd import fakesysfs, journal_ids
from kdumpd.backends.fake import FakeBackend
from kdumpd.controller import Controller
from kdumpd.events import Event
from kdumpd.fakesysfs import FakeClock
from kdumpd.reloader import Reloader
from kdumpd.scheduler import ReloadScheduler
from kdumpd.sysfs import Sysfs


def memory_events(n: int) -> list[Event]:
    return [Event("memory", "online", f"/devices/system/memory/memory{i}") for i in range(n)]


class Rig:
    """The pipeline on fake time with the fake backend; reloads run when told to."""

    def __init__(self, root: Path, clock: FakeClock, *, dry_run: bool = False, fail: int = 0,
                 hotplug_after_load: bool = False, delay_ms: int = 0) -> None:
        self.clock = clock
        self.sysfs = Sysfs(root)
        self.log = root / "fake.log"
        self.backend = FakeBackend(self.log, self.sysfs, fail=fail, delay_ms=delay_ms,
                                   hotplug_after_load=hotplug_after_load, sleep=clock.advance,
                                   wall=clock)
        self.controller = Controller(ReloadScheduler(0.25, 3.0), self.sysfs.snapshot,
                                     dry_run=dry_run, wall=clock)
        self.reloader = Reloader(self.backend, self.sysfs, retries=2, sleep=clock.advance,
                                 clock=clock)

    def feed(self, events: list[Event], spacing: float = 0.0001) -> None:
        for event in events:
            self.controller.on_event(event, self.clock())
            self.clock.advance(spacing)

    def settle(self) -> None:
        """Let every pending burst become due and run its reload to the end."""
        while (deadline := self.controller.deadline()) is not None:
            self.clock.advance_to(deadline)
            burst = self.controller.poll(self.clock())
            if burst is not None:
                self.controller.reload_finished(burst, self.reloader.reload())

    def ops(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line)["op"] for line in self.log.read_text().splitlines()]


def test_burst_of_3840_events_reloads_once(root: Path, clock: FakeClock) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(3840))
    rig.settle()
    assert rig.ops() == ["unload", "load"]
    assert rig.controller.stats.reloads == 1
    assert rig.controller.stats.events == 3840


def test_burst_with_crash_hotplug_1_reloads_never(root: Path, clock: FakeClock) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    rig.feed(memory_events(3840))
    rig.settle()
    assert rig.ops() == []
    assert rig.controller.stats.skipped == 3840


def test_skip_is_logged_with_structured_fields(
    root: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
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


def test_events_during_a_reload_cause_one_follow_up_decided_after_it(
    root: Path, clock: FakeClock
) -> None:
    # The reload makes the kernel take over (hotplug-capable load): the follow-up decision,
    # taken after the reload finished, must see crash_hotplug=1 and skip.
    rig = Rig(root, clock, hotplug_after_load=True)
    rig.feed(memory_events(10))
    clock.advance(0.25)
    burst = rig.controller.poll(clock())
    assert burst is not None
    # While it runs (fake backend in flight), crash_hotplug reads 0 and events keep coming.
    rig.feed(memory_events(50))
    outcome = rig.reloader.reload()
    rig.controller.reload_finished(burst, outcome)
    rig.settle()
    assert rig.ops() == ["unload", "load"]
    assert rig.controller.stats.skipped == 50


def test_follow_up_reload_runs_when_the_kernel_still_needs_it(root: Path, clock: FakeClock) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(10))
    clock.advance(0.25)
    burst = rig.controller.poll(clock())
    assert burst is not None
    rig.feed(memory_events(50))
    assert rig.controller.poll(clock() + 100) is None  # nothing while the reload runs
    rig.controller.reload_finished(burst, rig.reloader.reload())
    rig.settle()
    assert rig.ops() == ["unload", "load", "unload", "load"]


def test_no_crash_kernel_loaded_means_no_reload(root: Path, clock: FakeClock) -> None:
    fakesysfs.build(root, crash_loaded="0")
    rig = Rig(root, clock)
    rig.feed(memory_events(64))
    rig.settle()
    assert rig.ops() == []


def test_dry_run_decides_but_runs_nothing(
    root: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
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


def test_failed_loads_are_retried_and_success_is_reported(root: Path, clock: FakeClock) -> None:
    rig = Rig(root, clock, fail=2)
    rig.feed(memory_events(5))
    rig.settle()
    assert rig.ops() == ["unload", "load"] * 3
    assert rig.controller.stats.reloads == 1
    assert not rig.controller.stats.crash_kernel_missing


def test_retries_used_up_leave_a_critical_message_and_the_status_says_so(
    root: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock, fail=10)
    rig.feed(memory_events(5))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.settle()
    assert rig.ops() == ["unload", "load"] * 3  # 1 try + 2 retries
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
    root: Path, clock: FakeClock
) -> None:
    rig = Rig(root, clock, fail=3)  # 1 try + 2 retries all fail
    rig.feed(memory_events(5))
    rig.settle()
    assert rig.controller.stats.crash_kernel_missing
    rig.feed(memory_events(5))
    rig.settle()
    assert rig.ops() == ["unload", "load"] * 4
    assert rig.controller.stats.reloads == 1
    assert not rig.controller.stats.crash_kernel_missing


def test_lost_events_schedule_a_resync_decision(root: Path, clock: FakeClock) -> None:
    rig = Rig(root, clock)
    rig.controller.on_events_lost(clock())
    rig.settle()
    assert rig.ops() == ["unload", "load"]
    assert rig.controller.stats.lost == 1


def test_lost_events_need_no_reload_when_the_kernel_keeps_it_current(
    root: Path, clock: FakeClock
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock)
    rig.controller.on_events_lost(clock())
    rig.settle()
    assert rig.ops() == []


def test_status_line_counts() -> None:
    from kdumpd.controller import Stats

    stats = Stats(events=10, skipped=4, reloads=1, last_reload_at=0.0, last_duration_s=0.5)
    line = stats.status_line()
    assert line.startswith("events 10, skipped 4, reloads 1; last reload ")
    assert line.endswith("took 0.50 s")
