"""Whether the memory reserved for the crash kernel still fits the RAM online now.

The reservation is sized once, at boot (``crashkernel=``), and hot-added memory does not
grow it, while the dump kernel needs more of it for more memory (its page tables, its
copy of the memory map, makedumpfile's bitmaps). After growth kdumpd compares the
reservation with what two rules ask for the RAM online now, and takes the larger:

- the boot's own ``crashkernel=`` when it is a range expression
  (``1G-4G:192M,4G-64G:256M,64G-:512M``): what the kernel's ``parse_crashkernel_mem``
  would have reserved had this RAM been there at boot (start inclusive, end exclusive);
- Fedora/RHEL kdump-utils' default for the architecture
  (``kdump_get_arch_recommend_crashkernel`` in kdump-lib.sh, kdump-utils 1.0.x: x86_64
  and s390x ``2G-64G:256M,64G-:512M``; aarch64 ``2G-4G:256M,4G-64G:320M,64G-:576M``,
  4K pages without mlx5; ppc64le ``2G-4G:384M,4G-16G:512M,16G-64G:1G,64G-128G:2G,
  128G-:4G``), evaluated on the RAM as its ``get_system_size`` counts it: the System
  RAM ranges, rounded up to 128 MiB, in whole GiB.

Pure: the caller reads /proc/iomem and /proc/cmdline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIB = 1 << 20
GIB = 1 << 30
KDUMP_UTILS = {
    "x86_64": "2G-64G:256M,64G-:512M",
    "s390x": "2G-64G:256M,64G-:512M",
    "aarch64": "2G-4G:256M,4G-64G:320M,64G-:576M",
    "ppc64le": "2G-4G:384M,4G-16G:512M,16G-64G:1G,64G-128G:2G,128G-:4G",
}
_UNITS = {"": 1, "K": 1 << 10, "M": MIB, "G": GIB, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_RANGE = re.compile(r"(\d+)([KMGTPE]?)-(?:(\d+)([KMGTPE]?))?:(\d+)([KMGTPE]?)$")


@dataclass(frozen=True)
class Capacity:
    reserved_bytes: int
    recommended_bytes: int  # 0: no rule applies
    source: str  # which rule gave the recommendation
    warning: str = ""  # why the reservation falls short, and what to set; "" when it fits


def ranges(spec: str) -> list[tuple[int, int | None, int]] | None:
    """``crashkernel=``'s range form as (start, end or None, size) in bytes; None when
    ``spec`` is not one (a plain size, ``,high``/``,low``, an offset is not a range)."""
    spec = spec.split("@", 1)[0]
    found = []
    for part in spec.split(","):
        match = _RANGE.match(part)
        if match is None:
            return None
        start, sunit, end, eunit, size, zunit = match.groups()
        found.append((int(start) * _UNITS[sunit],
                      None if end is None else int(end) * _UNITS[eunit],
                      int(size) * _UNITS[zunit]))
    return found or None


def size_for(spec: str, ram_bytes: int) -> int | None:
    """What ``spec`` reserves for ``ram_bytes`` of RAM (the first range with start <= RAM
    < end, as parse_crashkernel_mem); 0 when no range matches; None when not a range."""
    table = ranges(spec)
    if table is None:
        return None
    for start, end, size in table:
        if ram_bytes >= start and (end is None or ram_bytes < end):
            return size
    return 0


def kdump_utils_ram(ram_bytes: int) -> int:
    """The RAM as kdump-utils' get_system_size counts it, in bytes of whole GiB."""
    mib = (ram_bytes // MIB + 127) // 128 * 128
    return mib // 1024 * GIB


def boot_crashkernel(cmdline: str) -> str:
    """The last plain ``crashkernel=`` of a kernel command line ("" if none)."""
    values = [w.split("=", 1)[1] for w in cmdline.split() if w.startswith("crashkernel=")]
    return values[-1] if values else ""


def check(reserved_bytes: int, ram_bytes: int, cmdline: str, arch: str) -> Capacity:
    """The reservation against the larger of the two rules for ``ram_bytes`` online."""
    candidates: list[tuple[int, str]] = []
    boot = boot_crashkernel(cmdline)
    own = size_for(boot, ram_bytes) if boot else None
    if own:
        candidates.append((own, f"the boot's crashkernel={boot}"))
    table = KDUMP_UTILS.get(arch)
    if table is not None:
        fedora = size_for(table, kdump_utils_ram(ram_bytes)) or 0
        if fedora:
            candidates.append((fedora, f"kdump-utils' default for {arch} ({table})"))
    if not candidates:
        return Capacity(reserved_bytes, 0, "no rule for this machine")
    recommended, source = max(candidates)
    if reserved_bytes >= recommended:
        return Capacity(reserved_bytes, recommended, source)
    suggestion = boot if own and own >= recommended else KDUMP_UTILS.get(arch, "")
    warning = (f"{reserved_bytes // MIB} MiB reserved for the crash kernel, but for the "
               f"{ram_bytes / GIB:.1f} GiB of RAM online now {source} asks for "
               f"{recommended // MIB} MiB: a dump may fail; set crashkernel={suggestion} "
               "(it applies at the next boot)")
    return Capacity(reserved_bytes, recommended, source, warning)


def ram_bytes(ram_ranges: tuple[str, ...]) -> int:
    """Bytes in System RAM ranges written as /proc/iomem spans ("100000000-17fffffff")."""
    total = 0
    for span in ram_ranges:
        start, _, end = span.partition("-")
        try:
            total += int(end, 16) - int(start, 16) + 1
        except ValueError:
            continue
    return total
