"""`kdumpd demo`: the real pipeline (scheduler, policy, reloader, fake backend) on a
temporary fake sysfs, fed a simulated storm of memory and CPU events."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TextIO

from kdumpd.backends.fake import FakeBackend
from kdumpd.controller import Controller, run_pending
from kdumpd.events import Event
from kdumpd.fakes import fakesysfs
from kdumpd.fakes.clock import MockTime
from kdumpd.hardware import read_hardware
from kdumpd.reloader import Reloader
from kdumpd.scheduler import ReloadScheduler
from kdumpd.state import MemoryStore
from kdumpd.sysfs import Sysfs

EVENT_SPACING_S = 0.0001  # 0.1 ms apart: a DIMM's worth of block events


def storm(memory_blocks: int, cpus: int) -> list[Event]:
    events = [
        Event("memory", action, f"/devices/system/memory/memory{n}")
        for n in range(memory_blocks)
        for action in ("add", "online")
    ]
    events += [Event("cpu", "online", f"/devices/system/cpu/cpu{n}") for n in range(1, cpus + 1)]
    return events


def simulate(
    root: Path, events: list[Event], quiet_s: float = 0.25, max_delay_s: float = 3.0
) -> int:
    """Feed ``events`` through the pipeline on fake time; return how many loads ran."""
    clock = MockTime()
    sysfs = Sysfs(root)
    log = root / "fake-kexec.log"
    log.unlink(missing_ok=True)
    backend = FakeBackend(log, sysfs, sleep=clock.advance)
    controller = Controller(
        ReloadScheduler(quiet_s, max_delay_s), sysfs.snapshot, store=MemoryStore(),
        hardware=lambda: read_hardware(root), backend=backend,
    )
    reloader = Reloader(backend, sysfs, retries=3, sleep=clock.advance, clock=clock)
    for event in events:
        controller.on_event(event, clock())
        clock.advance(EVENT_SPACING_S)
        burst = controller.poll(clock())
        if burst is not None:
            controller.reload_finished(burst, reloader.reload(), clock())
    run_pending(controller, reloader.reload, clock, clock.advance)
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if json.loads(line)["op"] == "load")


def run(out: TextIO, memory_blocks: int = 1920, cpus: int = 4) -> int:
    events = storm(memory_blocks, cpus)
    with tempfile.TemporaryDirectory(prefix="kdumpd-demo-") as tmp:
        root = Path(tmp)
        for hotplug, meaning in (("0", "userspace must reload"),
                                 ("1", "the kernel updates the elfcorehdr")):
            fakesysfs.build(root, crash_loaded="1", crash_hotplug=hotplug)
            loads = simulate(root, events)
            print(
                f"crash_hotplug={hotplug} ({meaning}): {len(events)} events -> "
                f"{loads} reload{'s' if loads != 1 else ''}",
                file=out,
            )
    return 0
