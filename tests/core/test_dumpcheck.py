"""The VM tests' dump check (tests/vm/dumpcheck.py) on synthetic vmcores: it must see
missing memory and missing CPUs, or the end-to-end proof by dump proves nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.vm import dumpcheck as dc

IOMEM = """00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-7ffdffff : System RAM
  01000000-01ffffff : Kernel code
  6f000000-7effffff : Crash kernel
100000000-11fffffff : System RAM
"""


def read_vmcore(data: bytes, tmp_path: Path) -> dict[str, object]:
    """Run the guest's reader on ``data`` (as /proc/vmcore) in a real interpreter."""
    core = tmp_path / "vmcore"
    core.write_bytes(data)
    # As the guest runs it on a saved dump: the file as its argument.
    done = subprocess.run([sys.executable, "-c", dc.VMCORE_READER, str(core)],
                          capture_output=True, text=True, timeout=30, check=True)
    return dc.parse_reader_output(done.stdout)


def test_a_dump_covering_all_ram_and_cpus_passes(tmp_path: Path) -> None:
    ram, reserved = dc.parse_iomem(IOMEM)
    assert reserved == [(0x6F000000, 0x7F000000)]
    before = dc.Before(ram, reserved, dc.count_cpus("0-2"))
    loads = [(0x1000, 0x9FC00), (0x100000, 0x6F000000), (0x7F000000, 0x7FFE0000),
             (0x100000000, 0x120000000)]
    verdict = dc.compare(before, read_vmcore(dc.elf_vmcore(loads, 3), tmp_path))
    assert verdict.ok, verdict.describe()


def test_a_stale_dump_misses_the_hot_added_dimm_and_cpu(tmp_path: Path) -> None:
    ram, reserved = dc.parse_iomem(IOMEM)
    before = dc.Before(ram, reserved, dc.count_cpus("0-2"))
    stale = [(0x1000, 0x9FC00), (0x100000, 0x6F000000), (0x7F000000, 0x7FFE0000)]
    verdict = dc.compare(before, read_vmcore(dc.elf_vmcore(stale, 2), tmp_path))
    assert not verdict.ok
    assert verdict.missing == [(0x100000000, 0x120000000)]
    assert (verdict.cpus_expected, verdict.cpus_in_dump) == (3, 2)
    assert "100000000-11fffffff" in verdict.describe()


def test_cpu_lists_count_like_the_kernel_writes_them() -> None:
    assert dc.count_cpus("0") == 1
    assert dc.count_cpus("0-3,6,8-9\n") == 7


def test_reader_output_without_a_result_is_an_error() -> None:
    try:
        dc.parse_reader_output("Traceback ...")
    except ValueError as error:
        assert "no VMCORE line" in str(error)
    else:
        raise AssertionError("accepted output without a result")


def test_the_summary_line_names_ranges_cpus_and_the_verdict(tmp_path: Path) -> None:
    ram, reserved = dc.parse_iomem(IOMEM)
    before = dc.Before(ram, reserved, 3)
    dump = read_vmcore(dc.elf_vmcore([(0x100000, 0x6F000000)], 2), tmp_path)
    line = dc.summary(before, dump, dc.compare(before, dump))
    assert "System RAM above 1 MiB: 100000-7ffdffff, 100000000-11fffffff" in line
    assert "reservation 6f000000-7effffff" in line
    assert "vmcore PT_LOAD: 100000-6effffff" in line
    assert "CPUs online 3, NT_PRSTATUS 2" in line and "INCOMPLETE" in line


def test_the_kdump_compressed_reader_gives_the_1st_bitmaps_ranges_and_the_cpus(
        tmp_path: Path) -> None:
    """Debian's kdump-tools saves this format; its 1st bitmap says which memory the
    dump kernel's vmcore covered, whatever pages the dump level then left out."""
    core = tmp_path / "dump"
    core.write_bytes(dc.kdump_compressed([(0x100, 0x7FFE0), (0x100000, 0x120000)], 3,
                                         max_pfn=0x120000))
    done = subprocess.run([sys.executable, "-c", dc.KDUMP_READER, str(core)],
                          capture_output=True, text=True, timeout=60, check=True)
    dump = dc.parse_reader_output(done.stdout)
    assert dump == {"loads": [[0x100000, 0x7FFE0000], [0x100000000, 0x120000000]],
                    "prstatus": 3}
    ram, reserved = dc.parse_iomem(IOMEM)
    assert dc.compare(dc.Before(ram, reserved, 3), dump).ok
    stale = tmp_path / "stale"
    stale.write_bytes(dc.kdump_compressed([(0x100, 0x7FFE0)], 2, max_pfn=0x80000))
    done = subprocess.run([sys.executable, "-c", dc.KDUMP_READER, str(stale)],
                          capture_output=True, text=True, timeout=60, check=True)
    verdict = dc.compare(dc.Before(ram, reserved, 3), dc.parse_reader_output(done.stdout))
    assert (0x100000000, 0x120000000) in verdict.missing and verdict.cpus_in_dump == 2


def test_a_dump_with_a_removed_dimms_range_is_extra_and_fails(tmp_path: Path) -> None:
    # After a DIMM hot-remove on x86 the kernel-updated header kept the range: the first
    # kernel's /proc/iomem no longer lists it, the vmcore still has a PT_LOAD for it.
    removed = IOMEM.replace("100000000-11fffffff : System RAM\n", "")
    ram, reserved = dc.parse_iomem(removed)
    before = dc.Before(ram, reserved, 3)
    loads = [(0x1000, 0x9FC00), (0x100000, 0x6F000000), (0x7F000000, 0x7FFE0000),
             (0x100000000, 0x120000000)]
    dump = read_vmcore(dc.elf_vmcore(loads, 3), tmp_path)
    verdict = dc.compare(before, dump)
    assert not verdict.ok and verdict.missing == []
    assert verdict.extra == ((0x100000000, 0x120000000),)
    assert "EXTRA ranges the first kernel did not have: 100000000-11fffffff" \
        in verdict.describe()
    assert "INCOMPLETE" in dc.summary(before, dump, verdict)


def test_nested_driver_managed_ram_counts_as_ram() -> None:
    ram, _ = dc.parse_iomem(IOMEM + "180000000-1ffffffff : dax0.0\n"
                                    "  180000000-1ffffffff : System RAM (kmem)\n")
    assert (0x180000000, 0x200000000) in ram


def test_the_kdump_reader_finds_single_pages_and_a_range_up_to_the_bitmaps_end(
        tmp_path: Path) -> None:
    """The reader takes the bitmap's edges as a big integer's (a 66 GiB guest has 17
    million page frames): a one-page range, adjacent ranges and the last bit still count."""
    core = tmp_path / "dump"
    # One bitmap block is 32768 page frames: 0x7000-0x8000 ends on the bitmap's last bit.
    core.write_bytes(dc.kdump_compressed([(0x1, 0x2), (0x8, 0x10), (0x10, 0x11),
                                          (0x7000, 0x8000)], 1, max_pfn=0x8000))
    done = subprocess.run([sys.executable, "-c", dc.KDUMP_READER, str(core)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert dc.parse_reader_output(done.stdout) == {
        "loads": [[0x1000, 0x2000], [0x8000, 0x11000], [0x7000000, 0x8000000]],
        "prstatus": 1}
