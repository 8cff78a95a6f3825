"""A faithful fake /proc/kcore: the crash reservation mapped, holding a loaded image's
command line and ELF core header where the kernel and kexec-tools put them.

For tests, the demo and the fake kernel (fakekernel.py). The layout follows what the
Debian 13 guest showed (docs/design.md, "Decide from what is loaded"; loaded_header.py):

- /proc/kcore is an ELF64 core file; the PT_LOAD over the reservation has ``p_paddr`` set
  (the direct map). The file is sparse: only what was written takes space.
- ``file`` (kexec_file_load, ``-s``): the kernel writes ``elfcorehdr=0x<addr> `` before the
  user's command line, in the boot-parameters segment; the header at the reservation's
  start (the guest: ``elfcorehdr=0x6f000000`` in a 256 MiB reservation at 0x6f000000); one
  PT_NOTE per *possible* CPU, plus vmcoreinfo.
- ``plain`` and ``hotplug`` (kexec-tools' ``-c``): ``elfcorehdr=<KiB>K`` is appended to
  the command line; the header near the reservation's top (the guest: 2080116K, 0xA3000
  below its end), so an image of the other kind lingers (a load rewrites only what its
  own segments cover).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from kdumpd.loaded_header import ELF_HEADER, ET_CORE, PHDR, PT_LOAD, PT_NOTE, Span

KCORE_DATA = 1 << 16  # where the reservation's bytes start in the fake kcore file
NOTE_BASE = 0x7F000000  # crash_notes of CPU n: NOTE_BASE + n * 0x1000 (outside the RAM)
VMCOREINFO = 0x7E000000
# Offsets in the reservation, per loader: (command line, header); negative: from its end.
LAYOUT = {"file": (0x100000, 0), "plain": (-0x200000, -0xA3000),
          "hotplug": (-0x200000, -0xA3000)}


def note_address(cpu: int) -> int:
    return NOTE_BASE + cpu * 0x1000


def elf_core_header(loads: Iterable[Span], notes: Iterable[int]) -> bytes:
    """An ELF64 ET_CORE header with a PT_NOTE per address and a PT_LOAD per [start, end)."""
    phdrs = [PHDR.pack(PT_NOTE, 0, a, 0, a, 0x400, 0x400, 0) for a in notes]
    phdrs += [PHDR.pack(PT_LOAD, 7, a, 0xFFFF888000000000 + a, a, b - a, b - a, 0)
              for a, b in loads]
    head = ELF_HEADER.pack(b"\x7fELF\x02\x01\x01" + bytes(9), ET_CORE, 62, 1, 0,
                           ELF_HEADER.size, 0, 0, ELF_HEADER.size, PHDR.size, len(phdrs),
                           0, 0, 0)
    return head + b"".join(phdrs)


def write_kcore(root: Path, reservation: Span, contents: dict[int, bytes],
                *, fresh: bool = False) -> None:
    """Write ``contents`` (physical address -> bytes) into ``root``/proc/kcore, whose one
    PT_LOAD maps ``reservation``; ``fresh``: start from an empty reservation, else keep
    what earlier loads left."""
    path = root / "proc/kcore"
    path.parent.mkdir(parents=True, exist_ok=True)
    start, end = reservation
    head = ELF_HEADER.pack(b"\x7fELF\x02\x01\x01" + bytes(9), ET_CORE, 62, 1, 0,
                           ELF_HEADER.size, 0, 0, ELF_HEADER.size, PHDR.size, 2, 0, 0, 0)
    phdrs = (PHDR.pack(PT_NOTE, 0, 0x1000, 0, 0, 0, 0, 0)
             + PHDR.pack(PT_LOAD, 7, KCORE_DATA, 0xFFFF888000000000 + start, start,
                         end - start, end - start, 0x1000))
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if fresh else 0)
    fd = os.open(path, flags, 0o600)  # rewritten by later fake loads, as any user
    try:
        os.ftruncate(fd, KCORE_DATA + end - start)
        os.pwrite(fd, head + phdrs, 0)
        for address, data in contents.items():
            if not (start <= address and address + len(data) <= end):
                raise ValueError(f"{address:#x} is outside the reservation")
            os.pwrite(fd, data, KCORE_DATA + address - start)
    finally:
        os.close(fd)


def load_image(root: Path, reservation: Span, kind: str, cmdline: str, *,
               ram: Iterable[Span], cpus: Iterable[int], fresh: bool = False) -> int:
    """Lay out an image of ``kind`` describing ``ram`` and ``cpus`` as its loader would;
    return the header's address."""
    at_cmdline, at_header = LAYOUT[kind]
    start, end = reservation
    header_at = (end if at_header < 0 else start) + at_header
    cmdline_at = (end if at_cmdline < 0 else start) + at_cmdline
    notes = [note_address(c) for c in cpus]
    if kind == "file":
        notes.append(VMCOREINFO)
        line = f"elfcorehdr={header_at:#x} {cmdline}"
    else:
        line = f"{cmdline} elfcorehdr={header_at // 1024}K"
    header = elf_core_header(sorted(ram), notes)
    write_kcore(root, reservation, {cmdline_at: line.encode() + b"\0",
                                    header_at: header}, fresh=fresh)
    return header_at


def write_cpu_notes(root: Path, cpus: Iterable[int]) -> None:
    """sys/devices/system/cpu/cpuN/crash_notes for each CPU (the kernel's per-CPU notes)."""
    for cpu in cpus:
        directory = root / f"sys/devices/system/cpu/cpu{cpu}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "crash_notes").write_text(f"{note_address(cpu):x}\n")
