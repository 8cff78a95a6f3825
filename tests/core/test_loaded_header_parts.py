"""The pieces of loaded_header.py one by one: the ELF checks, the command line's bounds,
the arithmetic of ranges, and every text a user reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdumpd import fakekcore
from kdumpd.loaded_header import (
    CURRENT,
    ELF_HEADER,
    ET_CORE,
    PHDR,
    STALE,
    UNKNOWN,
    Header,
    HeaderCheck,
    Host,
    Kcore,
    Unreadable,
    _merge,
    _os_reason,
    _subtract,
    _without_elfcorehdr,
    compare,
    find_cmdlines,
    header_address,
    memparse,
    read_header,
)
from kdumpd.skip_lines import SkipLines

RES = (0x1000000, 0x1100000)  # 1 MiB reservation


def kcore(tmp_path: Path, contents: dict[int, bytes]) -> Kcore:
    fakekcore.write_kcore(tmp_path, RES, contents, fresh=True)
    return Kcore(os.open(tmp_path / "proc/kcore", os.O_RDONLY))


def elf(*, magic: bytes = b"\x7fELF", klass: int = 2, e_type: int = ET_CORE,
        phoff: int = ELF_HEADER.size, phentsize: int = PHDR.size, phnum: int = 1) -> bytes:
    return ELF_HEADER.pack(magic + bytes([klass, 1, 1]) + bytes(9), e_type, 62, 1, 0,
                           phoff, 0, 0, ELF_HEADER.size, phentsize, phnum, 0, 0, 0)


def test_the_json_document_has_every_key_and_inclusive_ends() -> None:
    check = HeaderCheck(STALE, "why", 0x6F000000, ((0x100, 0x200),), ((0x300, 0x400),), (2,),
                        "elfcorehdr=0x6f000000 x", 0.12345, 3, ((0x500, 0x600),))
    assert check.as_dict() == {
        "verdict": "stale", "why": "why", "header_address": 0x6F000000,
        "ranges_missing": [[0x100, 0x1FF]], "ranges_extra": [[0x300, 0x3FF]],
        "cpus_missing": [2], "loaded_cmdline": "elfcorehdr=0x6f000000 x", "read_s": 0.123,
        "header_loads": [[0x500, 0x5FF]]}
    assert check.line() == "STALE: why"
    assert HeaderCheck(CURRENT, "fine").line() == "current (fine)"


@pytest.mark.parametrize(("header", "why"), [
    (elf(magic=b"\x7fELG"), "no ELF core header"),
    (elf(klass=1), "no ELF core header"),
    (elf(e_type=2), "no ELF core header"),
    (elf(phentsize=32), "unexpected shape"),
    (elf(phnum=0), "unexpected shape"),
    (elf(phoff=(1 << 20) + 1), "unexpected shape"),
])
def test_a_header_that_is_not_a_crash_header_is_refused(tmp_path: Path, header: bytes,
                                                        why: str) -> None:
    core = kcore(tmp_path, {RES[0]: header + PHDR.pack(4, 0, 1, 0, 1, 0, 0, 0)})
    with pytest.raises(Unreadable, match=why):
        read_header(core, RES[0])


def test_the_header_shape_limits_are_inclusive(tmp_path: Path) -> None:
    one = PHDR.pack(1, 7, 0, 0, 0x200000, 0x1000, 0x1000, 0)
    far = elf(phoff=1 << 20)  # the table 1 MiB past the header: still accepted
    core = kcore(tmp_path, {RES[0]: elf(phnum=1) + one, RES[0] + 0x1000: far})
    assert read_header(core, RES[0]) == Header(((0x200000, 0x201000),), frozenset())
    with pytest.raises(Unreadable, match="does not map"):  # shape fine, table past the map
        read_header(core, RES[0] + 0x1000)


def test_kcore_reads_only_what_a_segment_maps(tmp_path: Path) -> None:
    core = kcore(tmp_path, {RES[0]: b"abcd"})
    assert core.read(RES[0], 4) == b"abcd"
    assert core.read(RES[1] - 4, 4) == bytes(4)
    for address, size in ((RES[0] - 1, 4), (RES[1] - 3, 4), (RES[1], 1)):
        with pytest.raises(Unreadable, match=f"does not map {size} bytes at {address:#x}"):
            core.read(address, size)


def test_command_lines_at_the_reservations_edges_and_in_binary_data(tmp_path: Path) -> None:
    first = b"elfcorehdr=0x1000 root=/dev/vda\0"
    last = b"x elfcorehdr=16K ~"
    core = kcore(tmp_path, {
        RES[0]: first,
        RES[0] + 0x100: b"\x01elfcorehdr=0x2000 a\0",  # binary before: still a string
        RES[0] + 0x200: b"elfcorehdr=0x3000 \x7f\0",  # DEL is not printable: not one
        RES[0] + 0x300: b"\0elfcorehdr=0x4000 b\x05",  # not NUL-terminated: not one
        RES[1] - len(last): last,  # at the very end: no NUL needed
    })
    assert find_cmdlines(core, (RES,)) == [
        "elfcorehdr=0x1000 root=/dev/vda", "elfcorehdr=0x2000 a", "x elfcorehdr=16K ~"]


def test_every_match_in_a_chunk_is_found_in_order(tmp_path: Path) -> None:
    core = kcore(tmp_path, {RES[0] + 0x10: b"elfcorehdr=0x1\0",
                            RES[0] + 0x20: b"elfcorehdr=0x2\0"})
    assert find_cmdlines(core, (RES,)) == ["elfcorehdr=0x1", "elfcorehdr=0x2"]


def test_memparse_octal_and_suffixes() -> None:
    assert memparse("07") == 7 and memparse("0") == 0 and memparse("017K") == 15 << 10
    assert memparse("2E") == 2 << 60 and memparse("3p") == 3 << 50
    with pytest.raises(ValueError, match="no elfcorehdr= in the command line"):
        header_address("root=/dev/vda")


def test_ranges_merge_touching_and_subtract_exactly() -> None:
    assert _merge([(5, 10), (0, 5), (20, 20), (12, 15)]) == [(0, 10), (12, 15)]
    assert _subtract([(0, 100)], [(0, 10), (50, 60), (90, 100)]) == [(10, 50), (60, 90)]
    assert _subtract([(10, 20)], [(0, 10), (20, 30)]) == [(10, 20)]  # touching: nothing off
    assert _subtract([(10, 20)], [(5, 25)]) == []
    assert _subtract([(10, 20), (30, 40)], [(15, 35)]) == [(10, 15), (35, 40)]


def test_ranges_ending_at_one_mib_are_below_it() -> None:
    host = Host(((0x1000, 1 << 20), (1 << 20, 2 << 20)), (), {})
    header = Header(((0, 1 << 20), (3 << 20, 4 << 20)), frozenset())
    assert compare(header, host) == (((1 << 20, 2 << 20),), ((3 << 20, 4 << 20),), ())


def test_the_reasons_a_user_reads() -> None:
    assert _os_reason(PermissionError(13, "Permission denied", "/proc/kcore")) == (
        "/proc/kcore: permission denied (needs root with CAP_SYS_RAWIO; the kernel's "
        "lockdown=confidentiality refuses it)")
    assert _os_reason(FileNotFoundError(2, "No such file")) == (
        "/proc/kcore: not there (hidden by the sandbox, or no CONFIG_PROC_KCORE)")
    assert _os_reason(OSError(5, "Input/output error", "/x")) == "/x: Input/output error"
    assert _os_reason(OSError("odd")) == "/proc/kcore: odd"
    assert _without_elfcorehdr("a elfcorehdr=0x1 b") == "a b"


def test_skip_lines_pair_at_exactly_the_window_and_count_once() -> None:
    lines = SkipLines(pair_s=2.0)
    lines.event(10.0)
    assert lines.line(12.0) and (lines.skips, lines.reads) == (1, 0)
    assert not lines.line(12.5) and (lines.skips, lines.reads) == (1, 1)
    assert lines.event(14.5) and (lines.skips, lines.reads) == (2, 0)  # 2.0 s later
    assert not lines.event(14.6)  # that line is paired already
    lines.load_started()
    assert not lines.line(14.7) and (lines.skips, lines.reads) == (2, 1)


def test_a_check_with_a_bad_elfcorehdr_or_address_names_it(tmp_path: Path) -> None:
    from kdumpd.loaded_header import _check_one

    core = kcore(tmp_path, {})
    host = Host(((0, 1 << 32),), (RES,), {})
    bad = _check_one(core, host, "root=/x elfcorehdr=junk")
    assert bad == HeaderCheck(UNKNOWN, "the command line's elfcorehdr=: not a memory size: "
                              "'junk'", loaded_cmdline="root=/x elfcorehdr=junk")
    at_end = _check_one(core, host, f"elfcorehdr={RES[1]:#x}")
    assert at_end.why == f"elfcorehdr={RES[1]:#x} lies outside the reservation"
    at_start = _check_one(core, host, f"elfcorehdr={RES[0]:#x}")
    assert at_start.why == f"no ELF core header at {RES[0]:#x}"  # inside: read, not refused
    assert at_start.header_address == RES[0] and at_start.loaded_cmdline is not None
    bad_shape = kcore(tmp_path / "b", {RES[0]: elf(phnum=0)})
    assert _check_one(bad_shape, host, f"elfcorehdr={RES[0]:#x}").why == (
        f"the ELF core header at {RES[0]:#x} has an unexpected shape")
