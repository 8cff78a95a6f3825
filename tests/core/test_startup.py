"""startup.py: what a start takes up from this boot's state and asks the scheduler for."""

from __future__ import annotations

import logging

import pytest

from kdumpd.decision_log import (
    REASON_HARDWARE,
    REASON_HEADER_STALE,
    REASON_HEADER_UNFIXABLE,
    REASON_INTERRUPTED,
    REASON_UNPROTECTED,
    Stats,
)
from kdumpd.events import SUBSYSTEMS
from kdumpd.hardware import Hardware
from kdumpd.loaded_header import CURRENT, STALE, HeaderCheck
from kdumpd.owing import Owing
from kdumpd.scheduler import ANY_ACTION, Burst, ReloadScheduler
from kdumpd.startup import take_up
from kdumpd.state import MemoryStore, State

NOW = Hardware("0-3", "0-3", ("100000-7fffffff",), 524288)
BEFORE = Hardware("0-1", "0-1", ("100000-7fffffff",), 524288)


class Rig:
    def __init__(self) -> None:
        self.store = MemoryStore(boot_id="boot-1")
        self.scheduler = ReloadScheduler(0.25, 3.0)
        self.owing = Owing(self.store, self.scheduler, Stats(), lambda: 1_700_000_000.0)

    def burst(self) -> Burst | None:
        deadline = self.scheduler.deadline()
        return None if deadline is None else self.scheduler.take(deadline)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kdumpd"]


def test_a_first_start_asks_for_nothing_by_default_and_records_the_baseline(
    caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        take_up(10.0, None, NOW, owing=rig.owing, request=rig.scheduler.request)
    assert rig.burst() is None
    assert rig.store.load() == State("boot-1", fingerprint=NOW.fingerprint,
                                     hardware=NOW.summary())
    assert messages(caplog) == [
        f"no state for this boot: recording the hardware as the baseline ({NOW.summary()})"]


def test_a_stale_header_at_start_is_reloaded_whatever_crash_hotplug_says(
    caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig()
    check = HeaderCheck(STALE, "cpu 3 missing from the header")
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        take_up(10.0, None, NOW, owing=rig.owing, request=rig.scheduler.request,
                check=check)
    assert messages(caplog)[0] == f"{REASON_HEADER_STALE}: cpu 3 missing from the header"
    burst = rig.burst()
    assert burst is not None
    assert burst.reasons == (REASON_HEADER_STALE,) and burst.missed == REASON_HEADER_STALE
    assert burst.subsystems == frozenset(SUBSYSTEMS)


def test_a_stale_header_no_load_can_mend_is_said_and_left_to_crash_hotplug(
    caplog: pytest.LogCaptureFixture
) -> None:
    """Not a reload whatever crash_hotplug says (missed): a decision over both subsystems,
    which replaces a plain image and keeps a --hotplug one."""
    rig = Rig()
    check = HeaderCheck(STALE, "RAM missing 0x80000000-0xbfffffff", unfixable="the limit")
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        take_up(10.0, None, NOW, owing=rig.owing, request=rig.scheduler.request,
                check=check)
    burst = rig.burst()
    assert burst is not None
    assert burst.reasons == (REASON_HEADER_UNFIXABLE,) and not burst.missed
    assert burst.subsystems == frozenset(SUBSYSTEMS)
    said = [r for r in caplog.records if r.name == "kdumpd"][0]
    assert said.levelno == logging.ERROR
    assert said.getMessage() == ("the loaded crash kernel lacks RAM missing "
                                 "0x80000000-0xbfffffff: a dump would miss it; the limit")
    assert said.MESSAGE_ID == "b7c2e49a1f0d4e6c9a35d8f1e2c7b604"


def test_a_current_header_at_start_asks_for_nothing() -> None:
    rig = Rig()
    take_up(10.0, None, NOW, owing=rig.owing, request=rig.scheduler.request,
            check=HeaderCheck(CURRENT, "matches"))
    assert rig.burst() is None


def test_kernel_skips_before_kdumpd_ran_are_said_but_decide_nothing(
    caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        take_up(10.0, None, NOW, owing=rig.owing, request=rig.scheduler.request,
                kernel_skips=3)
    assert messages(caplog)[0].startswith(
        "the kernel logged \"kexec_trylock() failed\" 3 time(s) this boot")
    assert rig.burst() is None


def test_an_unprotected_image_is_replaced_when_the_host_is_quiet() -> None:
    rig = Rig()
    take_up(10.0, None, NOW, owing=rig.owing, request=rig.scheduler.request,
            unprotected=True)
    burst = rig.burst()
    assert burst is not None and burst.reasons == (REASON_UNPROTECTED,)
    assert burst.missed == "" and burst.subsystems == frozenset()


def test_a_load_interrupted_by_kdumpds_death_is_owed_and_decided_over_both(
    caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig()
    saved = State("boot-1", loading=True, fingerprint=BEFORE.fingerprint)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        take_up(10.0, saved, NOW, owing=rig.owing, request=rig.scheduler.request)
    assert messages(caplog) == [f"{REASON_INTERRUPTED}: deciding over both subsystems"]
    assert caplog.records[0].levelno == logging.WARNING
    assert rig.store.load() == State("boot-1", owed=True, fingerprint=BEFORE.fingerprint)
    burst = rig.burst()
    assert burst is not None and burst.reasons == (REASON_INTERRUPTED,)
    assert burst.subsystems == frozenset(SUBSYSTEMS) and burst.missed == ""


def test_hardware_changed_while_away_is_decided_as_unknown_events(
    caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig()
    saved = State("boot-1", fingerprint=BEFORE.fingerprint, hardware=BEFORE.summary())
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        take_up(10.0, saved, NOW, owing=rig.owing, request=rig.scheduler.request)
    assert messages(caplog) == [
        f"the hardware changed while kdumpd was not running (was: {BEFORE.summary()}; "
        f"now: {NOW.summary()})"]
    burst = rig.burst()
    assert burst is not None and burst.reasons == (REASON_HARDWARE,)
    assert burst.actions == frozenset((s, ANY_ACTION) for s in SUBSYSTEMS)
