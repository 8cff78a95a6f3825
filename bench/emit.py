"""Real kernel uevents: write an action to a device's ``uevent`` file (root only).

The kernel broadcasts the event during the write; a systemd-udevd then runs its rules and
passes it on to udev-netlink listeners (kdumpd) -- the real event path.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import udev


@dataclass(frozen=True)
class Emitted:
    first: float  # unix seconds just before the first event was written
    last: float  # unix seconds just after the last write returned
    last_mono: float  # the same moment on the monotonic clock
    count: int


class Devices:
    """Device paths per kind, handed out in turn (a 3840-event burst reuses the blocks)."""

    def __init__(self, memory: Sequence[Path], cpu: Sequence[Path]) -> None:
        if not memory or not cpu:
            raise RuntimeError("no memory block or cpu devices under /sys/devices/system")
        self._cycles: dict[str, Iterator[Path]] = {
            "memory": itertools.cycle(memory), "cpu": itertools.cycle(cpu),
        }
        self.counts = {"memory": len(memory), "cpu": len(cpu)}

    @classmethod
    def of_this_machine(cls) -> Devices:
        return cls(udev.memory_blocks(), udev.cpus())

    def next(self, kind: str) -> Path:
        return next(self._cycles[kind])


class Witness:
    """Counts every cpu/memory uevent the kernel broadcasts while a run lasts.

    Other users of this machine (an integration test, another benchmark) write uevents
    too, and those reach the contestant: a run that saw more events than it wrote is not
    a clean measurement. Listens to the kernel directly, so it needs no udevd.
    """

    def __init__(self) -> None:
        import pyudev

        self._monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
        for subsystem in ("cpu", "memory"):
            self._monitor.filter_by(subsystem)
        self._monitor.start()
        with contextlib.suppress(OSError):
            self._monitor.set_receive_buffer_size(64 * 1024 * 1024)
        self.count = 0
        self.lost = False

    def drain(self) -> int:
        """Count what arrived so far; returns the total."""
        while True:
            try:
                device = self._monitor.poll(timeout=0)
            except OSError:
                self.lost = True  # overflowed: cannot tell, treat as unclean
                return self.count
            if device is None:
                return self.count
            self.count += 1

    def close(self) -> None:
        self._monitor = None


def emit(
    steps: Sequence[tuple[float, str, str]],
    devices: Devices,
    *,
    trigger: Callable[[Path, str], None] = udev.trigger,
    wall: Callable[[], float] = time.time,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Emitted:
    """Write each step's action at its offset (as fast as possible for offset ties)."""
    start = clock()
    first = wall()
    for offset, kind, action in steps:
        delay = start + offset - clock()
        if delay > 0:
            sleep(delay)
        trigger(devices.next(kind), action)
    return Emitted(first=first, last=wall(), last_mono=clock(), count=len(steps))
