"""What the loaded crash image really holds, read back and compared with the host now.

The image lies in the crash reservation (/proc/iomem's ``Crash kernel`` ranges; on
powerpc the device tree's ``/chosen/linux,crashkernel-base`` and ``-size``), which
/proc/kcore maps (its PT_LOADs carry ``p_paddr``: the direct map). In the reservation is
the command line the dump kernel will boot with; it says where the ELF core header is:
``elfcorehdr=0x6f000000`` (kexec_file_load, ``-s``: the kernel puts it first) or
``elfcorehdr=2080116K`` (kexec-tools' ``-c``: appended). That header lists what the dump
will contain: a PT_LOAD per memory range, a PT_NOTE per CPU (at its ``crash_notes``).

The header is **current** when every System RAM range above 1 MiB outside the reservation
is covered by a PT_LOAD, no PT_LOAD lies over memory that is not RAM, and every present
CPU's ``crash_notes`` has a PT_NOTE; **stale** when one of these fails; **unloaded** when
``kexec_crash_loaded`` reads 0; **unknown** when it cannot be read or told (no /proc/kcore,
lockdown, no reservation, headers that disagree), with the reason.

A load rewrites only what its segments cover: an older command line and header can linger
in the reservation. Every command line found is followed to its header; when they do not
all give the same verdict, the answer is "unknown", never a guess. Reads are bounded (one
chunk at a time, a header of at most :data:`MAX_PHNUM` entries); nothing is held beyond a
chunk, and no content raises past :func:`verify`. No kexec lock is taken: neither
``kexec_crash_loaded`` nor /proc/kcore takes it (``kexec_crash_size`` and ``crash_hotplug``
do, so neither is read here). x86_64 and ppc64le (little-endian headers); elsewhere the
verdict is "unknown" and says why.

On powerpc kexec-tools builds a kexec_load header from the device tree and leaves out all
memory at or above ``/chosen/linux,memory-limit`` (crashdump-ppc64.c,
exclude_crash_region()), which the kernel exports once at boot: in the pseries guest (6.12,
no ``mem=``) it read 0x80000000, the boot RAM's end, so RAM hot-added later is missing
from every header kexec-tools builds (plain ``-c`` or ``--hotplug``), while the kernel's
own update at a memory event rebuilds the header with it. A stale verdict whose missing RAM
all lies above that limit says so in ``unfixable``: loading again cannot mend it.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from kdumpd import arch as archmod
from kdumpd.hardware import (
    DT_CRASHKERNEL,
    iomem_resources,
    is_ram,
    read_property,
    read_text,
)

CURRENT, STALE, UNLOADED, UNKNOWN = "current", "stale", "unloaded", "unknown"
VERIFIED_ARCHES = ("x86_64", "ppc64le")
DT_MEMORY_LIMIT = "proc/device-tree/chosen/linux,memory-limit"
DEVICE_TREE_UNREAD = ("the dump kernel's device tree is not read back (a plain -c image's "
                      "lacks CPUs hot-added since its load)")
LOW_MEMORY = 1 << 20  # below 1 MiB loaders differ and hotplug moves nothing
CHUNK = 1 << 20  # the scan reads the reservation this much at a time
MAX_CMDLINE = 4096  # x86's COMMAND_LINE_SIZE is 2048; a bound on what is read around a match
MAX_PHNUM = 65535
ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, little-endian
PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr
ET_CORE, PT_LOAD, PT_NOTE = 4, 1, 4
NO_PADDR = (1 << 64) - 1  # kcore's p_paddr for a segment that is not in the direct map
NEEDLE = b"elfcorehdr="
_VALUE = re.compile(rb"elfcorehdr=([0-9A-Za-z@]+)")
Span = tuple[int, int]  # [start, end) in bytes


@dataclass(frozen=True)
class HeaderCheck:
    """The verdict on the loaded header (``kdumpd verify --json`` has these keys)."""

    verdict: str  # CURRENT, STALE, UNLOADED or UNKNOWN
    why: str
    header_address: int | None = None
    ranges_missing: tuple[Span, ...] = ()  # [start, end) internally; inclusive in JSON
    ranges_extra: tuple[Span, ...] = ()
    cpus_missing: tuple[int, ...] = ()
    loaded_cmdline: str | None = None  # the command line the header's address came from
    read_s: float = 0.0
    candidates: int = field(default=0, compare=False)  # command lines found in the scan
    header_loads: tuple[Span, ...] = ()  # the header's PT_LOADs, as a dump will have them
    unfixable: str = ""  # why loading again cannot make a stale header current ("": it can)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "why": self.why,
            "header_address": self.header_address,
            "ranges_missing": [[a, b - 1] for a, b in self.ranges_missing],
            "ranges_extra": [[a, b - 1] for a, b in self.ranges_extra],
            "cpus_missing": list(self.cpus_missing),
            "loaded_cmdline": self.loaded_cmdline,
            "read_s": round(self.read_s, 3),
            "header_loads": [[a, b - 1] for a, b in self.header_loads],
            "unfixable": self.unfixable or None,
        }

    def line(self) -> str:
        """One line for `kdumpd status` and the journal."""
        if self.verdict == STALE:
            mend = f" (no kexec_load can mend it: {self.unfixable})" if self.unfixable else ""
            return f"STALE: {self.why}{mend}"
        return f"{self.verdict} ({self.why})"


class Unreadable(Exception):
    """The loaded header cannot be read or told; the message says why, in one line."""


# -- the host's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """What the header must describe, read from the host's files."""

    ram: tuple[Span, ...]  # every System RAM range, any depth
    reserved: tuple[Span, ...]  # the Crash kernel ranges
    cpu_notes: dict[int, int]  # present CPU -> physical address of its crash_notes
    memory_limit: int | None = None  # powerpc: kexec-tools' linux,memory-limit (0: none)


