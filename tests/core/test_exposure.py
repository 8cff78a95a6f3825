"""Exposure accounting on the fake clock: known gaps must give exactly those seconds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kdumpd import exposure
from kdumpd.controller import CONFIRM_S
from kdumpd.exposure import Exposure
from kdumpd.fakes import fakesysfs
from kdumpd.fakes.clock import MockTime
from kdumpd.state import State
from tests.core.test_controller import Rig, memory_events

QUIET_S = 0.25  # the Rig's scheduler
SPACING_S = 0.0001  # Rig.feed


def test_a_reload_counts_its_stale_time_and_its_window(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock, delay_ms=500)  # the fake load takes 0.5 s of the fake clock
    rig.feed(memory_events(4))
    rig.settle()
    counted = rig.controller.state.exposure
    assert counted.reloads == 1 and counted.failures == 0
    # From the first event to the end of the load: the events, the quiet window, the
    # confirming second read of crash_hotplug=0, the load.
    assert counted.stale_s == pytest.approx(4 * SPACING_S + QUIET_S + CONFIRM_S + 0.5,
                                            abs=0.002)
    assert counted.no_crash_kernel_s == pytest.approx(0.5, abs=0.002)
    assert counted.longest_gap_s == counted.no_crash_kernel_s
    assert rig.store.state is not None and rig.store.state.exposure == counted  # kept


def test_bursts_the_kernel_keeps_current_count_as_avoided(root: Path, clock: MockTime) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    rig = Rig(root, clock, arch="ppc64le")
    for _ in range(3):
        rig.feed(memory_events(2))
        rig.settle()
    counted = rig.controller.state.exposure
    assert (counted.reloads_avoided, counted.reloads, counted.stale_s) == (3, 0, 0.0)


def test_a_reload_that_left_none_counts_until_one_is_loaded_again(
    root: Path, clock: MockTime
) -> None:
    rig = Rig(root, clock, fail=3, delay_ms=100)  # 1 try + 2 retries, all fail
    rig.feed(memory_events(2))
    rig.settle()
    failed = rig.controller.state.exposure
    assert (failed.failures, failed.no_crash_kernel_s, failed.stale_s) == (1, 0.0, 0.0)
    started = clock()
    clock.advance(10.0)  # 10 s without a crash kernel before the next burst
    rig.feed(memory_events(2))
    rig.settle()
    done = rig.controller.state.exposure
    assert done.reloads == 1
    # The whole stretch: the failed reload's attempts and retry waits, the 10 s, the burst
    # and the load that worked.
    assert done.no_crash_kernel_s > 10.0 + 0.1
    assert done.longest_gap_s == done.no_crash_kernel_s
    assert done.stale_s > clock() - started  # stale since the first burst's first event


def test_the_state_file_keeps_only_finite_counts() -> None:
    kept = Exposure(1.5, 2.25, 3, 4, 1, 1.0)
    assert exposure.from_json({"no_crash_kernel_s": 1.5, "stale_s": 2.25, "reloads": 3,
                               "reloads_avoided": 4, "failures": 1,
                               "longest_gap_s": 1.0}) == kept
    assert exposure.from_json(None) == Exposure()
    for bad in ({"stale_s": math.inf}, {"stale_s": -1}, {"reloads": True}, {"reloads": "3"},
                [], "x"):
        with pytest.raises(ValueError):
            exposure.from_json(bad)
    assert State("b", exposure=kept).exposure.summary() == (
        "no crash kernel 1.50 s (longest 1.00 s), stale 2.25 s; reloads 3, avoided 4, "
        "failed 1")


def test_counts_come_back_with_their_types() -> None:
    read = exposure.from_json({"reloads": 3.0, "stale_s": 2, "failures": 0})
    assert read == Exposure(stale_s=2.0, reloads=3)
    assert isinstance(read.reloads, int) and isinstance(read.stale_s, float)
    assert isinstance(read.reloads_avoided, int) and isinstance(read.longest_gap_s, float)
    for name in ("no_crash_kernel_s", "stale_s", "reloads", "reloads_avoided", "failures",
                 "longest_gap_s"):
        with pytest.raises(ValueError, match=f"exposure.{name} is not a finite count"):
            exposure.from_json({name: -0.5})
