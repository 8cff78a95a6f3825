"""Reading the kernel's kexec/crash attributes under an injectable sysfs root.

Values are read from the files themselves at the moment of the decision: libudev caches
attributes, and crash_hotplug changes with every crash kernel (un)load.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kdumpd.smallfile import read_regular

OK = "ok"
ABSENT = "absent"
UNREADABLE = "unreadable"

# A 0 from kexec_crash_loaded or crash_hotplug is read again this much later before it is
# acted on: x86's own header update sets kexec_crash_image to NULL around its copy, and
# crash_hotplug reads 0 while anyone holds the kexec lock; both last microseconds.
RE_READ_S = 0.01


@dataclass(frozen=True)
class Value:
    """A sysfs attribute as read.

    ``kind`` is OK (``text`` holds the stripped content), ABSENT (no such file) or
    UNREADABLE (``text`` holds the error).
    """

    text: str
    kind: str = OK

    def __str__(self) -> str:
        return self.text if self.kind == OK else self.kind


@dataclass(frozen=True)
class Snapshot:
    """What the kernel said at one moment about the crash kernel and hotplug."""

    crash_loaded: Value
    crash_hotplug: dict[str, Value] = field(default_factory=dict)


class Sysfs:
    """The attributes kdumpd reads, under ``root`` (``/`` on a host, a tmp tree in tests)."""

    def __init__(self, root: Path, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.root = root
        self._sleep = sleep

    def path(self, relative: str) -> Path:
        return self.root / "sys" / relative

    def crash_hotplug_path(self, subsystem: str) -> Path:
        return self.path(f"devices/system/{subsystem}/crash_hotplug")

    def read(self, relative: str) -> Value:
        return read_value(self.path(relative))

    def crash_loaded(self) -> Value:
        return self.read("kernel/kexec_crash_loaded")

    def settled_crash_loaded(self) -> Value:
        """kexec_crash_loaded, read once more :data:`RE_READ_S` later when it says 0 (a
        good image reads 0 for an instant while the kernel updates its header)."""
        value = self.crash_loaded()
        if value.kind == OK and value.text == "0":
            self._sleep(RE_READ_S)
            value = self.crash_loaded()
        return value

    def snapshot(self, subsystems: Iterable[str]) -> Snapshot:
        """Read kexec_crash_loaded and each subsystem's crash_hotplug now."""
        return Snapshot(
            crash_loaded=self.crash_loaded(),
            crash_hotplug={s: read_value(self.crash_hotplug_path(s)) for s in subsystems},
        )


def read_value(path: Path, limit: int = 4096) -> Value:
    """Read a small sysfs attribute; never raises.

    Bytes that are not ASCII are kept visible (backslash escapes) so a warning can name them.
    """
    try:
        # A FIFO planted in a (fake) tree must not stall the event loop.
        raw = read_regular(path, limit)
    except FileNotFoundError:
        return Value("", ABSENT)
    except OSError as error:
        return Value(error.strerror or str(error), UNREADABLE)
    return Value(raw.decode("ascii", "backslashreplace").strip())
