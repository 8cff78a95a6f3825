"""The report renders every scenario list the benchmark produces, with any mix of runs."""

from __future__ import annotations

from bench import report
from bench.runner import KDUMPD, KDUMPD_INPROC, Run
from bench.scenarios import IN_PROCESS_EXTRA, KERNEL_SOURCE, SCENARIOS, SWEEP


def _run(contestant: str, scenario: str, **kw: object) -> Run:
    base: dict[str, object] = {"contestant": contestant, "scenario": scenario, "rep": 0,
                               "events": 64, "reloads": 1, "exposure_s": 1.26, "span_s": 0.01}
    base.update(kw)
    return Run(**base)  # type: ignore[arg-type]


def test_document_renders_all_sections_and_targets() -> None:
    runs = [_run(KDUMPD, s.name, cpu_s=0.01, cpu_per_event_us=12.0, peak_rss_kib=20000,
                 idle_rss_kib=19000, ready_s=0.2, overflows=0, exit_code=0)
            for s in (*SCENARIOS, *SWEEP, *KERNEL_SOURCE)]
    runs += [_run("Fedora/RHEL", s.name, exposure_s=2.0) for s in SCENARIOS if s.peers]
    runs += [_run("Debian/Ubuntu", s.name, exposure_s=None, cut_after_s=20.0,
                  projected_exposure_s=64.0) for s in SCENARIOS if s.peers]
    runs += [_run(KDUMPD_INPROC, s.name, events=131072, cpu_s=0.03, cpu_per_event_us=0.25)
             for s in (*SCENARIOS, *IN_PROCESS_EXTRA)]
    text = report.document(runs, list(SCENARIOS), [*SCENARIOS, *IN_PROCESS_EXTRA],
                           header=["- Date: now"], findings="## Findings",
                           sweep_scenarios=[*SWEEP, *KERNEL_SOURCE])
    assert "≈ 64 s projected" in text
    assert "## kdumpd with other quiet windows" in text
    assert "| burst 3840 | 50 | kernel |" in text
    assert "## Both harms: stale time and absent time" in text
    assert "| ≤ 50 µs CPU per event in-process | 0.25 µs" in text


def test_stale_and_crashed_runs_are_shown_as_such() -> None:
    name = next(s.name for s in SCENARIOS if s.receive_buffer < 65536 and not s.variant)
    runs = [_run(KDUMPD, name, reloads=0, exposure_s=None, exit_code=1, overflows=0,
                 note="kdumpd exited 1: OSError")]
    found = {t.text: t for t in report.targets(runs, list(SCENARIOS))}
    overflow = found["socket overflow: detected, monitor recreated, resync reload"]
    assert overflow.met is False and "daemon died" in overflow.figure
    assert "**stale**" in report.exposure_cell(runs)


def test_targets_compare_one_event_with_debian_and_bursts_with_fedora() -> None:
    one = next(s for s in SCENARIOS if s.events == 1)
    burst = next(s for s in SCENARIOS if s.name == "burst 64")
    runs = [_run(KDUMPD, one.name, events=1, exposure_s=0.56),
            _run("Debian/Ubuntu", one.name, events=1, exposure_s=0.62),
            _run(KDUMPD, burst.name, exposure_s=0.6),
            _run("Fedora/RHEL", burst.name, exposure_s=1.1)]
    found = {t.text: t for t in report.targets(runs, [one, burst])}
    assert found["1 event: exposure ≤ 1.1× Debian/Ubuntu's"].met is True
    assert found["burst 64: exposure ≤ 0.5× Fedora/RHEL's"].met is False
    assert "0.55×" in found["burst 64: exposure ≤ 0.5× Fedora/RHEL's"].figure


def test_the_harms_table_splits_exposure_into_stale_and_absent() -> None:
    burst = next(s for s in SCENARIOS if s.name == "burst 64")
    runs = [_run(KDUMPD, burst.name, exposure_s=0.6, absent_s=0.5)]
    lines = report.harms(runs, [burst])
    assert "| burst 64 | 0.10 / 0.50 / 0.60 | — | — |" in lines
