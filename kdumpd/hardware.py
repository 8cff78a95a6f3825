"""What the crash kernel's elfcorehdr describes: the CPUs and memory, read cheaply.

The fingerprint is read from four small kernel files under an injected root, whatever
the number of memory blocks (a 512 GiB guest has 4096 of them, a large host 131072):

- ``sys/devices/system/cpu/present`` and ``.../online``: CPU hot-add/remove and
  online/offline;
- every ``System RAM`` range of ``proc/iomem``, at any depth and with any suffix (the
  x86 header includes driver-managed RAM: a top-level ``System RAM (virtio_mem)``, a
  nested ``System RAM (kmem)`` under a dax device): memory hot-add/remove (a block that
  is offlined keeps its resource, so this alone misses offlining);
- the sum of ``present`` pages over ``proc/zoneinfo``: memory online/offline (the kernel
  adjusts a zone's present pages when a block goes on- or offline; a balloon driver
  changes ``managed`` pages, not these).

Without CAP_SYS_ADMIN /proc/iomem shows every address as zero; the range count and the
present pages still change with hotplug, so the fingerprint stays useful.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from kdumpd.smallfile import read_regular

FILES = {
    "cpus_present": "sys/devices/system/cpu/present",
    "cpus_online": "sys/devices/system/cpu/online",
}


@dataclass(frozen=True)
class Hardware:
    cpus_present: str  # the kernel's CPU list, "0-3"
    cpus_online: str
    ram_ranges: tuple[str, ...]  # "100000000-11fffffff" per System RAM range (any depth)
    present_pages: int  # summed over all zones; -1 when unreadable
    page_bytes: int = 4096  # the kernel's page size (64 KiB on many ppc64le kernels)

    @property
    def fingerprint(self) -> str:
        text = "\n".join([self.cpus_present, self.cpus_online, *self.ram_ranges,
                          str(self.present_pages)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def changed_subsystems(self, other: Hardware) -> frozenset[str]:
        """Which of cpu and memory differ between ``self`` and ``other``."""
        changed = set()
        if (self.cpus_present, self.cpus_online) != (other.cpus_present, other.cpus_online):
            changed.add("cpu")
        if (self.ram_ranges, self.present_pages) != (other.ram_ranges, other.present_pages):
            changed.add("memory")
        return frozenset(changed)

    def summary(self) -> str:
        """One line for people: ``cpus 0-3 online of 0-3, 6 RAM ranges, 2048 MiB online``."""
        mib = self.present_pages * self.page_bytes // 2**20 if self.present_pages >= 0 \
            else "?"
        return (f"cpus {self.cpus_online or '?'} online of {self.cpus_present or '?'}, "
                f"{len(self.ram_ranges)} RAM ranges, {mib} MiB online")


def read_hardware(root: Path, page_bytes: int | None = None) -> Hardware:
    """Read the hardware the kernel sees now; never raises (unreadable parts read empty).
    ``page_bytes``: the page size zoneinfo counts in (None: this kernel's)."""
    texts = {name: read_text(root / relative).strip() for name, relative in FILES.items()}
    return Hardware(
        cpus_present=texts["cpus_present"],
        cpus_online=texts["cpus_online"],
        ram_ranges=ram_ranges(read_text(root / "proc/iomem")),
        present_pages=present_pages(read_text(root / "proc/zoneinfo")),
        page_bytes=page_bytes or os.sysconf("SC_PAGE_SIZE"),
    )


def ram_ranges(iomem: str) -> tuple[str, ...]:
    """Every ``System RAM`` range of /proc/iomem: top-level ones and nested ones, plain
    (``System RAM``) or driver-managed (``System RAM (virtio_mem)``, ``System RAM (kmem)``)."""
    return tuple(span for span, name in iomem_resources(iomem) if is_ram(name))


@dataclass(frozen=True)
class Reservation:
    """The crash kernel's memory as /proc/iomem (x86) or the device tree (powerpc) lists it."""

    listed: bool  # a ``Crash kernel`` range exists (booted with ``crashkernel=``)
    size: int | None  # bytes; None when unknown (addresses read as zero without root)


def crash_reservation(iomem: str) -> Reservation:
    """The sum of /proc/iomem's ``Crash kernel`` ranges (``crashkernel=`` and its
    ``,low`` part).

    This is what ``/sys/kernel/kexec_crash_size`` tells, read without the kexec lock:
    the kernel's ``crash_get_memory_size()`` takes ``kexec_trylock()``, and a hotplug
    update that meets the lock held is skipped ("kexec_trylock() failed, kdump image may
    be inaccurate"), so kdumpd never reads that attribute.
    """
    listed, total = False, 0
    for span, name in iomem_resources(iomem):
        if name != "Crash kernel":
            continue
        listed = True
        start, _, end = span.partition("-")
        try:
            low, high = int(start, 16), int(end, 16)
        except ValueError:
            continue
        if high > low:
            total += high - low + 1
    return Reservation(listed, total or None)


DT_CRASHKERNEL = "proc/device-tree/chosen/linux,crashkernel-"


def device_tree_reservation(base: bytes | None, size: bytes | None) -> Reservation:
    """The reservation as powerpc publishes it: ``/chosen/linux,crashkernel-base`` and
    ``-size``, each one big-endian cell pair (8 bytes; 4 on 32-bit). The kernel adds both
    properties only when it reserved memory (arch/powerpc/kexec/core.c,
    export_crashk_values()); None: the property is absent."""
    if size is None:
        return Reservation(False, None)
    if len(size) not in (4, 8) or (base is not None and len(base) not in (4, 8)):
        return Reservation(True, None)
    return Reservation(True, int.from_bytes(size, "big") or None)


def read_crash_reservation(root: Path, where: str = "iomem") -> Reservation:
    """The reservation from where the architecture publishes it (arch.py:
    ``reservation_in``): /proc/iomem, or the device tree."""
    if where == "device-tree":
        return device_tree_reservation(read_property(root / (DT_CRASHKERNEL + "base")),
                                       read_property(root / (DT_CRASHKERNEL + "size")))
    return crash_reservation(read_text(root / "proc/iomem"))


def read_property(path: Path) -> bytes | None:
    """A device tree property's raw bytes (at most 64); None when it cannot be read."""
    try:
        return read_regular(path, 64)
    except OSError:
        return None


def read_cmdline(root: Path) -> str:
    """The running kernel's command line ("" when unreadable)."""
    return read_text(root / "proc/cmdline").strip()


def iomem_resources(iomem: str) -> list[tuple[str, str]]:
    """(span, name) of every /proc/iomem line, whatever its depth."""
    found = []
    for line in iomem.splitlines():
        span, _, name = line.strip().partition(" : ")
        if name:
            found.append((span.strip(), name.strip()))
    return found


def is_ram(name: str) -> bool:
    return name == "System RAM" or name.startswith("System RAM (")


def present_pages(zoneinfo: str) -> int:
    """Sum of every zone's ``present`` pages in /proc/zoneinfo; -1 when there is none."""
    total, seen = 0, False
    for line in zoneinfo.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "present" and words[1].isascii() \
                and words[1].isdigit():
            total += int(words[1])
            seen = True
    return total if seen else -1


def read_text(path: Path, limit: int = 1 << 20) -> str:
    try:
        return read_regular(path, limit).decode("ascii", "replace")
    except OSError:
        return ""
