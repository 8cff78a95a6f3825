"""Proof by dump: does the vmcore a panic produced cover the memory and CPUs of the moment?

Before the panic the first kernel's System RAM ranges (top level of /proc/iomem), its
``Crash kernel`` reservation and its online CPUs are recorded; in the crash kernel
:data:`VMCORE_READER` reads /proc/vmcore's ELF program headers (PT_LOAD ranges, and one
NT_PRSTATUS note per CPU the crashed kernel saved). :func:`compare` says what is missing
and what is extra: a PT_LOAD over memory the first kernel no longer had (a hot-removed
DIMM that a kernel-updated header kept) is as wrong as a missing range.
The parser is shared by the guest script and the host's unit test (tests/core).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

PT_LOAD = 1
PT_NOTE = 4
NT_PRSTATUS = 1
LOW_MEMORY = 1 << 20  # below 1 MiB the ranges differ between loaders; not what hotplug moves

# Both guest readers count the crashed kernel's CPUs the same way: one NT_PRSTATUS note
# named CORE per CPU, in an ELF note segment.
COUNT_PRSTATUS = r'''
import struct
def count_prstatus(notes):
    cpus, at = 0, 0
    while at + 12 <= len(notes):
        namesz, descsz, n_type = struct.unpack_from("<III", notes, at)
        if namesz == 0:
            break
        name = notes[at + 12: at + 12 + namesz].rstrip(b"\0")
        cpus += n_type == 1 and name == b"CORE"
        at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return cpus
'''

# Runs in the crash kernel: python3 reader.py [ELF file] prints one JSON line.
VMCORE_READER = COUNT_PRSTATUS + r'''
import json, struct
def parse(read):
    head = read(0, 64)
    assert head[:4] == b"\x7fELF" and head[4] == 2, "not an ELF64 vmcore"
    phoff, = struct.unpack_from("<Q", head, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
    loads, cpus = [], 0
    for i in range(phnum):
        p_type, _flags, offset, _vaddr, paddr, filesz, memsz, _align = struct.unpack(
            "<IIQQQQQQ", read(phoff + i * phentsize, 56))
        if p_type == 1:
            loads.append([paddr, paddr + memsz])
        elif p_type == 4:
            cpus += count_prstatus(read(offset, filesz))
    return {"loads": loads, "prstatus": cpus}
import sys
# /proc/vmcore in the crash kernel, or a saved ELF dump (makedumpfile -E) given as argv[1].
with open(sys.argv[1] if len(sys.argv) > 1 else "/proc/vmcore", "rb") as core:
    def read(offset, size):
        core.seek(offset)
        return core.read(size)
    print("VMCORE " + json.dumps(parse(read)))
'''


# Reads a saved dump in makedumpfile's kdump-compressed format (Debian's kdump-tools
# default, `-c -d 31`, after `makedumpfile -R` undoes the -F flattening): the memory it
# covers is the 1st bitmap (a bit per page frame that is in one of the vmcore's PT_LOAD
# ranges, whatever the dump level then filtered), the CPUs are the NT_PRSTATUS notes the
# sub-header points at. Prints the same JSON line as VMCORE_READER. Layout: makedumpfile's
# diskdump_mod.h (struct disk_dump_header, struct kdump_sub_header), x86_64.
KDUMP_READER = COUNT_PRSTATUS + r'''
import json, struct, sys
with open(sys.argv[1], "rb") as dump:
    head = dump.read(4096)
    assert head[:8] == b"KDUMP   ", "not a kdump-compressed dump"
    block_size, sub_hdr_size, bitmap_blocks = struct.unpack_from("<iiI", head, 428)
    dump.seek(block_size)
    sub = dump.read(104)
    offset_note, size_note = struct.unpack_from("<qQ", sub, 48)
    dump.seek(block_size * (1 + sub_hdr_size))
    bitmap = dump.read(bitmap_blocks * block_size // 2)
    dump.seek(offset_note)
    notes = dump.read(size_note)
# Bit k of the little-endian integer is page frame k; its edges (a bit unlike the one
# below it) start and end the ranges, in pairs. One big-integer operation per edge, not a
# Python step per page frame: a 66 GiB guest's bitmap has 17 million bits (minutes under TCG).
bits = int.from_bytes(bitmap, "little")
edges, found = bits ^ (bits << 1), []
while edges:
    low = edges & -edges
    found.append(low.bit_length() - 1)
    edges ^= low
loads = [[found[i] * 4096, found[i + 1] * 4096] for i in range(0, len(found), 2)]
print("VMCORE " + json.dumps({"loads": loads, "prstatus": count_prstatus(notes)}))
'''


@dataclass(frozen=True)
class Before:
    """What the first kernel had when it panicked."""

    ram: list[tuple[int, int]]  # [start, end) of each top-level System RAM range
    reserved: list[tuple[int, int]]  # the crash kernel's own reservation (never dumped)
    cpus: int  # online CPUs


@dataclass(frozen=True)
class Verdict:
    missing: list[tuple[int, int]]  # System RAM not in any PT_LOAD
    cpus_expected: int
    cpus_in_dump: int
    extra: tuple[tuple[int, int], ...] = ()  # PT_LOAD over no System RAM of the first kernel

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and self.cpus_expected == self.cpus_in_dump

    def describe(self) -> str:
        ranges = ", ".join(f"{a:x}-{b - 1:x}" for a, b in self.missing) or "none"
        extra = ", ".join(f"{a:x}-{b - 1:x}" for a, b in self.extra) or "none"
        return (f"RAM missing from the dump: {ranges}; EXTRA ranges the first kernel did "
                f"not have: {extra}; CPUs {self.cpus_in_dump} in the dump of "
                f"{self.cpus_expected} online")


def summary(before: Before, dump: dict[str, object], verdict: Verdict) -> str:
    """One line for RESULTS.md: expected ranges, the vmcore's, CPUs and the verdict."""
    def spans(pairs: list[tuple[int, int]]) -> str:
        return ", ".join(f"{a:x}-{b - 1:x}" for a, b in pairs) or "none"

    expected = [(max(a, LOW_MEMORY), b) for a, b in before.ram if b > LOW_MEMORY]
    loads = sorted((int(a), int(b)) for a, b in dump["loads"])  # type: ignore[attr-defined]
    return (f"System RAM above 1 MiB: {spans(expected)} (crash kernel reservation "
            f"{spans(before.reserved)}); vmcore PT_LOAD: {spans(loads)}; CPUs online "
            f"{verdict.cpus_expected}, NT_PRSTATUS {verdict.cpus_in_dump}; verdict: "
            + ("COMPLETE" if verdict.ok else f"INCOMPLETE ({verdict.describe()})"))


