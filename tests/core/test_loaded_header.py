"""Reading the loaded header back (loaded_header.py) on faithful fake kcores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdumpd.fakes import fakekcore, fakesysfs
from kdumpd.loaded_header import (
    CURRENT,
    STALE,
    UNKNOWN,
    UNLOADED,
    header_address,
    memparse,
    verify,
)
from tests.core.test_cli import kdumpd, write_config

GIB = 1 << 30
# 16 MiB under 2 GiB: the guest's is 256 MiB, which a sparse fake file reads 16 times
# slower (the layout is the same; the VM scenarios read the real one).
RESERVED = (0x7E000000, 0x7F000000)
BASE_RAM = [(0x1000, 0xA0000), (0x100000, RESERVED[0]), (RESERVED[0], RESERVED[1]),
            (RESERVED[1], 0x80000000)]
DIMM = (0x100000000, 0x120000000)  # 512 MiB hot-added
CMDLINE = "BOOT_IMAGE=/vmlinuz root=/dev/vda ro reset_devices nr_cpus=1 acpi_no_memhotplug"


def tree(root: Path, *, ram: list[tuple[int, int]], cpus: range = range(2),
         extra_iomem: str = "") -> Path:
    fakesysfs.build(root, crash_hotplug="1")
    lines = ["00000000-00000fff : Reserved"]
    for start, end in ram:
        lines.append(f"{start:08x}-{end - 1:08x} : System RAM")
        if (start, end) == RESERVED:
            lines[-1] = f"  {start:08x}-{end - 1:08x} : Crash kernel"
    (root / "proc/iomem").write_text("\n".join(lines) + "\n" + extra_iomem)
    (root / "sys/devices/system/cpu/present").write_text(f"0-{cpus[-1]}\n")
    fakekcore.write_cpu_notes(root, cpus)
    return root


def header_ram(ram: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """What a loader puts in the header: RAM above 1 MiB outside the reservation."""
    return [(max(a, 1 << 20), b) for a, b in ram if b > 1 << 20 and (a, b) != RESERVED]


def load(root: Path, kind: str, ram: list[tuple[int, int]], cpus: range = range(2),
         **kwargs: bool) -> int:
    return fakekcore.load_image(root, RESERVED, kind, CMDLINE, ram=header_ram(ram),
                                cpus=cpus, **kwargs)


def test_a_file_loaded_image_of_the_hardware_now_is_current(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    address = load(root, "file", BASE_RAM, fresh=True)
    check = verify(root, arch="x86_64")
    assert check.verdict == CURRENT, check.why
    assert check.header_address == address == RESERVED[0]  # as -s lays it in the guest
    assert check.loaded_cmdline == f"elfcorehdr={address:#x} {CMDLINE}"
    assert check.ranges_missing == check.ranges_extra == check.cpus_missing == ()


def test_a_hot_added_dimm_missing_from_a_plain_image_is_stale_with_its_range(
    root: Path,
) -> None:
    tree(root, ram=[*BASE_RAM, DIMM])
    address = load(root, "plain", BASE_RAM, fresh=True)  # loaded before the DIMM
    check = verify(root, arch="x86_64")
    assert check.verdict == STALE
    assert check.ranges_missing == (DIMM,) and check.ranges_extra == ()
    assert check.loaded_cmdline == f"{CMDLINE} elfcorehdr={address // 1024}K"
    doc = check.as_dict()
    assert doc["ranges_missing"] == [[DIMM[0], DIMM[1] - 1]]  # inclusive in JSON
    assert json.loads(json.dumps(doc)) == doc
    assert "RAM missing 0x100000000-0x11fffffff" in check.why


def test_on_x86_a_removed_dimm_the_update_kept_is_an_extra_range(root: Path) -> None:
    tree(root, ram=BASE_RAM)  # the DIMM is gone from /proc/iomem...
    load(root, "file", [*BASE_RAM, DIMM], fresh=True)  # ...not from the header
    check = verify(root, arch="x86_64")
    assert check.verdict == STALE
    assert check.ranges_extra == (DIMM,) and check.ranges_missing == ()


def test_a_cpu_hot_added_after_a_plain_load_has_no_note(root: Path) -> None:
    tree(root, ram=BASE_RAM, cpus=range(3))
    load(root, "plain", BASE_RAM, cpus=range(2), fresh=True)
    check = verify(root, arch="x86_64")
    assert check.verdict == STALE and check.cpus_missing == (2,)
    assert check.why == "CPUs without a note 2"


def test_driver_managed_ram_counts_as_ram(root: Path) -> None:
    kmem = (0x140000000, 0x150000000)
    tree(root, ram=BASE_RAM, extra_iomem=(
        "140000000-14fffffff : dax0.0\n  140000000-14fffffff : System RAM (kmem)\n"))
    load(root, "file", BASE_RAM, fresh=True)
    check = verify(root, arch="x86_64")
    assert check.verdict == STALE and check.ranges_missing == (kmem,)


def test_an_older_header_that_lingers_and_agrees_gives_one_answer(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    load(root, "plain", BASE_RAM, fresh=True)
    address = load(root, "file", BASE_RAM)  # the -c image's bytes stay where they were
    check = verify(root, arch="x86_64")
    assert check.verdict == CURRENT and check.candidates == 2
    assert check.header_address is None and address  # which one is live is not known
    assert check.why.endswith("(all 2 headers found in the reservation agree)")
    assert check.loaded_cmdline is not None  # both carry the same command line


def test_an_older_header_that_lingers_and_disagrees_cannot_tell(root: Path) -> None:
    tree(root, ram=[*BASE_RAM, DIMM])
    load(root, "plain", BASE_RAM, fresh=True)  # before the DIMM: stale
    load(root, "file", [*BASE_RAM, DIMM])  # the live one: current
    check = verify(root, arch="x86_64")
    assert check.verdict == UNKNOWN
    assert "point at headers that disagree" in check.why and "an older load lingers" in check.why


def test_nothing_loaded_is_unloaded_whatever_lingers(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    load(root, "file", BASE_RAM, fresh=True)
    (root / "sys/kernel/kexec_crash_loaded").write_text("0\n")
    assert verify(root, arch="x86_64").verdict == UNLOADED


@pytest.mark.parametrize(("setup", "why"), [
    (lambda r: (r / "proc/kcore").unlink(), "/proc/kcore: not there"),
    (lambda r: (r / "proc/kcore").write_text("ELF"), "not a little-endian ELF64 file"),
    (lambda r: (r / "proc/iomem").write_text("00001000-0009fbff : System RAM\n"),
     "no crash kernel reservation"),
    (lambda r: (r / "proc/iomem").write_text(
        "00000000-00000000 : System RAM\n00000000-00000000 : Crash kernel\n"),
     "shows no addresses"),
    (lambda r: fakekcore.write_kcore(r, RESERVED, {}, fresh=True),
     "no command line with elfcorehdr="),
    (lambda r: (r / "sys/devices/system/cpu/cpu1/crash_notes").write_text("garbage\n"),
     "not an address"),
])
def test_what_cannot_be_read_is_unknown_with_the_reason(root: Path, setup: object,
                                                        why: str) -> None:
    tree(root, ram=BASE_RAM)
    load(root, "file", BASE_RAM, fresh=True)
    assert callable(setup)
    setup(root)
    check = verify(root, arch="x86_64")
    assert check.verdict == UNKNOWN and why in check.why


def test_other_architectures_say_they_are_not_verified(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    load(root, "file", BASE_RAM, fresh=True)
    check = verify(root, arch="s390x")
    assert check.verdict == UNKNOWN
    assert "x86_64 and ppc64le only, not s390x" in check.why


def pseries(root: Path, ram: list[tuple[int, int]], *, limit: int | None = 0x80000000
            ) -> Path:
    """A pseries host as the guest showed it: one System RAM line per range, no "Crash
    kernel" line in /proc/iomem, the reservation and linux,memory-limit in the device tree."""
    fakesysfs.build(root, crash_hotplug="1")
    (root / "proc/iomem").write_text("".join(f"{a:08x}-{b - 1:08x} : System RAM\n"
                                             for a, b in ram))
    (root / "sys/devices/system/cpu/present").write_text("0-1\n")
    fakekcore.write_cpu_notes(root, range(2))
    chosen = root / "proc/device-tree/chosen"
    chosen.mkdir(parents=True)
    (chosen / "linux,crashkernel-base").write_bytes(RESERVED[0].to_bytes(8, "big"))
    (chosen / "linux,crashkernel-size").write_bytes(
        (RESERVED[1] - RESERVED[0]).to_bytes(8, "big"))
    if limit is not None:
        (chosen / "linux,memory-limit").write_bytes(limit.to_bytes(8, "big"))
    return root


