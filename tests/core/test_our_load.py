"""our_load.py: what a load of kdumpd's writes into the state."""

from __future__ import annotations

from kdumpd.hardware import Hardware
from kdumpd.our_load import OurLoad
from kdumpd.reloader import Outcome
from kdumpd.state import State
from kdumpd.sysfs import Value

BEFORE = Hardware("0-3", "0-3", ("100000-7fffffff",), 524288)
AFTER = Hardware("0-3", "0-3", ("100000-7fffffff", "100000000-13fffffff"), 786432)


class Wall:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_load_ended_without_a_start_has_no_start_time_and_no_hardware() -> None:
    load = OurLoad(Wall())
    state = State("boot-1", fingerprint="old", hardware="old hardware")
    ended = load.ended(state, Outcome(True, 1, 0.5, "", Value("1")), "kexec -p", 50.0)
    assert ended.last_load is not None and ended.last_load.at == 0.0
    assert (ended.fingerprint, ended.hardware) == ("old", "old hardware")
    assert load.moved(AFTER) == frozenset()


def test_a_load_records_its_start_its_rounded_duration_and_the_hardware() -> None:
    wall = Wall()
    load = OurLoad(wall)
    state = load.starting(State("boot-1"), BEFORE, stale_from=10.0)
    assert state.loading
    wall.now += 100
    ended = load.ended(state, Outcome(True, 2, 1.23456, "", Value("1")), "kexec -p", 20.0)
    assert ended.last_load is not None
    assert ended.last_load.at == 1_700_000_000.0
    assert ended.last_load.duration_s == 1.235
    assert ended.last_load.ok and ended.last_load.how == "kexec -p"
    assert not ended.loading and not ended.owed
    assert ended.fingerprint == BEFORE.fingerprint and ended.hardware == BEFORE.summary()


def test_a_failed_load_keeps_the_fingerprint_of_the_image_before() -> None:
    load = OurLoad(Wall())
    state = load.starting(State("boot-1", fingerprint="old", hardware="old hardware"),
                          BEFORE, stale_from=10.0)
    ended = load.ended(state, Outcome(False, 3, 4.0, "busy", Value("0")), "kexec -p", 20.0)
    assert (ended.fingerprint, ended.hardware) == ("old", "old hardware")
    assert ended.owed and ended.exposure.failures == 1


def test_the_hardware_that_moved_during_the_load_is_named() -> None:
    load = OurLoad(Wall())
    load.starting(State("boot-1"), BEFORE, stale_from=10.0)
    assert load.moved(AFTER) == frozenset({"memory"})
    assert load.moved(BEFORE) == frozenset()
