"""Tests for the benchmark's pure parts: `pytest bench` (not part of `make unit`)."""

from __future__ import annotations

import pytest

from bench import measure, scenarios
from bench.measure import Op


def test_exposure_ends_with_the_last_load_started_after_the_last_event() -> None:
    ops = measure.parse_ops([
        '{"op": "unload", "t": 100.0, "ok": true}',
        '{"op": "load", "t": 100.5, "ok": true}',  # before the last event: does not count
        '{"op": "unload", "t": 101.0, "ok": true}',
        '{"op": "load", "t": 101.5, "ok": true}',
    ])
    got = measure.exposure(ops, first_event=99.9, last_event=100.7, needs_reload=True)
    assert got == pytest.approx(101.5 + 0.5 - 99.9)
    assert measure.reloads(ops) == 2


def test_no_load_after_the_last_event_is_stale_when_a_reload_was_needed() -> None:
    ops = [Op("unload", 10.0, True), Op("load", 10.5, True)]
    assert measure.exposure(ops, 9.0, 10.6, needs_reload=True) is None
    assert measure.exposure([], 9.0, 10.6, needs_reload=False) == 0.0


def test_failed_loads_do_not_end_the_exposure() -> None:
    ops = [Op("load", 11.0, False)]
    assert measure.exposure(ops, 10.0, 10.5, needs_reload=True) is None


def test_half_written_lines_are_skipped() -> None:
    ops = measure.parse_ops(['{"op": "load", "t": 1.0, "ok": true}', '{"op": "lo', ""])
    assert ops == [Op("load", 1.0, True)]


def test_percentile_interpolates() -> None:
    assert measure.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert measure.percentile([1.0, 2.0], 50) == 1.5
    assert measure.percentile([5.0], 100) == 5.0


def test_cpu_seconds_survives_a_command_name_with_spaces() -> None:
    line = "42 (python -m (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 77"
    assert measure.cpu_seconds(line, 100) == pytest.approx(3.0)


def test_status_kib() -> None:
    text = "Name:\tpython\nVmHWM:\t   20480 kB\nVmRSS:\t   18000 kB\n"
    assert measure.status_kib(text, "VmHWM") == 20480
    assert measure.status_kib(text, "VmSwap") is None


def test_plans_keep_bursts_in_order_and_space_paced_streams() -> None:
    two = next(s for s in scenarios.SCENARIOS if s.name.startswith("two bursts"))
    steps = scenarios.plan(two)
    assert len(steps) == 128 and steps[63][0] == 0.0 and steps[64][0] == 2.0
    paced = next(s for s in scenarios.SCENARIOS if s.name.startswith("paced"))
    offsets = [o for o, _, _ in scenarios.plan(paced)]
    assert offsets[1] == pytest.approx(0.05) and offsets[-1] == pytest.approx(9.95)


def test_quick_selection_is_a_subset() -> None:
    quick = scenarios.select(scenarios.SCENARIOS, quick=True)
    assert 0 < len(quick) < len(scenarios.SCENARIOS)


def test_absent_time_is_inside_loads_and_from_an_unload_to_the_next_loads_end() -> None:
    # kdumpd: one load over the loaded image, absent for the load itself.
    assert measure.absent([Op("load", 10.0, True)], 9.0) == pytest.approx(0.5)
    # A peer: unload at 10.0 (0.1 s), load at 10.1: absent until 10.6.
    peer = [Op("unload", 10.0, True), Op("load", 10.1, True)]
    assert measure.absent(peer, 9.0) == pytest.approx(0.6)
    # Before the first event does not count; overlapping spans count once.
    assert measure.absent([Op("load", 8.8, True), Op("load", 9.1, True)], 9.0) == \
        pytest.approx(0.6)
    # A failed load leaves no crash kernel until a later good one ends.
    assert measure.absent([Op("load", 10.0, False), Op("load", 12.0, True)], 9.0) == \
        pytest.approx(2.5)
    assert measure.absent([Op("unload", 10.0, True)], 9.0) == float("inf")
