"""Whether the memory reserved for the crash kernel still fits the RAM online now.

The reservation is sized once, at boot (``crashkernel=``), and hot-added memory does not
grow it, while the dump kernel needs more of it for more memory (its page tables, its
copy of the memory map, makedumpfile's bitmaps). After growth kdumpd compares the
reservation with what two rules ask for the RAM now, each evaluated as its own source
evaluates it, and takes the larger:

- the boot's own ``crashkernel=`` when it is a range expression
  (``1G-4G:192M,4G-64G:256M,64G-:512M``): what the kernel would have reserved had this
  RAM been there at boot. Linux's ``parse_crashkernel_mem()`` (kernel/crash_reserve.c)
  rounds the RAM it is given (``memblock_phys_mem_size()``, from the architecture's
  ``arch_reserve_crashkernel()``) up to 128 MiB first (``roundup(total_mem, SZ_128M)``:
  "Firmware sometimes reserves some memory regions for its own use"), takes the first
  range with ``start <= RAM < end``, and refuses the whole expression when a size is not
  below that RAM; the last ``crashkernel=`` without a ``,high``/``,low``/``,cma`` suffix
  counts (``get_last_crashkernel()``), and it is a range expression when a ``:`` comes
  before the first space (``__parse_crashkernel()``);
- Fedora/RHEL kdump-utils' default for the architecture, as ``kdumpctl
  get-default-crashkernel``/``kdump_get_arch_recommend_size`` computes it (kdump-lib.sh,
  rhkdump/kdump-utils at 63f248c): the table of ``kdump_get_arch_recommend_crashkernel()``
  with its additions added to every size (``_crashkernel_add()``), see
  :func:`kdump_utils_rule`, evaluated by ``get_recommend_size()`` on the RAM as
  ``get_system_size()`` counts it, see :func:`kdump_utils_ram`.

A third rule is a measurement, not a table: a dump kernel that takes hot-added memory as
its own (x86 with ACPI memory slots, its command line without ``acpi_no_memhotplug``)
builds a ``struct page`` of 64 bytes for every 4 KiB page of it, 1/64 of that memory, out
of its reservation. Measured in the Debian 13 guest with ``crashkernel=256M`` and Debian
kdump-tools' default dump kernel: 3 GiB of DIMMs taken (48 MiB of struct pages) still gave
a complete dump, 5.5 GiB (88 MiB) killed the dump kernel 2.8 s into its boot ("System is
deadlocked on memory"). So :func:`taken_size` asks for what that dump kernel had besides
the struct pages of the largest size that worked (256 MiB - 48 MiB = 208 MiB,
:data:`TAKEN_BASE`) plus 1/64 of the memory it would take. That only keeps it alive: in
``make vm-long``'s control (kdumpd's command line without the option, the small initrd,
256 MiB) the dump kernel booted with 3 and with 6 GiB taken, and makedumpfile wrote far
more than for the whole guest without them until the disk was full, and failed (most
likely the dump kernel's own pages in those ranges, no longer free or zero). So any
memory taken is warned about, whatever the reservation, naming ``acpi_no_memhotplug``
(:data:`TAKEN_DUMPS`); the reservation the rule asks for is said beside it.

With ``acpi_no_memhotplug`` (kdumpd's own image on such machines) the dump kernel takes
nothing and this rule asks for nothing; there, neither RAM nor makedumpfile's cyclic
buffers (at most 4 MiB each, makedumpfile.c ``calculate_cyclic_buffer_size()``) made the
dump fail in the guest up to the 64 GiB hot-added that fit it (tests/vm/RESULTS.md,
"vm-long"): the two tables above stay the only rules, and the warning says that they are
tables.

The RAM both count (:func:`system_ram_bytes`): /proc/iomem's ``System RAM`` lines, at any
depth, named exactly that, as ``get_system_size()``'s sed reads them
(``^\\s*<start>-<end> : System RAM$``). Driver-managed RAM (``System RAM (virtio_mem)``,
``System RAM (kmem)``) is not counted, by either source: the sed's ``$`` leaves it out,
and it is never in the boot's memblock. Offline RAM is counted by both: a block taken
offline keeps its ``System RAM`` resource (only its removal drops it), and it was
memblock memory at boot.

Pure: the caller reads /proc/iomem, /proc/cmdline and the machine's facts
(capacity_facts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIB = 1 << 20
GIB = 1 << 30
ROUND = 128 * MIB  # kernel/crash_reserve.c: roundup(total_mem, SZ_128M); get_system_size too
# kdump_get_arch_recommend_crashkernel()'s tables (kdump mode; ppc64le's fadump mode below).
KDUMP_UTILS = {
    "x86_64": "2G-64G:256M,64G-:512M",
    "s390x": "2G-64G:256M,64G-:512M",
    "aarch64": "2G-4G:256M,4G-64G:320M,64G-:576M",
    "ppc64le": "2G-4G:384M,4G-16G:512M,16G-64G:1G,64G-128G:2G,128G-:4G",
}
KDUMP_UTILS_FADUMP = ("4G-16G:768M,16G-64G:1G,64G-128G:2G,128G-1T:4G,1T-2T:6G,2T-4T:12G,"
                      "4T-8T:20G,8T-16T:36G,16T-32T:64G,32T-64T:128G,64T-:180G")
# A dump kernel that takes hot-added memory (module docstring): struct page is 64 bytes per
# 4 KiB page on x86_64, and the measured dump kernel had 256 MiB - 3 GiB / 64 = 208 MiB
# besides the struct pages of the most memory it took and survived.
STRUCT_PAGE_SHARE = 64
TAKEN_BASE = 256 * MIB - 3 * GIB // STRUCT_PAGE_SHARE
TAKEN_MEASURED = ("measured: in the Debian 13 test guest, crashkernel=256M, Debian's dump "
                  "kernel without acpi_no_memhotplug booted with 3 GiB hot-added and died of "
                  "out-of-memory with 5.5 GiB")
TAKEN_DUMPS = ("measured in the test guest, crashkernel=256M: with 3 GiB and with 6 GiB "
               "taken the dump kernel booted, and makedumpfile wrote far more than a whole "
               "guest's dump without them until the disk was full, and failed")
TABLES_ONLY = ("a table, not a measurement: a growth-safe dump kernel with 256 MiB saved "
               "complete dumps with up to 64 GiB hot-added in the test guest "
               "(tests/vm/RESULTS.md, vm-long)")
_UNITS = {"": 1, "K": 1 << 10, "M": MIB, "G": GIB, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_RANGE = re.compile(r"(\d+)([KMGTPE]?)-(?:(\d+)([KMGTPE]?))?:(\d+)([KMGTPE]?)$")
_SUFFIXES = (",high", ",low", ",cma")


@dataclass(frozen=True)
class Machine:
    """What kdump-utils' additions depend on (capacity_facts.py reads them)."""

    arch: str
    kernel_release: str = ""  # the dump kernel's version: aarch64 "64k" kernels
    memory_encryption: bool = False  # the kernel logged "... active: AMD SME" or "AMD SEV"
    mlx5: bool = False  # /sys/bus/pci/drivers/mlx5_core exists
    arm_smmu: bool = False  # /sys/devices/platform/arm-smmu-* exists
    fadump: bool = False  # /sys/kernel/fadump/enabled is 1 (ppc64le)
    dump_nr_cpus: int = 1  # nr_cpus= in KDUMP_COMMANDLINE_APPEND (FADUMP_... with fadump)


