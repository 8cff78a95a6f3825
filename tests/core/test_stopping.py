"""stopping.py: the running reload may finish within one budget, with the watchdog petted,
and a crash kernel kdumpd unloaded gets one last bounded attempt before it exits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kdumpd.backends.fake import FakeBackend
from kdumpd.controller import Controller
from kdumpd.decision_log import REASON_RESTORE
from kdumpd.fakes import fakesysfs
from kdumpd.fakes.clock import MockTime
from kdumpd.hardware import read_hardware
from kdumpd.reload_worker import ReloadWorker
from kdumpd.reloader import Outcome, Reloader
from kdumpd.scheduler import ReloadScheduler
from kdumpd.state import MemoryStore, State
from kdumpd.stopping import Stopping
from kdumpd.sysfs import Sysfs, Value

EXITING_OWING = "exiting with no crash kernel loaded; the next start restores it"
LAST_ATTEMPT = "stopping with no crash kernel loaded: one last attempt to load it"
WAITING = "stopping: waiting for the running reload to finish (no further retries)"


class Hanging:
    """A reload worker whose reload runs until ``finishes_at`` on the clock (None: never);
    a join waits on the clock as a thread's join waits in real time."""

    def __init__(self, clock: MockTime, finishes_at: float | None = None) -> None:
        self._clock = clock
        self._finishes_at = finishes_at
        self.joins: list[float] = []
        self.cancelled = False
        self.collected = 0

    @property
    def busy(self) -> bool:
        return self.collected == 0

    @property
    def alive(self) -> bool:
        return self._finishes_at is None or self._clock() < self._finishes_at

    def cancel(self) -> None:
        self.cancelled = True

    def join(self, timeout: float) -> None:
        if len(self.joins) >= 20:
            raise AssertionError(f"joined without end: {self.joins[:5]}...")
        self.joins.append(timeout)
        until = self._clock() + timeout
        if self._finishes_at is not None:
            until = min(until, max(self._clock(), self._finishes_at))
        self._clock.advance_to(until)

    def collect(self) -> None:
        self.collected += 1


class Rig:
    def __init__(self, root: Path, clock: MockTime, *, fail: int = 0,
                 dry_run: bool = False) -> None:
        self.clock = clock
        self.root = root
        self.sysfs = Sysfs(root)
        self.log = root / "fake.log"
        self.backend = FakeBackend(self.log, self.sysfs, fail=fail, sleep=clock.advance,
                                   wall=clock)
        self.controller = Controller(ReloadScheduler(0.25, 3.0), self.sysfs.snapshot,
                                     store=MemoryStore(), hardware=lambda: read_hardware(root),
                                     backend=self.backend, dry_run=dry_run, wall=clock)
        self.reloader = Reloader(self.backend, self.sysfs, retries=2, sleep=clock.advance,
                                 clock=clock)
        self.notified: list[str] = []

    def owe(self) -> None:
        fakesysfs.build(self.root, crash_loaded="0")
        self.controller.owing.adopt(State("boot-1", owed=True))

    def stopping(self, worker: object, *, watchdog_s: float | None = None,
                 collect: object = None) -> Stopping:
        return Stopping(worker, self.controller, self.clock,  # type: ignore[arg-type]
                        notify=self.notified.append, watchdog_s=watchdog_s,
                        collect=collect or self.collect)  # type: ignore[arg-type]

    def collect(self) -> None:
        for burst, outcome in self.worker.outcomes():
            self.controller.reload_finished(burst, outcome, self.clock())

    def real_worker(self) -> ReloadWorker:
        self.worker = ReloadWorker(lambda: None)
        return self.worker

    def ops(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line)["op"] for line in self.log.read_text().splitlines()]


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "kdumpd"]


def test_nothing_running_and_nothing_owed_stops_at_once(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock)
    worker = Hanging(clock, finishes_at=0.0)
    worker.collected = 1  # idle
    assert rig.stopping(worker).stop(30.0, rig.reloader, rig.sysfs) == 0
    assert worker.joins == [] and not worker.cancelled and rig.ops() == []


def test_a_dry_run_owes_nothing_at_exit(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock, dry_run=True)
    rig.owe()
    assert rig.stopping(rig.real_worker()).stop(30.0, rig.reloader, rig.sysfs) == 0
    assert rig.ops() == []