def parse_iomem(text: str) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """(System RAM ranges at any depth, Crash kernel ranges) of /proc/iomem as [start, end)."""
    ram, reserved = [], []
    for span, name in iomem_resources(text):
        start, _, end = span.partition("-")
        try:
            bounds = (int(start, 16), int(end, 16) + 1)
        except ValueError:
            continue
        if is_ram(name):
            ram.append(bounds)
        elif name == "Crash kernel":
            reserved.append(bounds)
    return tuple(ram), tuple(reserved)


def parse_cpu_list(text: str) -> list[int]:
    """The kernel's CPU list (``0-3,6``) as numbers. Raises ValueError."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first or last - first > 1 << 16:
            raise ValueError(f"not a CPU range: {part!r}")
        cpus.extend(range(first, last + 1))
    return cpus


def device_tree_span(base: bytes | None, size: bytes | None) -> tuple[Span, ...]:
    """The reservation from the device tree's big-endian base and size (8 bytes each)."""
    if base is None or size is None or len(base) != 8 or len(size) != 8:
        return ()
    start, length = int.from_bytes(base, "big"), int.from_bytes(size, "big")
    return ((start, start + length),) if length else ()


def read_host(root: Path, reservation_in: str = archmod.IOMEM) -> Host:
    """Read the host's RAM, reservation (from where the architecture publishes it) and
    CPUs' notes; raises :class:`Unreadable`."""
    ram, reserved = parse_iomem(read_text(root / "proc/iomem"))
    limit = None
    if reservation_in == archmod.DEVICE_TREE:
        reserved = device_tree_span(read_property(root / (DT_CRASHKERNEL + "base")),
                                    read_property(root / (DT_CRASHKERNEL + "size")))
        raw = read_property(root / DT_MEMORY_LIMIT)
        limit = int.from_bytes(raw, "big") if raw is not None and len(raw) == 8 else None
        if not reserved:
            raise Unreadable("no crash kernel reservation in the device tree (/chosen/"
                             "linux,crashkernel-base and -size; boot with crashkernel=)")
    if not reserved:
        raise Unreadable("no crash kernel reservation in /proc/iomem (boot with crashkernel=)")
    if not ram or all(a == 0 for a, _ in (*ram, *reserved)):
        raise Unreadable("/proc/iomem shows no addresses (needs CAP_SYS_ADMIN)")
    cpu_dir = root / "sys/devices/system/cpu"
    try:
        present = parse_cpu_list(read_text(cpu_dir / "present"))
    except ValueError as error:
        raise Unreadable(f"{cpu_dir / 'present'}: {error}") from None
    notes = {}
    for cpu in present:
        path = cpu_dir / f"cpu{cpu}" / "crash_notes"
        try:
            notes[cpu] = int(read_text(path).strip(), 16)
        except ValueError:
            raise Unreadable(f"{path}: not an address") from None
    return Host(ram, reserved, notes, limit)


