"""The crash kernel's reservation against the RAM online after growth."""

from __future__ import annotations

import pytest

from kdumpd.capacity import (
    GIB,
    MIB,
    boot_crashkernel,
    check,
    kdump_utils_ram,
    ram_bytes,
    ranges,
    size_for,
)

RHEL8 = "1G-4G:192M,4G-64G:256M,64G-:512M"  # RHEL 8's kexec-tools default
FEDORA = "2G-64G:256M,64G-:512M"  # kdump-utils' x86_64 default
UBUNTU = "2G-4G:320M,4G-32G:512M,32G-64G:1024M,64G-128G:2048M,128G-:4096M"


@pytest.mark.parametrize(("spec", "ram_gib", "size_mib"), [
    (RHEL8, 0.5, 0), (RHEL8, 1, 192), (RHEL8, 3.9, 192), (RHEL8, 4, 256),  # start inclusive
    (RHEL8, 63.9, 256), (RHEL8, 64, 512), (RHEL8, 4096, 512),
    (UBUNTU, 32, 1024), (UBUNTU, 200, 4096), (FEDORA, 1.9, 0),
    ("384M-2G:128M,2G-:256M@16M", 1, 128),  # an offset does not change the size
])
def test_a_range_expression_reserves_what_the_kernel_would(spec: str, ram_gib: float,
                                                           size_mib: int) -> None:
    assert size_for(spec, int(ram_gib * GIB)) == size_mib * MIB


@pytest.mark.parametrize("spec", ["256M", "512M@16M", "242M,high", "auto", "", "1G-:x"])
def test_a_plain_size_is_not_a_range(spec: str) -> None:
    assert ranges(spec) is None and size_for(spec, 8 * GIB) is None


def test_ram_is_counted_as_kdump_utils_counts_it() -> None:
    assert ram_bytes(("0-9fbff", "100000-7ffeffff", "100000000-27fffffff", "x-y")) == (
        0x9fc00 + 0x7fef0000 + 0x180000000)
    assert kdump_utils_ram(2047 * MIB) == 2 * GIB  # rounded up to 128 MiB first
    assert kdump_utils_ram(2 * GIB - 200 * MIB) == 1 * GIB


def test_the_boot_command_lines_last_crashkernel_counts() -> None:
    assert boot_crashkernel("ro crashkernel=128M quiet crashkernel=256M") == "256M"
    assert boot_crashkernel("ro quiet") == ""


def test_a_reservation_that_fits_gives_no_warning() -> None:
    # The VM guest: crashkernel=256M, 2 GiB booted plus 6 GiB hot-added.
    fits = check(256 * MIB, 8 * GIB, "root=/dev/vda crashkernel=256M", "x86_64")
    assert (fits.recommended_bytes, fits.warning) == (256 * MIB, "")
    assert fits.source == f"kdump-utils' default for x86_64 ({FEDORA})"


def test_growth_past_the_boot_rule_names_the_value_to_set() -> None:
    # Booted with 3 GiB under RHEL 8's rule (192M reserved), grown to 70 GiB.
    short = check(192 * MIB, 70 * GIB, f"ro crashkernel={RHEL8}", "x86_64")
    assert short.recommended_bytes == 512 * MIB
    assert short.warning.startswith("192 MiB reserved for the crash kernel, but for the 70.0 "
                                    "GiB of RAM online now")
    assert short.warning.endswith(f"set crashkernel={RHEL8} (it applies at the next boot)")
    # A plain size that fell behind: kdump-utils' rule is the one to set.
    plain = check(256 * MIB, 70 * GIB, "crashkernel=256M", "x86_64")
    assert plain.warning.endswith(f"set crashkernel={FEDORA} (it applies at the next boot)")


def test_no_rule_no_claim() -> None:
    none = check(128 * MIB, 8 * GIB, "crashkernel=128M", "riscv64")
    assert (none.recommended_bytes, none.warning, none.source) == (0, "",
                                                                    "no rule for this machine")


def test_kdump_utils_ram_rounds_up_to_128_mib_then_down_to_whole_gib() -> None:
    for mib, gib in ((0, 0), (1, 0), (896, 0), (897, 1), (1024, 1), (1920, 1), (1921, 2),
                     (2048, 2), (2049, 2), (4096 + 1000, 5)):
        got = kdump_utils_ram(mib * MIB)
        assert got == gib * GIB and isinstance(got, int), mib


def test_an_offset_and_equals_signs_are_read_as_the_kernel_does() -> None:
    assert size_for("1G-:256M@1G@2G", 2 * GIB) == 256 * MIB  # the part before the first @
    assert boot_crashkernel("crashkernel=1G-:256M,x=y") == "1G-:256M,x=y"


def test_below_every_range_no_rule_applies() -> None:
    small = check(128 * MIB, 1 * GIB, "crashkernel=128M", "x86_64")
    assert small == check(128 * MIB, 1 * GIB, "", "x86_64")
    assert (small.reserved_bytes, small.recommended_bytes, small.warning) == (128 * MIB, 0, "")
    assert small.source == "no rule for this machine"


def test_the_warning_and_the_result_say_exactly_what_was_compared() -> None:
    short = check(256 * MIB, 70 * GIB, "crashkernel=256M", "x86_64")
    assert (short.reserved_bytes, short.recommended_bytes) == (256 * MIB, 512 * MIB)
    assert short.source == f"kdump-utils' default for x86_64 ({FEDORA})"
    assert short.warning == (
        "256 MiB reserved for the crash kernel, but for the 70.0 GiB of RAM online now "
        f"kdump-utils' default for x86_64 ({FEDORA}) asks for 512 MiB: a dump may fail; "
        f"set crashkernel={FEDORA} (it applies at the next boot)")
    fits = check(512 * MIB, 70 * GIB, "crashkernel=512M", "x86_64")
    assert (fits.reserved_bytes, fits.source) == (512 * MIB, short.source)
    own = check(1 << 30, 3 * GIB, f"crashkernel={RHEL8}", "riscv64")
    assert (own.recommended_bytes, own.source) == (192 * MIB, f"the boot's crashkernel={RHEL8}")