def parse_iomem(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """System RAM ranges (any depth: ``System RAM (kmem)`` sits under a dax device) and
    ``Crash kernel`` ranges, as [start, end)."""
    ram, reserved = [], []
    for line in text.splitlines():
        span, _, name = line.partition(" : ")
        start, _, end = span.strip().partition("-")
        if not end:
            continue
        bounds = (int(start, 16), int(end, 16) + 1)
        name = name.strip()
        if name == "System RAM" or name.startswith("System RAM ("):
            ram.append(bounds)
        elif name.strip() == "Crash kernel":
            reserved.append(bounds)
    return ram, reserved


def count_cpus(online: str) -> int:
    """Number of CPUs in a kernel CPU list such as ``0-2,4``."""
    total = 0
    for part in online.strip().split(","):
        if part:
            low, _, high = part.partition("-")
            total += int(high or low) - int(low) + 1
    return total


def compare(before: Before, dump: dict[str, object]) -> Verdict:
    loads = sorted((int(a), int(b)) for a, b in dump["loads"])  # type: ignore[attr-defined]
    missing: list[tuple[int, int]] = []
    for start, end in before.ram:
        for gap in _subtract([(max(start, LOW_MEMORY), end)], [*loads, *before.reserved]):
            if gap[1] > gap[0]:
                missing.append(gap)
    extra = _subtract([(max(a, LOW_MEMORY), b) for a, b in loads if b > LOW_MEMORY],
                      [*before.ram, *before.reserved])
    return Verdict(missing, before.cpus, int(dump["prstatus"]),  # type: ignore[call-overload]
                   tuple(_merge(extra)))


def parse_reader_output(output: str) -> dict[str, object]:
    for line in output.splitlines():
        if line.startswith("VMCORE "):
            parsed: dict[str, object] = json.loads(line[len("VMCORE "):])
            return parsed
    raise ValueError(f"no VMCORE line in: {output[-500:]!r}")


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    for hole_start, hole_end in holes:
        spans = [piece for start, end in spans
                 for piece in ((start, min(end, hole_start)), (max(start, hole_end), end))
                 if piece[1] > piece[0]]
    return spans


def elf_vmcore(loads: list[tuple[int, int]], cpus: int) -> bytes:
    """A minimal ELF64 vmcore with these PT_LOAD ranges and ``cpus`` NT_PRSTATUS notes
    (for the parser's unit test)."""
    note = b""
    for _ in range(cpus):
        note += struct.pack("<III", 5, 8, NT_PRSTATUS) + b"CORE\0\0\0\0" + b"\0" * 8
    note += struct.pack("<III", 0, 0, 0)  # the kernel's terminating empty note
    phnum = 1 + len(loads)
    phoff = 64
    note_at = phoff + 56 * phnum
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x20, phoff)
    struct.pack_into("<HH", header, 0x36, 56, phnum)
    phdrs = struct.pack("<IIQQQQQQ", PT_NOTE, 0, note_at, 0, 0, len(note), len(note), 0)
    for start, end in loads:
        phdrs += struct.pack("<IIQQQQQQ", PT_LOAD, 0, 0, 0, start, end - start, end - start, 0)
    return bytes(header) + phdrs + note


def kdump_compressed(pages: list[tuple[int, int]], cpus: int, max_pfn: int) -> bytes:
    """A minimal kdump-compressed file whose 1st bitmap marks these [start, end) page frame
    ranges and whose notes hold ``cpus`` NT_PRSTATUS (for the reader's unit test)."""
    block = 4096
    note = b""
    for _ in range(cpus):
        note += struct.pack("<III", 5, 8, NT_PRSTATUS) + b"CORE\0\0\0\0" + b"\0" * 8
    note += struct.pack("<III", 0, 0, 0)
    per_bitmap = -(-max_pfn // 8 // block) or 1  # blocks, rounded up
    header = bytearray(block)
    header[:8] = b"KDUMP   "
    struct.pack_into("<iiI", header, 428, block, 1, 2 * per_bitmap)
    sub = bytearray(block)
    note_at = block * (2 + 2 * per_bitmap)
    struct.pack_into("<qQ", sub, 48, note_at, len(note))
    bitmap = bytearray(per_bitmap * block)
    for first, last in pages:
        for pfn in range(first, last):
            bitmap[pfn >> 3] |= 1 << (pfn & 7)
    return bytes(header) + bytes(sub) + bytes(bitmap) + bytes(per_bitmap * block) + note
