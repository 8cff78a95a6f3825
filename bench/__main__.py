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
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import inprocess, peers, report, runner
from bench.emit import Devices
from bench.scenarios import IN_PROCESS_EXTRA, SCENARIOS, Scenario, select
from tests.support import udev

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Plan:
    kdumpd_reps: int
    fedora_reps: int
    debian_reps_single: int  # Debian on a single event
    debian_cut_s: float  # Debian's per-event reloads are stopped this long after the last event
    inprocess_reps: int


FULL = Plan(kdumpd_reps=5, fedora_reps=3, debian_reps_single=3, debian_cut_s=20,
            inprocess_reps=3)
QUICK = Plan(kdumpd_reps=1, fedora_reps=1, debian_reps_single=1, debian_cut_s=4,
             inprocess_reps=1)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: rules are removed


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _attempt(what: str, action: Callable[[], runner.Run], runs: list[runner.Run]) -> None:
    started = time.monotonic()
    try:
        run = action()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        _progress(f"{what}: FAILED: {error}")
        traceback.print_exc(file=sys.stderr)
        return
    runs.append(run)
    exposure = "stale" if run.exposure_s is None else f"{run.exposure_s:.2f} s"
    if run.cut_after_s:
        exposure = f"cut, ≈{run.projected_exposure_s:.0f} s projected"
    _progress(f"{what}: {run.reloads} reload(s), exposure {exposure} "
              f"({time.monotonic() - started:.1f} s){' ' + run.note if run.note else ''}")


def run_real(scenarios: list[Scenario], plan: Plan, runs: list[runner.Run]) -> str:
    """Every contestant on every scenario, one at a time; returns how udevd was obtained."""
    with udev.running_udevd() as how:
        _progress(f"systemd-udevd: {how}")
        devices = Devices.of_this_machine()
        for s in scenarios:
            for rep in range(plan.kdumpd_reps):
                _attempt(f"kdumpd      | {s.name} #{rep + 1}",
                         lambda s=s, rep=rep: runner.run_kdumpd(s, rep, devices), runs)
            if not s.peers:
                continue
            for rep in range(plan.fedora_reps):
                _attempt(f"Fedora/RHEL | {s.name} #{rep + 1}",
                         lambda s=s, rep=rep: runner.run_peer(
                             peers.FEDORA, s, rep, devices, cut_after_s=120), runs)
            reps = plan.debian_reps_single if s.events == 1 else 1
            for rep in range(reps):
                _attempt(f"Debian      | {s.name} #{rep + 1}",
                         lambda s=s, rep=rep: runner.run_peer(
                             peers.DEBIAN, s, rep, devices, cut_after_s=plan.debian_cut_s),
                         runs)
    return how


def run_inprocess(scenarios: list[Scenario], plan: Plan, runs: list[runner.Run]) -> None:
    for s in scenarios:
        for rep in range(plan.inprocess_reps):
            _attempt(f"in-process  | {s.name} #{rep + 1}",
                     lambda s=s, rep=rep: inprocess.run(s, rep), runs)


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


def header(args: argparse.Namespace, how: str, load_before: str, elapsed_s: float,
           devices: Devices) -> list[str]:
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
        f"- Load average before / after: {load_before} / {_loadavg()} "
        "(other work on this machine shares the 2 CPUs: figures are wall-clock under that load)",
        "- kdumpd: `kdumpd run` subprocess, `[events] source = \"udev\"`, quiet_ms = 250, "
        "max_delay_ms = 3000, fake backend delay_ms = 500 (unload 0.5 s + load 0.5 s); "
        "peers: udev rules in /run/udev/rules.d loaded by the same udevd, same 500 ms "
        "operations (see bench/peers.py)",
    ]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and the smaller scenarios (< 1 min)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md",
                        help="Markdown output (default bench/RESULTS.md)")
    parser.add_argument("--only", metavar="TEXT", help="only scenarios whose name contains TEXT")
    parser.add_argument("--no-peers", action="store_true", help="kdumpd only")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (writes to /sys/.../uevent, installs udev rules)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    plan = QUICK if args.quick else FULL
    scenarios = select(SCENARIOS, quick=args.quick)
    in_proc = [*select(SCENARIOS, quick=args.quick), *IN_PROCESS_EXTRA]
    in_proc = [s for s in in_proc if s.receive_buffer >= 1 << 20]  # no socket in-process
    if args.only:
        scenarios = [s for s in scenarios if args.only in s.name]
        in_proc = [s for s in in_proc if args.only in s.name]
    if args.no_peers:
        scenarios = [dataclasses.replace(s, peers=False) for s in scenarios]
    started = time.monotonic()
    load_before = _loadavg()
    left = peers.remove_leftovers()
    if left:
        _progress(f"removed rules left by an earlier run: {', '.join(map(str, left))}")
    runs: list[runner.Run] = []
    how = run_real(scenarios, plan, runs)
    run_inprocess(in_proc, plan, runs)
    findings_path = HERE / "findings.md"
    findings = findings_path.read_text() if findings_path.exists() else ""
    text = report.document(
        runs, scenarios, in_proc,
        header=header(args, how, load_before, time.monotonic() - started,
                      Devices.of_this_machine()),
        findings=findings,
    )
    args.out.write_text(text, encoding="utf-8")
    raw = args.out.with_suffix(".json")
    raw.write_text(json.dumps([dataclasses.asdict(r) for r in runs], indent=1) + "\n")
    print(text)
    _progress(f"wrote {args.out} and {raw} in {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
