"""One contestant on one scenario against real uevents, and what came of it."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import measure, peers
from bench.emit import Devices, Emitted, Witness, emit
from bench.kdumpd_proc import KdumpdProcess
from bench.scenarios import Scenario, plan
from kdumpd.fakes import fakesysfs

KDUMPD = "kdumpd"
KDUMPD_INPROC = "kdumpd in-process"
RELOAD_S = measure.LOAD_S  # kdumpd's reload: one load over the loaded image


@dataclass(frozen=True)
class Run:
    contestant: str
    scenario: str
    rep: int
    events: int
    reloads: int
    exposure_s: float | None  # None: no load after the last event although one was needed
    span_s: float  # first to last event written
    cpu_s: float | None = None  # process CPU (all threads) after the idle baseline
    cpu_per_event_us: float | None = None  # event-loop thread CPU after the baseline / events
    peak_rss_kib: int | None = None
    idle_rss_kib: int | None = None
    ready_s: float | None = None
    overflows: int | None = None
    exit_code: int | None = None
    cut_after_s: float | None = None  # the run was stopped (Debian's per-event reloads)
    projected_exposure_s: float | None = None
    note: str = ""
    foreign_events: int = 0  # cpu/memory uevents during the run that the benchmark did not write
    absent_s: float | None = None  # without any crash kernel, from the first event on

    @property
    def stale_s(self) -> float | None:
        """A crash kernel loaded but lacking the change: the exposure less the absent time."""
        if self.exposure_s is None or self.absent_s is None:
            return None
        return max(0.0, self.exposure_s - self.absent_s)

    @property
    def tail_s(self) -> float | None:
        """Exposure counted from the last event instead of the first (None if no reload)."""
        if self.exposure_s is None or (self.exposure_s == 0 and self.reloads == 0):
            return None
        return self.exposure_s - self.span_s


def settle(timeout: float) -> bool:
    return peers.udevadm("settle", f"--timeout={max(1, round(timeout))}", timeout=timeout) == 0


class LogWatch:
    """When the fake log last changed (monotonic), polled by size."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.size = -1
        self.changed = time.monotonic()

    def poll(self) -> float:
        try:
            size = self.log.stat().st_size
        except FileNotFoundError:
            size = 0
        if size != self.size:
            self.size, self.changed = size, time.monotonic()
        return self.changed

    def ops(self) -> list[measure.Op]:
        try:
            return measure.parse_ops(self.log.read_text().splitlines())
        except FileNotFoundError:
            return []


def run_kdumpd(scenario: Scenario, rep: int, devices: Devices, *, timeout: float = 60) -> Run:
    with tempfile.TemporaryDirectory(prefix="kdumpd-bench-") as tmp:
        daemon = KdumpdProcess(Path(tmp), crash_hotplug=scenario.crash_hotplug,
                               receive_buffer=scenario.receive_buffer,
                               variant=scenario.variant, quiet_ms=scenario.quiet_ms,
                               source=scenario.source)
        try:
            ready_s = daemon.start()
            time.sleep(0.5)  # idle: the baseline after start-up
            idle = daemon.sample()
            witness = Witness()
            emitted = emit(plan(scenario), devices)
            watch = LogWatch(daemon.log)
            settle(timeout)
            _wait_kdumpd(daemon, scenario, emitted, watch, timeout)
            end = daemon.sample() if daemon.alive() else None
            foreign = _foreign(witness, emitted)
        finally:
            code = daemon.stop()
        note = ""
        if code != 0:
            last = daemon.stderr().strip().splitlines()[-1:] or ["?"]
            note = f"kdumpd exited {code}: {last[0][:160]}"
        return Run(
            KDUMPD, scenario.name, rep, emitted.count, measure.reloads(watch.ops()),
            measure.exposure(watch.ops(), emitted.first, emitted.last,
                             needs_reload=scenario.needs_reload),
            emitted.last - emitted.first,
            cpu_s=None if end is None else end.process_cpu_s - idle.process_cpu_s,
            cpu_per_event_us=None if end is None
            else (end.loop_cpu_s - idle.loop_cpu_s) / emitted.count * 1e6,
            peak_rss_kib=None if end is None else end.hwm_kib,
            idle_rss_kib=idle.rss_kib, ready_s=ready_s,
            overflows=daemon.stderr().count("event socket overflowed"),
            exit_code=code, note=note, foreign_events=foreign,
            absent_s=measure.absent(watch.ops(), emitted.first),
        )


def _foreign(witness: Witness, emitted: Emitted) -> int:
    seen = witness.drain()
    witness.close()
    if witness.lost:
        return -1
    return max(0, seen - emitted.count)


def _wait_kdumpd(daemon: KdumpdProcess, scenario: Scenario, emitted: Emitted,
                 watch: LogWatch, timeout: float) -> None:
    """Until every event arrived (or an overflow was reported) and nothing is left to do.

    A reload logs its line only after its 500 ms load, so "nothing left" is: the quiet
    window plus one operation plus a margin since the last event, and a second of log
    silence (consecutive operations are 500 ms apart).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.alive():
        now = time.monotonic()
        arrived = (daemon.status_count("events") >= emitted.count
                   or daemon.status_count("overflows") > 0
                   or now > emitted.last_mono + 10)
        quiet = (now >= emitted.last_mono + daemon.quiet_s + 0.9
                 and now - watch.poll() >= 1.0)
        if arrived and quiet:
            return
        time.sleep(0.05)


def run_peer(peer: peers.Peer, scenario: Scenario, rep: int, devices: Devices, *,
             cut_after_s: float, timeout: float = 60) -> Run:
    with tempfile.TemporaryDirectory(prefix="kdumpd-bench-") as tmp:
        workdir = Path(tmp)
        root = fakesysfs.build(workdir / "root", crash_loaded="1",
                               crash_hotplug=scenario.crash_hotplug)
        watch = LogWatch(workdir / "fake.log")
        cut = None
        with peers.installed(peer, workdir, root):
            witness = Witness()
            emitted = emit(plan(scenario), devices)
            cut_at = time.monotonic() + cut_after_s
            deadline = cut_at + timeout
            grace_until = time.monotonic() + 0.5  # a detached throttler may not be counted yet
            while time.monotonic() < deadline:
                now = time.monotonic()
                if cut is None and now > cut_at:
                    cut = now - emitted.last_mono
                    (workdir / "abort").touch()  # queued Debian reloads are skipped
                if (now > grace_until and settle(1) and peers.active(workdir) == 0
                        and now - watch.poll() >= 0.3):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"{peer.name} did not finish {scenario.name} in time")
            foreign = _foreign(witness, emitted)
        ops = watch.ops()
        exposure = None if cut else measure.exposure(
            ops, emitted.first, emitted.last, needs_reload=scenario.needs_reload)
        projected = None
        if cut:
            # One synchronous reload per event, back to back: extrapolate the measured pace.
            reloads_done = max(1, measure.reloads(ops))
            last_end = max(o.t for o in ops) + measure.LOAD_S if ops else emitted.first
            per_reload = (last_end - emitted.first) / reloads_done
            projected = per_reload * emitted.count
        return Run(
            peer.name, scenario.name, rep, emitted.count, measure.reloads(ops), exposure,
            emitted.last - emitted.first,
            cut_after_s=None if cut is None else round(cut, 1),
            projected_exposure_s=projected, foreign_events=foreign,
            absent_s=None if cut else measure.absent(ops, emitted.first),
        )
