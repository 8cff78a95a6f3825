"""The pseries guest's /proc/vmcore reader (tests/vm/pseries.py): it reads the crash
kernel's vmcore with busybox ``od``; here a fake console answers ``od`` from a synthetic
vmcore (dumpcheck.elf_vmcore)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from tests.vm import dumpcheck as dc
from tests.vm import pseries
from tests.vm.guest import Result


@dataclass
class OdConsole:
    data: bytes
    commands: list[str]

    def run(self, script: str, timeout: float = 60.0, check: bool = True) -> Result:
        self.commands.append(script)
        match = re.fullmatch(r"od -A n -t x1 -v -j (\d+) -N (\d+) /proc/vmcore", script)
        assert match, script
        offset, size = int(match.group(1)), int(match.group(2))
        chunk = self.data[offset:offset + size]
        lines = [" " + " ".join(f"{b:02x}" for b in chunk[i:i + 16])
                 for i in range(0, len(chunk), 16)]
        return Result(0, "\n".join(lines) + "\n")


@dataclass
class FakeVm:
    sh: OdConsole


def test_the_vmcore_read_with_od_gives_its_loads_and_cpus() -> None:
    loads = [(0, 0x10000), (0x10000, 0x20000000), (0x40000000, 0x100000000)]
    vmcore = bytearray(dc.elf_vmcore(loads, 3))
    vmcore[5] = 1  # little-endian, as ppc64le's
    console = OdConsole(bytes(vmcore), [])
    dump = pseries.read_vmcore(FakeVm(console))  # type: ignore[arg-type]
    assert dump == {"loads": loads, "prstatus": 3, "ptload": True}
    before = dc.Before([(0, 0x100000000)], [(0x20000000, 0x40000000)], 3)
    assert dc.compare(before, dump).ok
    assert len(console.commands) == 3  # the ELF header, the program headers, the notes


def test_notes_are_counted_up_to_the_empty_one() -> None:
    note = b"".join(
        struct.pack("<III", 5, 8, kind) + b"CORE\0\0\0\0" + b"\0" * 8
        for kind in (1, 1, 6))
    assert pseries.count_prstatus(note + bytes(12) + note) == 2
