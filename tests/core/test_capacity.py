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
