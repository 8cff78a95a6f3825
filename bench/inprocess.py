"""The same scenarios in-process: kdumpd's real Daemon loop fed by the fake event source.

No udev, no netlink: events are pushed as fast as the scenario allows from a second
thread, so the CPU figure is what kdumpd's own pipeline (source drain, controller,
scheduler, loop) costs per event. The reload is the fake backend with 500 ms per
operation, on the wall clock, in the daemon's worker thread as in production.
"""

from __future__ import annotations

import logging
import resource
import tempfile
import threading
import time
from pathlib import Path

from bench import measure
from bench.runner import KDUMPD_INPROC, Run
from bench.scenarios import Scenario, plan
from kdumpd.backends.fake import FakeBackend
from kdumpd.controller import Controller
from kdumpd.daemon import Daemon, Parts
from kdumpd.events import Event
from kdumpd.fakes import fakesysfs
from kdumpd.hardware import read_hardware
from kdumpd.reloader import Reloader
from kdumpd.scheduler import ReloadScheduler
from kdumpd.source import FakeSource
from kdumpd.state import MemoryStore
from kdumpd.sysfs import Sysfs

PUSH_BATCH = 64  # events per push when several are due at once, like one netlink read


def _events(scenario: Scenario, blocks: int = 192, cpus: int = 2) -> list[tuple[float, Event]]:
    counters = {"memory": 0, "cpu": 0}
    sizes = {"memory": blocks, "cpu": cpus}
    out = []
    for offset, kind, action in plan(scenario):
        n = counters[kind] % sizes[kind]
        counters[kind] += 1
        out.append((offset, Event(kind, action, f"/devices/system/{kind}/{kind}{n}")))
    return out


def run(scenario: Scenario, rep: int, *, quiet_s: float = 0.05, max_delay_s: float = 3.0,
        delay_ms: int = 500, timeout: float = 120) -> Run:
    """Drive one scenario through an in-process Daemon; returns the run's figures."""
    steps = _events(scenario)
    with tempfile.TemporaryDirectory(prefix="kdumpd-bench-") as tmp:
        root = fakesysfs.build(Path(tmp) / "root", crash_hotplug=scenario.crash_hotplug)
        sysfs = Sysfs(root)
        log_path = Path(tmp) / "fake.log"
        backend = FakeBackend(log_path, sysfs, delay_ms=delay_ms)
        parts = Parts(
            reloader=Reloader(backend, sysfs, 3),
            sysfs=sysfs, quiet_s=quiet_s, max_delay_s=max_delay_s, stop_wait_s=10.0,
            hardware=lambda: read_hardware(root),
        )
        controller = Controller(ReloadScheduler(quiet_s, max_delay_s), sysfs.snapshot,
                                store=MemoryStore(), hardware=parts.hardware, backend=backend)
        source = FakeSource()  # safe to push into from another thread
        ready = threading.Event()

        def notify(message: str) -> None:
            if "READY=1" in message:
                ready.set()

        daemon = Daemon(controller, source, parts, reconfigure=lambda: None, notify=notify,
                        handover=None)
        result: dict[str, float] = {}
        pusher = threading.Thread(
            target=_push, args=(daemon, steps), name="bench-pusher", daemon=True,
            kwargs={"controller": controller, "source": source, "ready": ready,
                    "result": result, "timeout": timeout},
        )
        logger = logging.getLogger("kdumpd")
        handler = logging.NullHandler()  # records are still built and formatted-on-demand
        saved = (logger.handlers[:], logger.level, logger.propagate)
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
        try:
            before = resource.getrusage(resource.RUSAGE_SELF)
            pusher.start()
            daemon.run()
            after = resource.getrusage(resource.RUSAGE_SELF)
            pusher.join(5)
        finally:
            logger.handlers, logger.level, logger.propagate = saved
            source.close()
        if "error" in result or "pusher_cpu" not in result:
            raise RuntimeError(f"in-process {scenario.name}: pusher did not finish")
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        cpu -= result["pusher_cpu"]
        ops = measure.parse_ops(log_path.read_text().splitlines()) if log_path.exists() else []
    return Run(
        KDUMPD_INPROC, scenario.name, rep, len(steps), measure.reloads(ops),
        measure.exposure(ops, result["first"], result["last"],
                         needs_reload=scenario.needs_reload),
        result["last"] - result["first"],
        cpu_s=cpu, cpu_per_event_us=cpu / len(steps) * 1e6,
        absent_s=measure.absent(ops, result["first"]),
    )


def _push(daemon: Daemon, steps: list[tuple[float, Event]], *, controller: Controller,
          source: FakeSource, ready: threading.Event, result: dict[str, float],
          timeout: float) -> None:
    """Push the events on schedule, wait until kdumpd is idle, stop it."""
    try:
        if not ready.wait(10):
            result["error"] = 1
            return
        cpu0 = time.thread_time()
        start = time.monotonic()
        result["first"] = time.time()
        i = 0
        while i < len(steps):
            due = start + steps[i][0]
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            batch: list[Event] = []
            while (i < len(steps) and len(batch) < PUSH_BATCH
                   and steps[i][0] <= time.monotonic() - start):
                batch.append(steps[i][1])
                i += 1
            source.push(batch)
        result["last"] = time.time()
        deadline = time.monotonic() + timeout
        settled = 0
        while time.monotonic() < deadline and settled < 3:
            idle = (controller.stats.events >= len(steps)
                    and controller.scheduler.pending == 0 and not controller.scheduler.running)
            settled = settled + 1 if idle else 0
            time.sleep(0.05)
        if settled < 3:
            result["error"] = 1
        result["pusher_cpu"] = time.thread_time() - cpu0
    finally:
        daemon.request_stop()
