"""What the loaded image was last read as, and how to read it safely.

A read of ``crash_hotplug`` takes the kexec lock: while someone else's load holds it (the
old image already freed, ``kexec_crash_loaded`` 0) the kernel logs its skip line for the
read itself. So ``kexec_crash_loaded`` is read first and ``crash_hotplug`` only while an
image is loaded, and what the last reads gave is kept for the image loaded now (any other
image, ours or anyone's, forgets it): status and metrics show it without reading again.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Callable

from kdumpd.events import SUBSYSTEMS
from kdumpd.policy import is_loaded, is_unloaded, kernel_updates
from kdumpd.sysfs import ABSENT, OK, Snapshot, Value

_MISSING = Value("", ABSENT)


def kernel_keeps_current(snapshot: Snapshot,
                         subsystems: Collection[str] = SUBSYSTEMS) -> bool:
    """A crash kernel is loaded and the kernel updates its header for every one of
    ``subsystems``."""
    return is_loaded(snapshot.crash_loaded) and all(
        kernel_updates(snapshot.crash_hotplug.get(s, _MISSING)) for s in subsystems
    )


def _text(value: Value) -> str:
    return value.text if value.kind == OK else ""


class ImageReads:
    def __init__(self, snapshot: Callable[[Collection[str]], Snapshot],
                 wall: Callable[[], float]) -> None:
        self._snapshot = snapshot
        self._wall = wall
        self.hotplug: dict[str, str] = {}  # crash_hotplug per subsystem, this image
        self.loaded = ""  # kexec_crash_loaded of that read ("" unknown)
        self.read_at: float | None = None  # wall time of the last crash_hotplug read

    def read_with(self, snapshot: Callable[[Collection[str]], Snapshot]) -> None:
        """Read through ``snapshot`` from now on (SIGHUP); the image is the same, so what
        was read of it stays."""
        self._snapshot = snapshot

    def read(self, subsystems: Collection[str]) -> Snapshot:
        """kexec_crash_loaded, then crash_hotplug only when an image is loaded (not
        remembered: :meth:`zero_known` compares a read with the one before)."""
        loaded = self._snapshot(())
        if is_unloaded(loaded.crash_loaded):
            return loaded
        return self._snapshot(subsystems)

    def remember(self, snapshot: Snapshot) -> None:
        loaded = _text(snapshot.crash_loaded)
        if loaded != self.loaded:
            self.hotplug = {}  # another image (or none): what we knew is void
            self.loaded = loaded
        read = {s: v.text for s, v in snapshot.crash_hotplug.items() if v.kind == OK}
        self.hotplug.update(read)
        if read:
            self.read_at = self._wall()

    def forget(self) -> None:
        """A load ran: whatever crash_hotplug read before is void."""
        self.hotplug = {}
        self.loaded = ""

    def zero_known(self, snapshot: Snapshot) -> bool:
        """Every crash_hotplug that reads 0 in ``snapshot`` read 0 the last time too, for
        the same image: a 0 that lasts is not a lock holder's instant; no second read
        needed. Call before :meth:`remember` of ``snapshot``."""
        if self.loaded != _text(snapshot.crash_loaded):
            return False
        zeros = [s for s, v in snapshot.crash_hotplug.items() if _text(v) == "0"]
        return bool(zeros) and all(self.hotplug.get(s) == "0" for s in zeros)

    def kernel_keeps_current(self) -> bool:
        """The image loaded at the last read is kept current by the kernel for every
        subsystem, as crash_hotplug read for it (1 each)."""
        return self.loaded == "1" and all(self.hotplug.get(s) == "1" for s in SUBSYSTEMS)