def test_an_owed_crash_kernel_gets_one_last_attempt_that_pays_it(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock)
    rig.owe()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        status = rig.stopping(rig.real_worker()).stop(30.0, rig.reloader, rig.sysfs)
    assert status == 0
    assert rig.ops() == ["load"] and not rig.controller.owing.owed
    assert (logging.CRITICAL, LAST_ATTEMPT) in messages(caplog)
    assert (logging.CRITICAL, EXITING_OWING) not in messages(caplog)
    assert messages(caplog)[0][1].startswith(f"{REASON_RESTORE}: reloading: ")


def test_a_last_attempt_that_fails_is_one_attempt_and_exits_owing(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock, fail=5)
    rig.owe()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        status = rig.stopping(rig.real_worker()).stop(30.0, rig.reloader, rig.sysfs)
    assert status == 1
    assert rig.ops() == ["load"]  # retries=2, but no retry at exit
    assert rig.controller.owing.owed and rig.controller.stats.failed == 1
    said = messages(caplog)
    assert said.index((logging.CRITICAL, LAST_ATTEMPT)) < said.index(
        (logging.CRITICAL, EXITING_OWING))


class Raising:
    name = "raising"
    last_command = ""

    def reload(self) -> None:
        raise ZeroDivisionError("a bug")

    def describe(self) -> str:
        return "raising"

    def probe(self) -> str | None:
        return None


class UnreadableAfterLoad(Sysfs):
    """The reloader's read of kexec_crash_loaded after its attempt raises: a bug past the
    backend's, which the worker turns into a failed outcome read through the daemon's
    own sysfs."""

    def settled_crash_loaded(self) -> Value:
        raise RuntimeError("a bug in the reloader")


def test_a_last_attempt_that_raises_is_collected_as_a_failed_reload(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    rig.owe()
    reloader = Reloader(Raising(), UnreadableAfterLoad(root), 0)
    outcomes: list[Outcome] = []

    def collect() -> None:
        for burst, outcome in rig.worker.outcomes():
            outcomes.append(outcome)
            rig.controller.reload_finished(burst, outcome, clock())

    status = rig.stopping(rig.real_worker(), collect=collect).stop(30.0, reloader, rig.sysfs)
    assert status == 1
    (outcome,) = outcomes  # the outcome reached the controller
    assert not outcome.ok and "a bug in the reloader" in outcome.error
    assert outcome.crash_loaded == Value("0")  # read through the daemon's sysfs
    assert rig.controller.stats.failed == 1 and rig.controller.owing.owed
    assert not rig.worker.busy


def test_a_reload_that_outlives_the_budget_exits_owing_without_a_second_one(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock)
    rig.owe()
    worker = Hanging(clock)
    started = clock()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        status = rig.stopping(worker, collect=worker.collect).stop(
            5.0, rig.reloader, rig.sysfs)
    assert status == 1
    assert worker.cancelled and worker.collected == 0
    assert clock() == started + 5.0
    assert messages(caplog) == [
        (logging.INFO, WAITING),
        (logging.CRITICAL, "the running reload did not finish in 5 s; exiting anyway"),
        (logging.CRITICAL, EXITING_OWING),
    ]
    assert rig.ops() == []


def test_the_wait_pets_the_watchdog_every_half_period_until_the_budget_is_used(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    worker = Hanging(clock)
    rig.stopping(worker, watchdog_s=4.0, collect=worker.collect).stop(
        5.0, rig.reloader, rig.sysfs)
    assert worker.joins == [2.0, 2.0, 1.0]
    assert rig.notified == ["WATCHDOG=1"] * 3


def test_without_a_watchdog_the_wait_is_one_join_of_the_whole_budget(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock)
    worker = Hanging(clock)
    rig.stopping(worker, collect=worker.collect).stop(7.0, rig.reloader, rig.sysfs)
    assert worker.joins == [7.0] and rig.notified == []


def test_a_reload_that_finishes_in_the_budget_is_collected(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(root, clock)
    worker = Hanging(clock, finishes_at=clock() + 3.0)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        status = rig.stopping(worker, watchdog_s=4.0, collect=worker.collect).stop(
            30.0, rig.reloader, rig.sysfs)
    assert status == 0 and worker.collected == 1 and worker.cancelled
    assert worker.joins == [2.0, 2.0]
    assert messages(caplog) == [(logging.INFO, WAITING)]
