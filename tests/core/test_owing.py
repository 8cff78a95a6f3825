"""owing.py: the debt of a crash kernel, the retry of a failed reload, and reloads handed
back to the distribution's rules."""

from __future__ import annotations

import logging

import pytest

from kdumpd.decision_log import REASON_KERNEL_SKIPPED, REASON_RESTORE, REASON_RETRY, Stats
from kdumpd.events import SUBSYSTEMS
from kdumpd.owing import Owing
from kdumpd.scheduler import Burst, ReloadScheduler
from kdumpd.state import MemoryStore, State


class Wall:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, boot_id: str = "boot-1") -> None:
        self.store = MemoryStore(boot_id=boot_id)
        self.scheduler = ReloadScheduler(0.25, 3.0)
        self.stats = Stats()
        self.owing = Owing(self.store, self.scheduler, self.stats, Wall())

    def due(self, now: float) -> Burst | None:
        deadline = self.scheduler.deadline()
        return None if deadline is None else self.scheduler.take(max(now, deadline))


def broken() -> str | None:
    return "kexec is not installed"


def works() -> str | None:
    return None


def test_a_new_debt_record_is_for_this_boot_and_owes_nothing() -> None:
    rig = Rig("boot-7")
    assert rig.owing.state == State("boot-7")
    assert not rig.owing.owed and not rig.owing.handed_back


def test_handing_back_is_the_default_and_taking_back_ends_it() -> None:
    rig = Rig()
    rig.owing.hand_back()
    assert rig.owing.handed_back and rig.stats.handed_back
    rig.owing.hand_back(False)
    assert not rig.owing.handed_back


def test_a_skip_seen_while_handed_back_is_decided_once_when_taken_back() -> None:
    rig = Rig()
    rig.owing.hand_back()
    deferred: list[float] = []
    why = rig.owing.away(REASON_KERNEL_SKIPPED, 100.0, broken, 5.0, defer=deferred.append)
    assert why.endswith("backend cannot work: kexec is not installed")
    assert rig.owing.away("", 101.0, works, 5.0, defer=deferred.append) == ""
    assert deferred == [106.0] and not rig.owing.handed_back
    burst = rig.due(101.0)
    assert burst is not None and burst.missed == REASON_KERNEL_SKIPPED
    assert burst.started_at == 101.0 and burst.subsystems == frozenset(SUBSYSTEMS)
    rig.owing.take_back(200.0)  # decided: nothing is left to ask for
    assert not rig.scheduler.has_pending


def test_a_retry_while_the_backend_still_cannot_work_waits_longer(
    caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig()
    rig.owing.hand_back()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.owing.retry_due(100.0, broken)
    assert [r.getMessage() for r in caplog.records] == [
        f"{REASON_RETRY}: not yet, kdumpd's backend still cannot work: kexec is not "
        "installed"]
    assert rig.owing.retry.due_at == 110.0 and rig.stats.restore_at == 1_700_000_010.0
    assert rig.owing.handed_back and not rig.scheduler.has_pending


def test_a_retry_once_the_backend_works_takes_back_and_decides_now() -> None:
    rig = Rig()
    rig.owing.hand_back()
    rig.owing.away(REASON_KERNEL_SKIPPED, 50.0, broken, 5.0, defer=lambda _: None)
    rig.owing.retry_due(100.0, works)
    assert not rig.owing.handed_back
    assert rig.scheduler.deadline() == 100.0
    burst = rig.scheduler.take(100.0)
    assert burst is not None and burst.started_at == 100.0
    assert burst.reasons == (REASON_KERNEL_SKIPPED, REASON_RETRY)
    assert burst.missed == REASON_KERNEL_SKIPPED


def test_a_retry_while_owed_restores_now() -> None:
    rig = Rig()
    rig.owing.save(State("boot-1", owed=True))
    assert rig.store.load() == State("boot-1", owed=True) and rig.stats.crash_kernel_missing
    rig.owing.retry_due(100.0, broken)
    burst = rig.scheduler.take(100.0)
    assert burst is not None and burst.reasons == (REASON_RESTORE,)