# -- /proc/kcore ---------------------------------------------------------------------------


class Kcore:
    """Physical memory through /proc/kcore (an ELF64 core file of the running kernel)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        head = os.pread(fd, ELF_HEADER.size, 0)
        if len(head) < ELF_HEADER.size or head[:4] != b"\x7fELF" or head[4] != 2 \
                or head[5] != 1:
            raise Unreadable("/proc/kcore is not a little-endian ELF64 file")
        fields = ELF_HEADER.unpack(head)
        phoff, phentsize, phnum = fields[5], fields[9], fields[10]
        if phentsize != PHDR.size or phnum > MAX_PHNUM:
            raise Unreadable("/proc/kcore has program headers of an unexpected shape")
        table = os.pread(fd, phnum * PHDR.size, phoff)
        self._maps: list[tuple[int, int, int]] = []  # (paddr, size, file offset)
        for i in range(len(table) // PHDR.size):
            p_type, _, offset, _, paddr, filesz, _, _ = PHDR.unpack_from(table, i * PHDR.size)
            if p_type == PT_LOAD and paddr != NO_PADDR and filesz:
                self._maps.append((paddr, filesz, offset))

    def read(self, address: int, size: int) -> bytes:
        """``size`` bytes of physical memory at ``address``; raises :class:`Unreadable`
        when /proc/kcore does not map all of them."""
        for paddr, length, offset in self._maps:
            if paddr <= address and address + size <= paddr + length:
                data = os.pread(self._fd, size, offset + address - paddr)
                if len(data) == size:
                    return data
        raise Unreadable(f"/proc/kcore does not map {size} bytes at {address:#x}")


# -- the image's side ----------------------------------------------------------------------


def memparse(text: str) -> int:
    """The kernel's memparse(): a C number (0x hex, 0 octal, decimal) with an optional
    K/M/G/T/P/E suffix. Raises ValueError."""
    match = re.fullmatch(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([KMGTPEkmgtpe]?)", text)
    if match is None:
        raise ValueError(f"not a memory size: {text!r}")
    number, suffix = match.groups()
    value = int(number, 16) if number[:2].lower() == "0x" else int(number, 8) \
        if number.startswith("0") and len(number) > 1 else int(number)
    return value << (10 * ("KMGTPE".index(suffix.upper()) + 1) if suffix else 0)


def header_address(cmdline: str) -> int:
    """The address ``elfcorehdr=[size@]address`` gives (the last one counts, as in the
    kernel's parameter parsing). Raises ValueError."""
    values = re.findall(r"(?:^|\s)elfcorehdr=(\S+)", cmdline)
    if not values:
        raise ValueError("no elfcorehdr= in the command line")
    _, _, address = values[-1].rpartition("@")
    return memparse(address)


@dataclass(frozen=True)
class Header:
    loads: tuple[Span, ...]
    notes: frozenset[int]  # physical addresses of the PT_NOTEs


def read_header(kcore: Kcore, address: int) -> Header:
    """The ELF core header at ``address``; raises :class:`Unreadable`."""
    head = kcore.read(address, ELF_HEADER.size)
    fields = ELF_HEADER.unpack(head)
    if head[:4] != b"\x7fELF" or head[4] != 2 or fields[1] != ET_CORE:
        raise Unreadable(f"no ELF core header at {address:#x}")
    phoff, phentsize, phnum = fields[5], fields[9], fields[10]
    if phentsize != PHDR.size or not 0 < phnum <= MAX_PHNUM or phoff > 1 << 20:
        raise Unreadable(f"the ELF core header at {address:#x} has an unexpected shape")
    table = kcore.read(address + phoff, phnum * PHDR.size)
    loads: list[Span] = []
    notes: set[int] = set()
    for i in range(phnum):
        p_type, _, offset, _, paddr, _, memsz, _ = PHDR.unpack_from(table, i * PHDR.size)
        if p_type == PT_LOAD and memsz:
            loads.append((paddr, paddr + memsz))
        elif p_type == PT_NOTE:
            notes.update((offset, paddr))
    return Header(tuple(loads), frozenset(notes))


def find_cmdlines(kcore: Kcore, reserved: tuple[Span, ...]) -> list[str]:
    """Every command line in the reservation that carries ``elfcorehdr=``, in address
    order, once each: the NUL-delimited printable run around each match."""
    found: list[str] = []
    for start, end in reserved:
        at = start
        while at < end:
            size = min(CHUNK, end - at)
            chunk = kcore.read(at, size)
            hit = chunk.find(NEEDLE)
            while hit != -1:
                line = _cmdline_around(kcore, at + hit, start, end)
                if line and line not in found:
                    found.append(line)
                hit = chunk.find(NEEDLE, hit + 1)
            # A match cut by the chunk's end is found in the next chunk's overlap.
            at += size if at + size >= end else size - len(NEEDLE)
    return found


def _cmdline_around(kcore: Kcore, address: int, low: int, high: int) -> str:
    """The NUL-delimited string around ``address`` (at most MAX_CMDLINE each way): a
    command line may hold any byte but NUL (tabs, a UTF-8 label). "" when the word is
    not a parameter (not at the start or after white space) or the string has no end."""
    begin = max(low, address - MAX_CMDLINE)
    after = min(high, address + MAX_CMDLINE)
    data = kcore.read(begin, after - begin)
    at = address - begin
    first = data.rfind(b"\0", 0, at) + 1
    if first == 0 and begin > low:
        return ""  # no NUL before it within a command line's length: not one
    last = data.find(b"\0", at)
    if last == -1 and after < high:
        return ""  # no end within a command line's length
    first = _fdt_value_start(data, first, at, last)
    if at > first and data[at - 1] not in b" \t\n":
        return ""  # "xelfcorehdr=": not the parameter
    return data[first:last if last != -1 else len(data)].decode("utf-8", "replace")


FDT_PROP = b"\0\0\0\x03"


def _fdt_value_start(data: bytes, first: int, at: int, last: int) -> int:
    """Where the string starts when it is a flattened device tree's property value
    (powerpc: kexec-tools puts the command line in the dump kernel's ``bootargs``): the
    value follows FDT_PROP, its length (the string's, NUL included) and its name's offset,
    big-endian, and that offset's nonzero bytes are no part of the command line."""
    if last == -1:
        return first
    for start in range(first, min(first + 4, at + 1)):
        if start >= 12 and data[start - 12:start - 8] == FDT_PROP and \
                int.from_bytes(data[start - 8:start - 4], "big") == last - start + 1:
            return start
    return first


# -- the verdict ---------------------------------------------------------------------------


def compare(header: Header, host: Host) -> tuple[tuple[Span, ...], tuple[Span, ...],
                                                 tuple[int, ...]]:
    """(RAM missing from the header, PT_LOADs over no RAM, CPUs without a note)."""
    want = [(max(a, LOW_MEMORY), b) for a, b in host.ram if b > LOW_MEMORY]
    missing = _subtract(_merge(want), _merge([*header.loads, *host.reserved]))
    loads = [(max(a, LOW_MEMORY), b) for a, b in header.loads if b > LOW_MEMORY]
    extra = _subtract(_merge(loads), _merge([*host.ram, *host.reserved]))
    cpus = tuple(sorted(c for c, note in host.cpu_notes.items() if note not in header.notes))
    return tuple(missing), tuple(extra), cpus


def verify(root: Path, *, arch: str | None = None,
           clock: Callable[[], float] = time.monotonic) -> HeaderCheck:
    """Read the loaded header under ``root`` and judge it; never raises."""
    started = clock()
    machine = arch or os.uname().machine
    loaded = read_text(root / "sys/kernel/kexec_crash_loaded").strip()
    if loaded == "0":
        return HeaderCheck(UNLOADED, "kexec_crash_loaded reads 0: no crash kernel loaded")
    if loaded != "1":
        return HeaderCheck(UNKNOWN, "kexec_crash_loaded cannot be read")
    if machine not in VERIFIED_ARCHES:
        return HeaderCheck(UNKNOWN, f"reading the loaded header back is implemented for "
                           f"x86_64 and ppc64le only, not {machine}")
    facts = archmod.facts(machine)
    try:
        check = _judge(root, facts.reservation_in)
    except Unreadable as error:
        check = HeaderCheck(UNKNOWN, str(error))
    except OSError as error:
        check = HeaderCheck(UNKNOWN, _os_reason(error))
    if read_text(root / "sys/kernel/kexec_crash_loaded").strip() != "1":
        check = HeaderCheck(UNKNOWN, "a load ran while the header was read")
    elif check.verdict == CURRENT and facts.unknown_cpu_loses_dump:
        check = replace(check, why=f"{check.why}; {DEVICE_TREE_UNREAD}")
    return _with_time(check, clock() - started)


def _judge(root: Path, reservation_in: str = archmod.IOMEM) -> HeaderCheck:
    host = read_host(root, reservation_in)
    fd = os.open(root / "proc/kcore", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("/proc/kcore is not a regular file")
        kcore = Kcore(fd)
        lines = find_cmdlines(kcore, host.reserved)
        if not lines:
            raise Unreadable("no command line with elfcorehdr= in the reservation")
        checks = [_check_one(kcore, host, line) for line in lines]
    finally:
        os.close(fd)
    if read_host(root, reservation_in) != host:  # a hotplug while it was read: judged nothing
        raise Unreadable("the hardware changed while the header was read")
    # A command line whose elfcorehdr= points into the reservation may be the live one:
    # if its header cannot be read, no other one may decide for it.
    blind = [c for c in checks if c.verdict == UNKNOWN and c.header_address is not None]
    if blind:
        return HeaderCheck(UNKNOWN, f"{blind[0].why} (elfcorehdr={blind[0].header_address:#x}"
                           " of a command line in the reservation: which image is loaded "
                           "cannot be told)", candidates=len(lines))
    readable = [c for c in checks if c.verdict != UNKNOWN]
    if not readable:
        return HeaderCheck(UNKNOWN, checks[0].why, candidates=len(lines))
    verdicts = {(c.verdict, c.ranges_missing, c.ranges_extra, c.cpus_missing)
                for c in readable}
    if len(verdicts) > 1:
        where = ", ".join(f"{c.header_address:#x}: {c.verdict}" for c in readable)
        return HeaderCheck(UNKNOWN, f"{len(readable)} command lines in the reservation point "
                           f"at headers that disagree ({where}): an older load lingers",
                           candidates=len(lines))
    chosen = readable[0]
    if len(readable) == 1:
        return replace(chosen, candidates=len(lines))
    # Every header found gives the same verdict: which one is live does not change it,
    # but neither its address nor (unless they all agree) its command line is known.
    own = {without_elfcorehdr(c.loaded_cmdline or "") for c in readable}
    return replace(chosen, why=f"{chosen.why} (all {len(readable)} headers found in the "
                   "reservation agree)", header_address=None, candidates=len(lines),
                   loaded_cmdline=chosen.loaded_cmdline if len(own) == 1 else None,
                   header_loads=chosen.header_loads if len({c.header_loads for c in readable})
                   == 1 else ())


def without_elfcorehdr(cmdline: str) -> str:
    return " ".join(w for w in cmdline.split() if not w.startswith("elfcorehdr="))


def _check_one(kcore: Kcore, host: Host, cmdline: str) -> HeaderCheck:
    try:
        address = header_address(cmdline)
    except ValueError as error:
        return HeaderCheck(UNKNOWN, f"the command line's elfcorehdr=: {error}",
                           loaded_cmdline=cmdline)
    if not any(a <= address < b for a, b in host.reserved):
        # Not a live image's (both loaders put the header in the reservation): no address.
        return HeaderCheck(UNKNOWN, f"elfcorehdr={address:#x} lies outside the reservation",
                           loaded_cmdline=cmdline)
    try:
        header = read_header(kcore, address)
    except Unreadable as error:
        return HeaderCheck(UNKNOWN, str(error), address, loaded_cmdline=cmdline)
    missing, extra, cpus = compare(header, host)
    loads = tuple(sorted(header.loads))
    if not (missing or extra or cpus):
        return HeaderCheck(CURRENT, f"{len(header.loads)} memory ranges and "
                           f"{len(host.cpu_notes)} present CPU(s) as the host has them",
                           address, loaded_cmdline=cmdline, header_loads=loads)
    parts = []
    if missing:
        parts.append(f"RAM missing {_spans(missing)}")
    if extra:
        parts.append(f"ranges that are not RAM {_spans(extra)}")
    if cpus:
        parts.append(f"CPUs without a note {','.join(map(str, cpus))}")
    return HeaderCheck(STALE, "; ".join(parts), address, missing, extra, cpus, cmdline,
                       header_loads=loads, unfixable=_unfixable(host, missing, extra, cpus))


def _unfixable(host: Host, missing: tuple[Span, ...], extra: tuple[Span, ...],
               cpus: tuple[int, ...]) -> str:
    """Why no kexec_load can mend these differences, or "": only RAM is missing, and all of it
    lies at or above the device tree's linux,memory-limit, which kexec-tools obeys."""
    limit = host.memory_limit
    if not limit or not missing or extra or cpus or any(a < limit for a, _ in missing):
        return ""
    return (f"kexec-tools leaves all RAM at or above the device tree's linux,memory-limit "
            f"({limit:#x}, set at boot) out of every kexec_load header; in an image loaded "
            f"with --hotplug (crash_hotplug=1) the kernel's own update puts it in at the "
            f"next memory hotplug event")


def _with_time(check: HeaderCheck, seconds: float) -> HeaderCheck:
    return replace(check, read_s=seconds)


def _os_reason(error: OSError) -> str:
    name = error.filename or "/proc/kcore"
    if isinstance(error, PermissionError):
        return (f"{name}: permission denied (needs root with CAP_SYS_RAWIO; the kernel's "
                f"lockdown=confidentiality refuses it)")
    if isinstance(error, FileNotFoundError):
        return f"{name}: not there (hidden by the sandbox, or no CONFIG_PROC_KCORE)"
    return f"{name}: {error.strerror or error}"


def _spans(spans: tuple[Span, ...]) -> str:
    return ", ".join(f"{a:#x}-{b - 1:#x}" for a, b in spans)


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: list[Span], holes: list[Span]) -> list[Span]:
    """``spans`` minus ``holes``; both merged and sorted."""
    left: list[Span] = []
    for start, end in spans:
        at = start
        for hole_start, hole_end in holes:
            if hole_end <= at or hole_start >= end:
                continue
            if hole_start > at:
                left.append((at, hole_start))
            at = max(at, hole_end)
            if at >= end:
                break
        if at < end:
            left.append((at, end))
    return left
