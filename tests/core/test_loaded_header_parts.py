"""The pieces of loaded_header.py one by one: the ELF checks, the command line's bounds,
the arithmetic of ranges, and every text a user reads."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from kdumpd.fakes import fakekcore
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
    _unfixable,
    compare,
    device_tree_span,
    find_cmdlines,
    header_address,
    memparse,
    read_header,
    without_elfcorehdr,
)
from kdumpd.skip_lines import SkipLines

RES = (0x1000000, 0x1100000)  # 1 MiB reservation


def kcore(tmp_path: Path, contents: dict[int, bytes]) -> Kcore:
    fakekcore.write_kcore(tmp_path, RES, contents, fresh=True)
    return Kcore(os.open(tmp_path / "proc/kcore", os.O_RDONLY))


def host_tree(root: Path, ram: list[tuple[int, int]]) -> None:
    """/proc/iomem with ``ram`` and the reservation RES, and one present CPU with its
    crash_notes."""
    (root / "proc").mkdir(parents=True)
    (root / "proc/iomem").write_text(
        "".join(f"{a:08x}-{b - 1:08x} : System RAM\n" for a, b in ram)
        + f"{RES[0]:08x}-{RES[1] - 1:08x} : Crash kernel\n")
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/present").write_text("0\n")
    fakekcore.write_cpu_notes(root, range(1))


def elf(*, magic: bytes = b"\x7fELF", klass: int = 2, e_type: int = ET_CORE,
        phoff: int = ELF_HEADER.size, phentsize: int = PHDR.size, phnum: int = 1) -> bytes:
    return ELF_HEADER.pack(magic + bytes([klass, 1, 1]) + bytes(9), e_type, 62, 1, 0,
                           phoff, 0, 0, ELF_HEADER.size, phentsize, phnum, 0, 0, 0)


def test_the_json_document_has_every_key_and_inclusive_ends() -> None:
    check = HeaderCheck(STALE, "why", 0x6F000000, ((0x100, 0x200),), ((0x300, 0x400),), (2,),
                        "elfcorehdr=0x6f000000 x", 0.12345, 3, ((0x500, 0x600),),
                        "no load can")
    assert check.as_dict() == {
        "verdict": "stale", "why": "why", "header_address": 0x6F000000,
        "ranges_missing": [[0x100, 0x1FF]], "ranges_extra": [[0x300, 0x3FF]],
        "cpus_missing": [2], "loaded_cmdline": "elfcorehdr=0x6f000000 x", "read_s": 0.123,
        "header_loads": [[0x500, 0x5FF]], "unfixable": "no load can"}
    assert check.line() == "STALE: why (no kexec_load can mend it: no load can)"
    assert replace(check, unfixable="").line() == "STALE: why"
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
    label = "elfcorehdr=0x5000 root=LABEL=caf\u00e9\tquiet"
    core = kcore(tmp_path, {
        RES[0]: first,
        RES[0] + 0x100: b"\x01elfcorehdr=0x2000 a\0",  # inside a word: not the parameter
        RES[0] + 0x200: b"elfcorehdr=0x3000 \x7f\0",  # any byte but NUL: a command line
        RES[0] + 0x300: label.encode() + b"\0",  # a tab and a UTF-8 label (issue: a
        # live -s command line with them must not be overlooked)
        RES[0] + 0x400: b"\0elfcorehdr=0x6000 " + b"a" * 5000,  # no end in reach
        RES[1] - len(last): last,  # at the very end: no NUL needed
    })
    assert find_cmdlines(core, (RES,)) == [
        "elfcorehdr=0x1000 root=/dev/vda", "elfcorehdr=0x3000 \x7f", label,
        "x elfcorehdr=16K ~"]


def test_a_live_command_line_that_cannot_be_followed_blocks_a_lingering_verdict(
    tmp_path: Path,
) -> None:
    # The reviewer's case: a lingering, current -c header, and the live -s command line
    # whose header cannot be read: never "current" on the lingering one's word.
    from kdumpd.loaded_header import _judge

    ram = [(0x100000, RES[0]), (RES[1], 0x80000000)]
    host_tree(tmp_path, ram)
    old = RES[0] + 0x1000
    fakekcore.write_kcore(tmp_path, RES, {
        RES[0] + 0x10: f"a elfcorehdr={old // 1024}K\0".encode(),
        RES[0] + 0x100: f"elfcorehdr={RES[0] + 0x8000:#x} root=LABEL=caf\u00e9\0".encode(),
        old: fakekcore.elf_core_header(ram, [fakekcore.note_address(0)])}, fresh=True)
    check = _judge(tmp_path)
    assert check.verdict == UNKNOWN and check.loaded_cmdline is None
    assert check.why == (f"no ELF core header at {RES[0] + 0x8000:#x} (elfcorehdr="
                         f"{RES[0] + 0x8000:#x} of a command line in the reservation: which "
                         "image is loaded cannot be told)")


def fdt_prop(value: bytes, nameoff: int) -> bytes:
    """A flattened device tree property: FDT_PROP, length, name offset, value."""
    return (b"\0\0\0\x03" + len(value).to_bytes(4, "big") + nameoff.to_bytes(4, "big")
            + value)


@pytest.mark.parametrize("nameoff", [0x1B4, 0x62, 0x10203, 0x0])
def test_a_command_line_in_a_device_tree_property_starts_after_its_header(
    tmp_path: Path, nameoff: int,
) -> None:
    """powerpc: the dump kernel's bootargs in the FDT kexec-tools loaded; the name offset's
    bytes (0x62 is "b") are not part of the command line."""
    line = b"console=hvc0 nr_cpus=1 elfcorehdr=565820K\0"
    core = kcore(tmp_path, {RES[0] + 0x40: fdt_prop(line, nameoff)})
    assert find_cmdlines(core, (RES,)) == ["console=hvc0 nr_cpus=1 elfcorehdr=565820K"]


def test_bytes_before_a_command_line_that_are_no_property_header_are_kept(
    tmp_path: Path,
) -> None:
    line = b"console=hvc0 elfcorehdr=565820K\0"
    wrong_length = b"\0\0\0\x03" + (len(line) + 1).to_bytes(4, "big") + b"\0\0\x01b"
    not_a_prop = b"\0\0\0\x02" + len(line).to_bytes(4, "big") + b"\0\0\x01c"
    core = kcore(tmp_path, {RES[0] + 0x40: wrong_length + line,
                            RES[0] + 0x400: not_a_prop + line})
    assert find_cmdlines(core, (RES,)) == ["\x01bconsole=hvc0 elfcorehdr=565820K",
                                           "\x01cconsole=hvc0 elfcorehdr=565820K"]


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
    assert without_elfcorehdr("a elfcorehdr=0x1 b") == "a b"


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


def test_cpu_lists_as_the_kernel_writes_them() -> None:
    from kdumpd.loaded_header import parse_cpu_list

    assert parse_cpu_list("0-3,6\n") == [0, 1, 2, 3, 6]
    assert parse_cpu_list("0,,2") == [0, 2] and parse_cpu_list("") == []
    assert len(parse_cpu_list("0-65536")) == 65537  # the widest range taken
    for bad in ("5-3", "0-65537", "x"):
        with pytest.raises(ValueError):
            parse_cpu_list(bad)
    with pytest.raises(ValueError, match="not a CPU range: '5-3'"):
        parse_cpu_list("5-3")


@pytest.mark.parametrize(("iomem", "why"), [
    ("00001000-0009fbff : System RAM\n",
     "no crash kernel reservation in /proc/iomem (boot with crashkernel=)"),
    ("00000000-00000000 : System RAM\n00000000-00000000 : Crash kernel\n",
     "/proc/iomem shows no addresses (needs CAP_SYS_ADMIN)"),
])
def test_the_hosts_side_says_exactly_what_is_missing(tmp_path: Path, iomem: str,
                                                    why: str) -> None:
    from kdumpd.loaded_header import read_host

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/iomem").write_text(iomem)
    with pytest.raises(Unreadable) as caught:
        read_host(tmp_path)
    assert str(caught.value) == why


def test_a_bad_cpu_list_is_named_with_its_file(tmp_path: Path) -> None:
    from kdumpd.loaded_header import read_host

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/iomem").write_text("00100000-7fffffff : System RAM\n"
                                        "  01000000-10ffffff : Crash kernel\n"
                                        "\xff not ascii : System RAM\n")
    cpus = tmp_path / "sys/devices/system/cpu"
    cpus.mkdir(parents=True)
    (cpus / "present").write_text("5-3\n")
    with pytest.raises(Unreadable) as caught:
        read_host(tmp_path)
    assert str(caught.value) == f"{cpus}/present: not a CPU range: '5-3'"
    (cpus / "present").write_text("0-1\n")
    fakekcore.write_cpu_notes(tmp_path, range(2))
    host = read_host(tmp_path)
    assert host.ram == ((0x100000, 0x80000000),) and host.reserved == ((0x1000000, 0x11000000),)
    assert host.cpu_notes == {0: fakekcore.note_address(0), 1: fakekcore.note_address(1)}


@pytest.mark.parametrize("head", [
    b"ELF\x7f" + bytes(60),  # not the magic
    elf(klass=1),  # ELF32
    b"\x7fELF\x02\x02" + bytes(58),  # big-endian
    elf(phentsize=PHDR.size + 8),
])
def test_kcore_that_is_not_a_kernels_core_file_is_refused(tmp_path: Path,
                                                         head: bytes) -> None:
    path = tmp_path / "kcore"
    path.write_bytes(head)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(Unreadable):
            Kcore(fd)
    finally:
        os.close(fd)


def test_kcore_maps_only_loads_with_a_physical_address_and_bytes(tmp_path: Path) -> None:
    table = (PHDR.pack(4, 0, 0x1000, 0, 0x2000, 0x100, 0x100, 0)  # a note: not memory
             + PHDR.pack(1, 7, 0x3000, 0, (1 << 64) - 1, 0x100, 0x100, 0)  # no paddr
             + PHDR.pack(1, 7, 0x3000, 0, 0x5000, 0, 0x100, 0)  # no bytes in the file
             + PHDR.pack(1, 7, 0x3000, 0, 0x9000, 0x100, 0x100, 0))
    path = tmp_path / "kcore"
    path.write_bytes(elf(phnum=4) + table + bytes(0x3000 - 64 - len(table)) + b"x" * 0x100)
    fd = os.open(path, os.O_RDONLY)
    try:
        core = Kcore(fd)
        assert core.read(0x9000, 4) == b"xxxx"
        for address in (0x2000, (1 << 64) - 1 - 8, 0x5000):
            with pytest.raises(Unreadable):
                core.read(address, 4)
    finally:
        os.close(fd)


def test_headers_that_disagree_are_named_with_their_addresses(tmp_path: Path) -> None:
    from kdumpd.loaded_header import _judge

    ram = [(0x100000, RES[0]), (RES[1], 0x80000000), (0x100000000, 0x120000000)]
    host_tree(tmp_path, ram)
    notes = [fakekcore.note_address(0)]
    old, new = RES[0] + 0x1000, RES[0] + 0x2000
    fakekcore.write_kcore(tmp_path, RES, {
        RES[0] + 0x10: f"a elfcorehdr={old // 1024}K\0".encode(),
        RES[0] + 0x100: f"elfcorehdr={new:#x} b\0".encode(),
        old: fakekcore.elf_core_header(ram[:2], notes),
        new: fakekcore.elf_core_header(ram, notes)}, fresh=True)
    check = _judge(tmp_path)
    assert check.verdict == UNKNOWN and check.candidates == 2
    assert check.why == (f"2 command lines in the reservation point at headers that disagree "
                         f"({old:#x}: stale, {new:#x}: current): an older load lingers")
    # The same headers behind both lines: one answer, no address, no command line (they
    # differ), and the PT_LOADs both have.
    fakekcore.write_kcore(tmp_path, RES, {old: fakekcore.elf_core_header(ram, notes)})
    agreed = _judge(tmp_path)
    assert (agreed.verdict, agreed.header_address, agreed.loaded_cmdline) == (
        CURRENT, None, None)
    assert agreed.header_loads == tuple(sorted(ram))
    fakekcore.write_kcore(tmp_path, RES, {old: fakekcore.elf_core_header(
        [*ram[:2], (0x100000000, 0x110000000), (0x110000000, 0x120000000)], notes)})
    split = _judge(tmp_path)  # the same cover in other pieces: current, PT_LOADs unknown
    assert split.verdict == CURRENT and split.header_loads == ()


def test_verify_says_what_kexec_crash_loaded_said(tmp_path: Path) -> None:
    from kdumpd.loaded_header import UNLOADED, verify

    assert verify(tmp_path, arch="x86_64") == HeaderCheck(
        UNKNOWN, "kexec_crash_loaded cannot be read")
    (tmp_path / "sys/kernel").mkdir(parents=True)
    (tmp_path / "sys/kernel/kexec_crash_loaded").write_text("0\n")
    assert verify(tmp_path, arch="x86_64") == HeaderCheck(
        UNLOADED, "kexec_crash_loaded reads 0: no crash kernel loaded")


def test_a_line_during_kdumpds_own_load_pairs_with_no_later_event() -> None:
    # The reviewer's case: a reader's lines during our load, then a hotplug 1 s after the
    # load ended: that event is not a skipped update (where the header cannot be read,
    # pairing it would cost a reload).
    lines = SkipLines(pair_s=2.0)
    assert not any(lines.line(t, loading=True) for t in (0.5, 1.0, 1.9))
    assert not lines.event(3.0) and (lines.skips, lines.reads) == (0, 3)
    assert lines.line(3.5, loading=True)  # an event near: a skip, loading or not


def test_kcore_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    from kdumpd.loaded_header import verify

    (tmp_path / "sys/kernel").mkdir(parents=True)
    (tmp_path / "sys/kernel/kexec_crash_loaded").write_text("1\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/iomem").write_text("00100000-7fffffff : System RAM\n"
                                        "  01000000-10ffffff : Crash kernel\n")
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/present").write_text("\n")
    os.mkfifo(tmp_path / "proc/kcore")
    assert verify(tmp_path, arch="x86_64").why == "/proc/kcore is not a regular file"


def test_a_device_tree_property_at_the_reservations_start_or_starting_with_the_parameter(
    tmp_path: Path,
) -> None:
    """The property's header as the first bytes read (its value at offset 12), and a
    value that begins with elfcorehdr= (as kexec_file_load's command lines do)."""
    first = b"elfcorehdr=0x7e000000 console=hvc0\0"
    second = b"console=hvc0 elfcorehdr=16K\0"
    core = kcore(tmp_path, {RES[0]: fdt_prop(second, 0x1B4),
                            RES[0] + 0x400: fdt_prop(first, 0x1B4)})
    assert find_cmdlines(core, (RES,)) == ["console=hvc0 elfcorehdr=16K",
                                           "elfcorehdr=0x7e000000 console=hvc0"]


@pytest.mark.parametrize(("base", "size", "span"), [
    ((0x20000000).to_bytes(8, "big"), (0x20000000).to_bytes(8, "big"),
     ((0x20000000, 0x40000000),)),
    ((0x20000000).to_bytes(8, "big"), (0x20000000).to_bytes(4, "big"), ()),
    ((0x20000000).to_bytes(4, "big"), (0x20000000).to_bytes(8, "big"), ()),
    ((0x20000000).to_bytes(8, "big"), bytes(8), ()),  # nothing reserved
    (None, (0x20000000).to_bytes(8, "big"), ()),
    ((0x20000000).to_bytes(8, "big"), None, ()),
])
def test_the_device_tree_reservation_is_two_big_endian_cells_of_8_bytes(
    base: bytes | None, size: bytes | None, span: tuple[tuple[int, int], ...],
) -> None:
    assert device_tree_span(base, size) == span


def test_ram_above_the_limit_is_not_unfixable_beside_a_range_that_is_not_ram() -> None:
    host = Host(((0, 0x80000000), (0x80000000, 0x90000000)), (RES,), {}, 0x80000000)
    assert _unfixable(host, ((0x80000000, 0x90000000),), (), ()).startswith("kexec-tools")
    assert _unfixable(host, ((0x80000000, 0x90000000),), ((0xA0000000, 0xB0000000),),
                      ()) == ""
    assert _unfixable(host, ((0x80000000, 0x90000000),), (), (1,)) == ""
    assert _unfixable(host, ((0x7F000000, 0x90000000),), (), ()) == ""
    assert _unfixable(replace(host, memory_limit=None), ((0x80000000, 0x90000000),), (),
                      ()) == ""