PSERIES_RAM = [(0, 0x80000000)]
PSERIES_DIMM = [(0x80000000, 0x90000000), (0x90000000, 0xA0000000)]


def pseries_header(ram: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [span for a, b in ram for span in ((max(a, 1 << 20), min(b, RESERVED[0])),
                                              (max(a, RESERVED[1]), b)) if span[1] > span[0]]


def test_ppc64le_reads_the_reservation_from_the_device_tree_and_a_full_header_is_current(
    root: Path,
) -> None:
    pseries(root, PSERIES_RAM + PSERIES_DIMM)
    fakekcore.load_image(root, RESERVED, "plain", CMDLINE,
                         ram=pseries_header(PSERIES_RAM + PSERIES_DIMM), cpus=range(2))
    check = verify(root, arch="ppc64le")
    assert check.verdict == CURRENT, check.why
    assert check.unfixable == ""
    assert check.why == ("4 memory ranges and 2 present CPU(s) as the host has them; the dump "
                         "kernel's device tree is not read back (a plain -c image's lacks "
                         "CPUs hot-added since its load)")


def test_ppc64le_ram_above_the_memory_limit_missing_is_stale_and_no_load_can_mend_it(
    root: Path,
) -> None:
    """What kexec-tools built in the pseries guest after a DIMM: everything up to
    linux,memory-limit, nothing above it."""
    pseries(root, PSERIES_RAM + PSERIES_DIMM)
    fakekcore.load_image(root, RESERVED, "plain", CMDLINE, ram=pseries_header(PSERIES_RAM),
                         cpus=range(2))
    check = verify(root, arch="ppc64le")
    assert check.verdict == STALE
    assert check.ranges_missing == ((0x80000000, 0xA0000000),)
    assert check.unfixable.startswith("kexec-tools leaves all RAM at or above the device "
                                      "tree's linux,memory-limit (0x80000000, set at boot)")
    assert check.as_dict()["unfixable"] == check.unfixable


@pytest.mark.parametrize("limit", [None, 0, 0x90000000])
def test_ppc64le_ram_missing_below_the_limit_or_without_one_can_be_mended_by_a_load(
    root: Path, limit: int | None,
) -> None:
    pseries(root, PSERIES_RAM + PSERIES_DIMM, limit=limit)
    fakekcore.load_image(root, RESERVED, "plain", CMDLINE, ram=pseries_header(PSERIES_RAM),
                         cpus=range(2))
    check = verify(root, arch="ppc64le")
    assert check.verdict == STALE and check.unfixable == ""
    assert check.as_dict()["unfixable"] is None


def test_ppc64le_a_missing_cpu_note_is_never_put_on_the_memory_limit(root: Path) -> None:
    pseries(root, PSERIES_RAM + PSERIES_DIMM)
    fakekcore.load_image(root, RESERVED, "plain", CMDLINE, ram=pseries_header(PSERIES_RAM),
                         cpus=range(1))
    check = verify(root, arch="ppc64le")
    assert check.verdict == STALE and check.cpus_missing == (1,) and check.unfixable == ""


def test_ppc64le_without_a_device_tree_reservation_is_unknown(root: Path) -> None:
    pseries(root, PSERIES_RAM)
    (root / "proc/device-tree/chosen/linux,crashkernel-size").unlink()
    check = verify(root, arch="ppc64le")
    assert check.verdict == UNKNOWN
    assert "no crash kernel reservation in the device tree" in check.why


def test_a_header_address_outside_the_reservation_or_not_a_header_is_unknown(
    root: Path,
) -> None:
    tree(root, ram=BASE_RAM)
    fakekcore.write_kcore(root, RESERVED, {RESERVED[0] + 0x1000:
                                           b"root=/dev/vda elfcorehdr=0x1000\0"}, fresh=True)
    assert "lies outside the reservation" in verify(root, arch="x86_64").why
    fakekcore.write_kcore(root, RESERVED, {RESERVED[0] + 0x1000: (
        f"elfcorehdr={RESERVED[0] + 0x2000:#x} root=/dev/vda\0").encode()}, fresh=True)
    assert "no ELF core header at" in verify(root, arch="x86_64").why


def test_the_word_inside_binary_data_is_not_a_command_line(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    fakekcore.write_kcore(root, RESERVED, {RESERVED[0] + 0x1000:
                                           b"\x01\x02elfcorehdr=0x1000\x03"}, fresh=True)
    assert verify(root, arch="x86_64").why == "no command line with elfcorehdr= in the " \
                                                "reservation"


def test_a_match_across_two_chunks_is_found(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    header_at = RESERVED[0] + 0x400000
    line = f"x elfcorehdr={header_at:#x}\0".encode()
    at = RESERVED[0] + (1 << 20) - 5  # "elfcorehdr=" straddles the first chunk's end
    fakekcore.write_kcore(root, RESERVED, {
        at - 2: line, header_at: fakekcore.elf_core_header(
            header_ram(BASE_RAM), [fakekcore.note_address(c) for c in range(2)])},
        fresh=True)
    check = verify(root, arch="x86_64")
    assert check.verdict == CURRENT and check.candidates == 1


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 0x2000))
def test_no_content_of_the_reservation_makes_a_stale_header_current(
    tmp_path_factory: pytest.TempPathFactory, noise: bytes, offset: int
) -> None:
    # Whatever else lies in the reservation (an older image's bytes, garbage that holds
    # the word), a stale live header is never called current, and nothing raises.
    root = tmp_path_factory.mktemp("noise")
    tree(root, ram=[*BASE_RAM, DIMM])
    load(root, "plain", BASE_RAM, fresh=True)  # live, and stale: the DIMM is missing
    fakekcore.write_kcore(root, RESERVED, {
        RESERVED[0] + 0x10000 + offset: b"elfcorehdr=" + noise,
        RESERVED[0] + 0x20000 + offset: noise})
    check = verify(root, arch="x86_64")
    assert check.verdict in (STALE, UNKNOWN), check


@pytest.mark.parametrize(("text", "value"), [
    ("0x6f000000", 0x6F000000), ("2080116K", 2080116 << 10), ("512M", 512 << 20),
    ("1g", GIB), ("0", 0), ("010", 8), ("123", 123)])
def test_memparse_reads_what_the_kernel_reads(text: str, value: int) -> None:
    assert memparse(text) == value


@pytest.mark.parametrize("text", ["", "0x", "12Q", "-1", "K"])
def test_memparse_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        memparse(text)


def test_the_last_elfcorehdr_counts_and_a_size_is_skipped() -> None:
    assert header_address("elfcorehdr=0x1000 a elfcorehdr=4096@8K") == 8192
    assert header_address("a b elfcorehdr=2080116K") == 2080116 << 10
    with pytest.raises(ValueError, match="no elfcorehdr="):
        header_address("notelfcorehdr=0x1000")


def test_read_time_is_measured_on_the_injected_clock(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    load(root, "file", BASE_RAM, fresh=True)
    ticks = iter([10.0, 10.75])
    check = verify(root, arch="x86_64", clock=lambda: next(ticks))
    assert check.read_s == 0.75 and check.as_dict()["read_s"] == 0.75


def test_the_fake_kcore_is_sparse(root: Path) -> None:
    tree(root, ram=BASE_RAM)
    load(root, "file", BASE_RAM, fresh=True)
    stat = os.stat(root / "proc/kcore")
    assert stat.st_size > 16 << 20 and stat.st_blocks * 512 < 1 << 20


@pytest.mark.parametrize(("case", "status", "verdict"), [
    (("file", BASE_RAM), 0, CURRENT),
    (("plain", [*BASE_RAM, DIMM]), 1, STALE),
])
def test_kdumpd_verify_exits_by_the_verdict_and_prints_the_keys(
    tmp_path: Path, root: Path, case: tuple[str, list[tuple[int, int]]], status: int,
    verdict: str,
) -> None:
    kind, ram = case
    tree(root, ram=ram)
    load(root, kind, BASE_RAM, fresh=True)
    path = write_config(tmp_path, root)
    done = kdumpd("verify", "--json", "--config", str(path))
    assert done.returncode == status, done.stderr
    doc = json.loads(done.stdout)
    assert doc["verdict"] == verdict and set(doc) == {
        "verdict", "why", "header_address", "ranges_missing", "ranges_extra",
        "cpus_missing", "loaded_cmdline", "read_s", "header_loads", "unfixable"}
    assert sorted(tuple(x) for x in doc["header_loads"]) == sorted(
        (a, b - 1) for a, b in header_ram(BASE_RAM))
    text = kdumpd("verify", "--config", str(path)).stdout
    assert text.startswith("loaded header: ") and "loaded command line: " in text


def test_kdumpd_verify_says_unloaded_and_cannot_tell_by_exit_status(
    tmp_path: Path, root: Path,
) -> None:
    path = write_config(tmp_path, root)  # fakesysfs's /proc/kcore is a placeholder
    done = kdumpd("verify", "--config", str(path))
    assert done.returncode == 69 and done.stderr == ""
    assert done.stdout == ("loaded header: unknown (/proc/kcore is not a little-endian "
                           "ELF64 file)\n")
    (root / "sys/kernel/kexec_crash_loaded").write_text("0\n")
    assert kdumpd("verify", "--config", str(path)).returncode == 3
