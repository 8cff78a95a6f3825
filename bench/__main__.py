"""`python -m bench [--quick]`: run everything, write bench/RESULTS.md, print it."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType

from bench import inprocess, peers, report, runner
from bench.emit import Devices
from bench.scenarios import (
    IN_PROCESS_EXTRA,
    KERNEL_SOURCE,
    SCENARIOS,
    SWEEP,
    Scenario,
    select,
)
from tests.support import udev

HERE = Path(__file__).resolve().parent
QUICK_OUT = Path(tempfile.gettempdir()) / "kdumpd-bench-quick.md"


@dataclasses.dataclass(frozen=True)
class Plan:
    kdumpd_reps: int
    fedora_reps: int
    debian_reps_single: int  # Debian on a single event
    debian_cut_s: float  # Debian's per-event reloads are stopped this long after the last event
    inprocess_reps: int
    sweep_reps: int  # kdumpd with other quiet windows; 0 skips


FULL = Plan(kdumpd_reps=5, fedora_reps=3, debian_reps_single=3, debian_cut_s=20,
            inprocess_reps=3, sweep_reps=2)
QUICK = Plan(kdumpd_reps=1, fedora_reps=1, debian_reps_single=1, debian_cut_s=4,
             inprocess_reps=1, sweep_reps=0)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: rules are removed


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


RAW_PATH: list[Path] = []  # where every run is saved as soon as it is done


def _save(runs: list[runner.Run]) -> None:
    for path in RAW_PATH:
        path.write_text(json.dumps([dataclasses.asdict(r) for r in runs], indent=1) + "\n")


def _attempt(what: str, action: Callable[[], runner.Run], runs: list[runner.Run],
             tries: int = 3) -> None:
    """Run once; again (up to ``tries``) when foreign uevents or a failure spoiled it."""
    for attempt in range(1, tries + 1):
        started = time.monotonic()
        try:
            run = action()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            _progress(f"{what}: FAILED (attempt {attempt}): {error}")
            traceback.print_exc(file=sys.stderr)
            continue
        if run.foreign_events == 0 or attempt == tries:
            break
        _progress(f"{what}: {run.foreign_events} foreign uevent(s) during the run "
                  "(someone else writes uevents): running it again")
    else:
        return
    if run.foreign_events:
        run = dataclasses.replace(run, note=(run.note + " " if run.note else "")
                                  + f"{run.foreign_events} foreign uevents during the run")
    runs.append(run)
    _save(runs)
    exposure = "stale" if run.exposure_s is None else f"{run.exposure_s:.2f} s"
    if run.cut_after_s:
        exposure = f"cut, ≈{run.projected_exposure_s:.0f} s projected"
    _progress(f"{what}: {run.reloads} reload(s), exposure {exposure} "
              f"({time.monotonic() - started:.1f} s){' ' + run.note if run.note else ''}")


def run_real(scenarios: list[Scenario], sweep: list[Scenario], plan: Plan,
             runs: list[runner.Run]) -> str:
    """Every contestant on every scenario, one at a time; returns how udevd was obtained."""
    with udev.running_udevd() as how:
        _progress(f"systemd-udevd: {how}")
        devices = Devices.of_this_machine()
        for s in scenarios:
            for rep in range(plan.kdumpd_reps):
                _attempt(f"kdumpd      | {s.name} #{rep + 1}",
                         partial(runner.run_kdumpd, s, rep, devices), runs)
            if not s.peers:
                continue
            for rep in range(plan.fedora_reps):
                _attempt(f"Fedora/RHEL | {s.name} #{rep + 1}",
                         partial(runner.run_peer, peers.FEDORA, s, rep, devices,
                                 cut_after_s=120), runs)
            reps = plan.debian_reps_single if s.events == 1 else 1
            for rep in range(reps):
                _attempt(f"Debian      | {s.name} #{rep + 1}",
                         partial(runner.run_peer, peers.DEBIAN, s, rep, devices,
                                 cut_after_s=plan.debian_cut_s), runs)
        for s in sweep:
            for rep in range(plan.sweep_reps):
                _attempt(f"kdumpd      | {s.name} #{rep + 1}",
                         partial(runner.run_kdumpd, s, rep, devices), runs)
    return how


def run_inprocess(scenarios: list[Scenario], plan: Plan, runs: list[runner.Run]) -> None:
    for s in scenarios:
        for rep in range(plan.inprocess_reps):
            _attempt(f"in-process  | {s.name} #{rep + 1}",
                     partial(inprocess.run, s, rep), runs)


def _command(*argv: str) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip() or "?"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def tree_state() -> str:
    """The commit and whether kdumpd/ had local changes (others edit the tree meanwhile)."""
    commit = _command("git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD")
    dirty = _command("git", "-C", str(HERE.parent), "status", "--porcelain", "--", "kdumpd")
    return f"{commit}{' with uncommitted changes in kdumpd/' if dirty != '?' else ''}"


def header(args: argparse.Namespace, how: str, load_before: str, *, elapsed_s: float,
           devices: Devices, tree: str) -> list[str]:
    pid1 = Path("/proc/1/comm").read_text().strip()
    block = int(Path("/sys/devices/system/memory/block_size_bytes").read_text(), 16)
    return [
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"mode: {'--quick' if args.quick else 'full'}; wall time {elapsed_s / 60:.1f} min",
        f"- Machine: {platform.node()}, {os.cpu_count()} CPUs ({_cpu_model()}), "
        f"{_mem_total_gib():.1f} GiB, {devices.counts['memory']} memory blocks of "
        f"{block // 2**20} MiB, {devices.counts['cpu']} CPU devices",
        f"- Kernel: {platform.release()}; Python {platform.python_version()}; "
        f"systemd-udevd {_command('udevadm', '--version')} ({how}); PID 1 is `{pid1}`",
        f"- kdumpd tree at the start: {tree}",
        f"- Load average before / after: {load_before} / {_loadavg()} "
        "(other work on this machine shares the 2 CPUs: figures are wall-clock under that load)",
        "- kdumpd: `kdumpd run` subprocess, `[events] source = \"udev\"`, quiet_ms = 50, "
        "max_delay_ms = 3000, fake backend delay_ms = 500 (one load of 0.5 s over the "
        "loaded image); peers: udev rules in /run/udev/rules.d loaded by the same udevd, "
        "an unload and a load of 0.5 s each (see bench/peers.py)",
    ]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _scenario_lists(runs: list[runner.Run]) -> tuple[list[Scenario], list[Scenario],
                                                     list[Scenario]]:
    names = {r.scenario for r in runs if r.contestant != runner.KDUMPD_INPROC}
    in_names = {r.scenario for r in runs if r.contestant == runner.KDUMPD_INPROC}
    return ([s for s in SCENARIOS if s.name in names],
            [s for s in (*SCENARIOS, *IN_PROCESS_EXTRA) if s.name in in_names],
            [s for s in (*SWEEP, *KERNEL_SOURCE) if s.name in names])


def render(args: argparse.Namespace) -> int:
    """Rewrite the Markdown from the raw runs (after editing findings.md or the report)."""
    raw = json.loads(args.out.with_suffix(".json").read_text())
    runs = [runner.Run(**r) for r in raw]
    old = args.out.read_text().split("\n## ", 1)[0].splitlines()
    header = [line for line in old if line.startswith("- ")]
    scenarios, in_proc, sweep = _scenario_lists(runs)
    findings_path = HERE / "findings.md"
    text = report.document(runs, scenarios, in_proc, header=header,
                           findings=findings_path.read_text() if findings_path.exists() else "",
                           sweep_scenarios=sweep)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and the smaller scenarios (< 1 min)")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown output (default bench/RESULTS.md; with --quick "
                        f"{QUICK_OUT}, so a quick run never replaces the committed results)")
    parser.add_argument("--only", metavar="TEXT", help="only scenarios whose name contains TEXT")
    parser.add_argument("--no-peers", action="store_true", help="kdumpd only")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite --out from its .json and current findings.md")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = QUICK_OUT if args.quick else HERE / "RESULTS.md"
    if args.render:
        return render(args)
    if os.geteuid() != 0:
        print("bench: needs root (writes to /sys/.../uevent, installs udev rules)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    plan = QUICK if args.quick else FULL
    scenarios = select(SCENARIOS, quick=args.quick)
    in_proc = [*select(SCENARIOS, quick=args.quick), *IN_PROCESS_EXTRA]
    # No socket in-process: neither the overflow cases nor the drain proposals apply.
    in_proc = [s for s in in_proc if s.receive_buffer >= 1 << 20 and not s.variant]
    sweep = [*SWEEP, *KERNEL_SOURCE] if plan.sweep_reps else []
    if args.only:
        scenarios = [s for s in scenarios if args.only in s.name]
        in_proc = [s for s in in_proc if args.only in s.name]
        sweep = [s for s in sweep if args.only in s.name]
    if args.no_peers:
        scenarios = [dataclasses.replace(s, peers=False) for s in scenarios]
    started = time.monotonic()
    load_before = _loadavg()
    tree = tree_state()
    left = peers.remove_leftovers()
    if left:
        _progress(f"removed rules left by an earlier run: {', '.join(map(str, left))}")
    runs: list[runner.Run] = []
    raw = args.out.with_suffix(".json")
    RAW_PATH.append(raw)
    how = run_real(scenarios, sweep, plan, runs)
    run_inprocess(in_proc, plan, runs)
    findings_path = HERE / "findings.md"
    findings = findings_path.read_text() if findings_path.exists() else ""
    text = report.document(
        runs, scenarios, in_proc,
        header=header(args, how, load_before, elapsed_s=time.monotonic() - started,
                      devices=Devices.of_this_machine(), tree=tree),
        findings=findings, sweep_scenarios=sweep,
    )
    args.out.write_text(text, encoding="utf-8")
    print(text)
    _progress(f"wrote {args.out} and {raw} in {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
