"""A fake kernel: the crash/kexec behaviour kdumpd depends on, over a fake sysfs tree.

For tests, the demo and the benchmark. It models what the real kernel does (kernel/
crash_core.c, kernel/kexec*.c, arch/x86/kernel/crash.c, 6.6-6.12), so a behaviour
tested against it holds against the kernel:

- **The kexec lock.** Both load syscalls hold it for their whole length; a second loader
  gets EBUSY. Inside a load the old image is already freed: ``kexec_crash_loaded`` and
  ``crash_hotplug`` read 0.
- **What crash_hotplug reads per load kind**: ``file`` (``kexec -s``) and ``hotplug``
  (``-c --hotplug``) give 1, ``plain`` (``-c``) gives 0; nothing loaded: 0.
- **Reads of crash_hotplug** take the kexec lock with a trylock too: during a load
  they log the same skip line and read 0, and skip nothing.
- **The kernel's own header update** on hotplug, for an image that allows it. When the
  lock is held it skips the update and logs ``crash hp: kexec_trylock() failed, kdump
  image may be inaccurate``. On x86 the update rebuilds the header from the System RAM
  resources, which a removed block no longer has but an offlined one still has, and it
  runs for online/offline only: a memory removal stays in the header.
- **The x86 update's brief NULL**: :meth:`FakeKernel.hotplug` can be asked to leave
  ``kexec_crash_loaded`` at 0, as a read in the middle of the update sees it.

- **The image in the reservation** (``kcore=True``): /proc/kcore maps a 16 MiB
  reservation holding the loaded command line and header as each loader lays them out
  (fakekcore.py), and each present CPU has its ``crash_notes``; a load rewrites only its
  own segments, so an image of another kind lingers. A ``file`` header has a note per
  possible CPU (:data:`POSSIBLE_CPUS`), the others per CPU present at the load.

What the image describes is tracked, so a test asks :meth:`image_current` (the promise:
a loaded image describes the hardware of now) instead of counting reloads.

A test that needs a kernel that does something else passes ``handler``, in the style of
httpx's ``MockTransport``: it is called with each :class:`Call` before the default
behaviour and may answer it itself (return True) or let the default run (return None).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Optional

from kdumpd.events import SUBSYSTEMS
from kdumpd.fakes import fakekcore
from kdumpd.sysfs import Sysfs

SKIP_LINE = "crash hp: kexec_trylock() failed, kdump image may be inaccurate"
KINDS = {"file": "1", "hotplug": "1", "plain": "0"}  # load kind -> crash_hotplug
RESERVATION = (0x01000000, 0x02000000)  # with kcore: 16 MiB, as /proc/iomem lists it
POSSIBLE_CPUS = range(8)
DUMP_CMDLINE = "root=/dev/vda ro reset_devices nr_cpus=1 irqpoll acpi_no_memhotplug"


class KexecBusy(Exception):
    """A load met the kexec lock held (the syscall's EBUSY)."""


@dataclass(frozen=True)
class Call:
    """What is asked of the kernel: ``load`` (``kind``), ``hotplug`` (``subsystem``,
    ``action``, ``name``) or ``read_crash_size``."""

    op: str
    kind: str = ""
    subsystem: str = ""
    action: str = ""
    name: str = ""


Handler = Callable[["FakeKernel", Call], Optional[bool]]


@dataclass(frozen=True)
class Hardware:
    memory: frozenset[str]  # memory blocks with a System RAM resource (added)
    online_memory: frozenset[str]
    cpus: frozenset[str]  # present CPUs
    online_cpus: frozenset[str]


class FakeKernel:
    """Takes up what the tree says is loaded (``kexec_crash_loaded``, ``crash_hotplug``)
    and writes nothing until asked to load or hotplug; hotplugs write the files the
    hardware fingerprint reads (one 128 MiB block per ``memoryN``)."""

    def __init__(self, sysfs: Sysfs, *, arch: str = "x86_64",
                 handler: Handler | None = None, kcore: bool = False) -> None:
        self.sysfs = sysfs
        self.arch = arch
        self.handler = handler
        self.kcore = kcore
        self.cmdline = DUMP_CMDLINE  # the dump kernel's command line a load lays out
        self.log: list[str] = []  # the kernel's messages, oldest first
        self.loads = 0
        self._lock = threading.Lock()  # the kexec lock (a real lock: loads run in a worker)
        self.hardware = Hardware(frozenset({"memory8"}), frozenset({"memory8"}),
                                 frozenset({"cpu0"}), frozenset({"cpu0"}))
        loaded = sysfs.crash_loaded().text == "1"
        updates = sysfs.read("devices/system/memory/crash_hotplug").text == "1"
        self.kind: str | None = ("file" if updates else "plain") if loaded else None
        self.describes: Hardware | None = self._header_of(self.hardware) if loaded else None
        self._building: Hardware | None = None  # the header of the load in progress
        if kcore:
            self._write_hardware()
            self._write_image(fresh=True)

    # -- what userspace reads --------------------------------------------------------------

    @property
    def lock_held(self) -> bool:
        return self._lock.locked()

    def image_current(self) -> bool:
        """A crash image is loaded and its header describes the hardware of now."""
        return self.kind is not None and self.describes == self._header_of(self.hardware)

    def read_crash_hotplug(self, subsystem: str) -> str:
        """A read of ``crash_hotplug`` (``crash_check_hotplug_support()``): it takes the
        kexec lock with a trylock; when a load holds it, the kernel logs the very line a
        skipped update logs and the read gives 0. It never makes an update skip (both take
        ``__crash_hotplug_lock`` first), so the model updates nothing here."""
        if subsystem not in SUBSYSTEMS:
            raise ValueError(f"unknown subsystem {subsystem!r}")
        if not self._lock.acquire(blocking=False):
            self.log.append(SKIP_LINE)
            return "0"
        try:
            return KINDS[self.kind] if self.kind is not None else "0"
        finally:
            self._lock.release()

    def read_crash_size(self) -> bool:
        """A read of /sys/kernel/kexec_crash_size: ``crash_get_memory_size()`` takes the
        kexec lock with a trylock. Returns False for the reader's -EBUSY."""
        if self._handled(Call("read_crash_size")):
            return True
        if not self._lock.acquire(blocking=False):
            return False
        self._lock.release()
        return True

    # -- loads -----------------------------------------------------------------------------

    def begin_load(self, kind: str) -> None:
        """Enter a load syscall of ``kind``: the lock is taken, the old image freed, and
        the new header built from the hardware of this moment (kexec_file_load builds it
        early in the syscall). Raises :class:`KexecBusy` when someone holds the lock."""
        if kind not in KINDS:
            raise ValueError(f"unknown load kind {kind!r}")
        if not self._lock.acquire(blocking=False):
            raise KexecBusy("kexec_load: Device or resource busy")
        self.kind, self.describes = None, None
        self._building = self._header_of(self.hardware)
        try:
            self._publish()
        except BaseException:
            self._lock.release()
            raise

    def end_load(self, kind: str, *, ok: bool = True) -> None:
        """Leave the load syscall: the new image, or none when it failed."""
        if ok:
            self.kind, self.describes = kind, self._building
            self.loads += 1
        if self._lock.locked():
            self._lock.release()
        self._publish()

    def load(self, kind: str, *, ok: bool = True, during: Callable[[], None] | None = None
             ) -> None:
        """A whole load; ``during`` runs inside it, with the lock held."""
        if self._handled(Call("load", kind=kind)):
            return
        self.begin_load(kind)
        try:
            if during is not None:
                during()
        finally:
            self.end_load(kind, ok=ok)

    # -- hotplug ---------------------------------------------------------------------------

    def hotplug(self, subsystem: str, action: str, name: str, *,
                leave_null: bool = False) -> None:
        """Apply a hotplug, then the kernel's own header update if the image allows it.

        ``leave_null``: stop in the middle of x86's update, where ``kexec_crash_loaded``
        reads 0 (call :meth:`publish` to finish it).
        """
        if self._handled(Call("hotplug", subsystem=subsystem, action=action, name=name)):
            return
        self.hardware = _apply(self.hardware, subsystem, action, name)
        self._write_hardware()
        if action not in ("online", "offline"):
            return  # the notifiers act on MEM_ONLINE/MEM_OFFLINE and CPU online/offline
        if not self._lock.acquire(blocking=False):
            self.log.append(SKIP_LINE)  # whatever is loaded: the trylock comes first
            return
        try:
            if self.kind is None or KINDS[self.kind] != "1" or self.arch.startswith("s390"):
                return  # nothing loaded, an image the kernel does not update, or s390
            self.describes = self._header_of(self.hardware, previous=self.describes)
            if leave_null:
                self.sysfs.path("kernel/kexec_crash_loaded").write_text("0\n")
                return
        finally:
            self._lock.release()
        self._publish()

    def publish(self) -> None:
        """Write what the model says to the sysfs files (ends a ``leave_null``)."""
        self._publish()

    # -- internals -------------------------------------------------------------------------

    def _handled(self, call: Call) -> bool:
        return bool(self.handler is not None and self.handler(self, call))

    def _header_of(self, hardware: Hardware, previous: Hardware | None = None) -> Hardware:
        """What a header built now describes: every present CPU, and on x86 the System
        RAM resources (added blocks, online or not), elsewhere the online memory. x86's
        update (``previous`` given) never drops a block an earlier header had: nothing
        rebuilds it at removal (docs/kernel-hot-remove.md)."""
        x86 = self.arch in ("x86_64", "i386", "i686")
        memory = hardware.memory if x86 else hardware.online_memory
        if previous is not None and x86:
            memory = memory | previous.memory
        return Hardware(memory, memory, hardware.cpus, hardware.cpus)

    def _write_image(self, *, fresh: bool = False) -> None:
        """The loaded image's command line and header in the reservation (kcore=True)."""
        if not self.kcore or self.kind is None or self.describes is None:
            return
        cpus = POSSIBLE_CPUS if self.kind == "file" else map(_number, self.describes.cpus)
        fakekcore.load_image(self.sysfs.root, RESERVATION, self.kind, self.cmdline,
                             ram=[_block(b) for b in self.describes.memory],
                             cpus=sorted(cpus), fresh=fresh)

    def _publish(self) -> None:
        self._write_image()
        self._write("kernel/kexec_crash_loaded", "1" if self.kind else "0")
        hotplug = KINDS[self.kind] if self.kind and not self._lock.locked() else "0"
        for subsystem in SUBSYSTEMS:
            path = self.sysfs.crash_hotplug_path(subsystem)
            if path.exists():
                path.write_text(hotplug + "\n", encoding="ascii")

    def _write(self, relative: str, value: str) -> None:
        path = self.sysfs.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n", encoding="ascii")

    def _write_hardware(self) -> None:
        """The files the hardware fingerprint reads (kdumpd/hardware.py)."""
        root = self.sysfs.root
        cpus = root / "sys/devices/system/cpu"
        cpus.mkdir(parents=True, exist_ok=True)
        (cpus / "present").write_text(_cpu_list(self.hardware.cpus) + "\n")
        (cpus / "online").write_text(_cpu_list(self.hardware.online_cpus) + "\n")
        start, end = RESERVATION if self.kcore else (0x01000000, 0x11000000)
        lines = [f"{start:08x}-{end - 1:08x} : Crash kernel"]
        for block in sorted(self.hardware.memory, key=_number):
            start = _number(block) << 27  # 128 MiB blocks
            lines.append(f"{start:08x}-{start + (1 << 27) - 1:08x} : System RAM")
        (root / "proc").mkdir(parents=True, exist_ok=True)
        (root / "proc/iomem").write_text("\n".join(lines) + "\n")
        pages = len(self.hardware.online_memory) * (1 << 27) // 4096
        (root / "proc/zoneinfo").write_text(f"Node 0, zone   Normal\n        present  {pages}\n")
        if self.kcore:
            fakekcore.write_cpu_notes(root, sorted(map(_number, self.hardware.cpus)))


def _apply(hardware: Hardware, subsystem: str, action: str, name: str) -> Hardware:
    if subsystem == "memory":
        memory, online = _step(hardware.memory, hardware.online_memory, action, name)
        return Hardware(memory, online, hardware.cpus, hardware.online_cpus)
    cpus, online = _step(hardware.cpus, hardware.online_cpus, action, name)
    return Hardware(hardware.memory, hardware.online_memory, cpus, online)


def _step(present: frozenset[str], online: frozenset[str], action: str, name: str
          ) -> tuple[frozenset[str], frozenset[str]]:
    """One device's action on the (present, online) sets of its subsystem."""
    one = frozenset({name})
    if action == "add":
        return present | one, online
    if action == "remove":
        return present - one, online - one
    if action == "online":
        return present, online | one
    if action == "offline":
        return present, online - one
    return present, online


def _block(name: str) -> tuple[int, int]:
    """The [start, end) of a 128 MiB memory block."""
    start = _number(name) << 27
    return start, start + (1 << 27)


def _number(name: str) -> int:
    digits = "".join(c for c in name if c.isdigit())
    return int(digits or 0)


def _cpu_list(cpus: frozenset[str]) -> str:
    return ",".join(str(n) for n in sorted(map(_number, cpus)))