@dataclass(frozen=True)
class Capacity:
    reserved_bytes: int
    recommended_bytes: int  # 0: no rule applies
    source: str  # which rule gave the recommendation, with kdump-utils' additions named
    warning: str = ""  # why the reservation falls short, and what to set; "" when it fits
    ram_bytes: int = 0  # the System RAM counted (module docstring)


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


def kernel_ram(ram_bytes: int) -> int:
    """The RAM ``parse_crashkernel_mem()`` compares with the ranges: rounded up to 128 MiB."""
    return -(-ram_bytes // ROUND) * ROUND


def size_for(spec: str, ram_bytes: int) -> int | None:
    """What the kernel reserves for ``spec`` with ``ram_bytes`` of RAM
    (``parse_crashkernel_mem()``): the RAM rounded up to 128 MiB, then the first range with
    start <= RAM < end; 0 when no range matches or a size is not below that RAM (the
    kernel refuses the expression); None when ``spec`` is not a range expression."""
    table = ranges(spec)
    if table is None:
        return None
    total = kernel_ram(ram_bytes)
    for start, end, size in table:
        if size >= total:
            return 0  # "crashkernel: invalid size": nothing is reserved
        if total >= start and (end is None or total < end):
            return size
    return 0


def kdump_utils_ram(ram_bytes: int) -> int:
    """The RAM as kdump-utils' ``get_system_size()`` counts it, in bytes of whole GiB:
    MiB (rounded down), rounded up to 128 MiB, then whole GiB (rounded down)."""
    mib = (ram_bytes // MIB + 127) // 128 * 128
    return mib // 1024 * GIB


def kdump_utils_size(spec: str, ram_bytes: int) -> int:
    """``get_recommend_size()``: the first range with start <= RAM < end on
    :func:`kdump_utils_ram`'s whole GiB, without the kernel's rounding; 0 when none."""
    table = ranges(spec) or []
    ram = kdump_utils_ram(ram_bytes)
    for start, end, size in table:
        if ram >= start and (end is None or ram < end):
            return size
    return 0


def kdump_utils_rule(machine: Machine) -> tuple[str, int, tuple[str, ...]] | None:
    """kdump-utils' table for ``machine`` and what it adds to every size, in MiB, with a
    reason per addition (``kdump_get_arch_recommend_crashkernel()``); None: no table for
    the architecture.

    - x86_64, s390x: +64M while AMD SME or SEV is active (``is_sme_or_sev_active``: the
      kernel's "Memory Encryption Features active: AMD SME" or "... AMD SEV" line, matched
      whole, so a line that goes on with "SEV-ES" adds nothing);
    - aarch64: a kernel whose version names "64k": +100M, +384M with an ARM SMMU
      (``has_aarch64_smmu``), +200M with mlx5 (``has_mlx5``); other kernels +150M with
      mlx5;
    - ppc64le: +1M per dump-kernel CPU (``find_nr_cpus``: the last valid ``nr_cpus=`` of
      ``KDUMP_COMMANDLINE_APPEND``, or of ``FADUMP_COMMANDLINE_APPEND`` with fadump;
      default 1) on the kdump table, or on the fadump table when fadump is enabled.
    """
    arch = machine.arch
    reasons: list[tuple[int, str]] = []
    if arch in ("x86_64", "s390x"):
        table = KDUMP_UTILS[arch]
        if machine.memory_encryption:
            reasons.append((64, "AMD SME/SEV active"))
    elif arch == "aarch64":
        table = KDUMP_UTILS[arch]
        if "64k" in machine.kernel_release:
            reasons.append((100, "a 64k-page kernel"))
            if machine.arm_smmu:
                reasons.append((384, "an ARM SMMU with 64k pages"))
            if machine.mlx5:
                reasons.append((200, "mlx5 with 64k pages"))
        elif machine.mlx5:
            reasons.append((150, "mlx5"))
    elif arch == "ppc64le":
        table = KDUMP_UTILS_FADUMP if machine.fadump else KDUMP_UTILS[arch]
        cpus = machine.dump_nr_cpus
        reasons.append((cpus, f"1M for each of the dump kernel's {cpus} CPU(s)"))
    else:
        return None
    return table, sum(mib for mib, _ in reasons), tuple(f"+{mib}M: {why}"
                                                       for mib, why in reasons)


def add_to_sizes(spec: str, mib: int) -> str:
    """``_crashkernel_add()``: ``mib`` MiB added to every size of a range expression,
    written in the largest unit that divides it (``memsize_add()``)."""
    table = ranges(spec)
    if table is None or not mib:
        return spec
    parts = []
    for part, (_, _, size) in zip(spec.split(","), table):
        bound = part.rsplit(":", 1)[0]
        parts.append(f"{bound}:{_memsize(size + mib * MIB)}")
    return ",".join(parts)


def _memsize(size: int) -> str:
    for unit in ("E", "P", "T", "G", "M", "K"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def taken_size(taken_bytes: int) -> int:
    """What a dump kernel that takes ``taken_bytes`` of hot-added memory as its own needs
    (module docstring): :data:`TAKEN_BASE` plus 1/64 of that memory, rounded up to 1 MiB;
    0 when it takes none."""
    if taken_bytes <= 0:
        return 0
    return -(-(TAKEN_BASE - (-taken_bytes // STRUCT_PAGE_SHARE)) // MIB) * MIB


def boot_crashkernel(cmdline: str) -> str:
    """The last ``crashkernel=`` without a ``,high``/``,low``/``,cma`` suffix
    (``get_last_crashkernel()``), "" if none."""
    values = [w.split("=", 1)[1] for w in cmdline.split() if w.startswith("crashkernel=")]
    plain = [v for v in values if not v.endswith(_SUFFIXES)]
    return plain[-1] if plain else ""


def check(reserved_bytes: int, ram_bytes: int, cmdline: str,
          machine: Machine | str, taken_bytes: int = 0) -> Capacity:
    """The reservation against the largest of the rules for ``ram_bytes`` of System RAM
    (``machine``: an architecture name alone means no additions apply) and, when the dump
    kernel would take ``taken_bytes`` of hot-added memory as its own, the measured rule
    (:func:`taken_size`)."""
    if isinstance(machine, str):
        machine = Machine(machine)
    candidates: list[tuple[int, str, str]] = []
    taken = taken_size(taken_bytes)
    if taken:
        candidates.append((taken, f"a dump kernel that takes the {taken_bytes / GIB:.1f} GiB "
                                  "in ACPI memory slots as its own (its command line lacks "
                                  f"acpi_no_memhotplug): {TAKEN_BASE // MIB} MiB + 1/"
                                  f"{STRUCT_PAGE_SHARE} of that memory for its struct pages "
                                  f"({TAKEN_MEASURED})", ""))  # its fix is not a size
    boot = boot_crashkernel(cmdline)
    own = size_for(boot, ram_bytes)  # None for "" (no crashkernel=) as for a plain size
    if own:
        candidates.append((own, f"the boot's crashkernel={boot} (as the kernel applies it "
                                f"to {kernel_ram(ram_bytes) / GIB:.1f} GiB: RAM rounded up "
                                "to 128 MiB)", boot))
    rule = kdump_utils_rule(machine)
    if rule is not None:
        table, extra, reasons = rule
        spec = add_to_sizes(table, extra)
        fedora = kdump_utils_size(spec, ram_bytes)
        if fedora:
            added = f"; {', '.join(reasons)}" if reasons else ""
            candidates.append((fedora, f"kdump-utils' default for {machine.arch} ({table}"
                                       f"{added}) on {kdump_utils_ram(ram_bytes) // GIB} "
                                       "GiB as its get_system_size counts it", spec))
    if not candidates:
        return Capacity(reserved_bytes, 0, "no rule for this machine", ram_bytes=ram_bytes)
    # The largest ask wins; between equal asks the measured rule, whose fix is the option.
    recommended, source, suggestion = max(candidates, key=lambda c: (c[0], c[2] == ""))
    takes = (f"the dump kernel takes the {taken_bytes / GIB:.1f} GiB in ACPI memory slots as "
             "its own: add acpi_no_memhotplug to its command line; without it no reservation "
             f"is enough ({TAKEN_DUMPS})")  # said only when it does (taken)
    if reserved_bytes >= recommended:
        if not taken:
            return Capacity(reserved_bytes, recommended, source, ram_bytes=ram_bytes)
        warning = (f"{reserved_bytes // MIB} MiB reserved for the crash kernel is at least "
                   f"what {source} asks for ({recommended // MIB} MiB), but {takes}")
        return Capacity(reserved_bytes, recommended, source, warning, ram_bytes)
    if suggestion == "":  # the measured rule: the fix is the option, not a size
        fix, basis = takes, ""
    else:
        fix = f"set crashkernel={suggestion} (it applies at the next boot)" + (
            f"; and {takes}" if taken else "")
        basis = f" ({TABLES_ONLY})" if machine.arch == "x86_64" else " (a table)"
    warning = (f"{reserved_bytes // MIB} MiB reserved for the crash kernel, but for the "
               f"{ram_bytes / GIB:.1f} GiB of System RAM now {source} asks for "
               f"{recommended // MIB} MiB{basis}: a dump may fail; {fix}")
    return Capacity(reserved_bytes, recommended, source, warning, ram_bytes)


def system_ram_bytes(iomem: str) -> int:
    """Bytes in /proc/iomem's ``System RAM`` lines, at any depth, named exactly that
    (``get_system_size()``: driver-managed ``System RAM (...)`` is left out)."""
    total = 0
    for line in iomem.splitlines():
        span, _, name = line.strip().partition(" : ")
        if name.strip() != "System RAM":
            continue
        start, _, end = span.strip().partition("-")
        try:
            total += int(end, 16) - int(start, 16) + 1
        except ValueError:
            continue
    return total


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
