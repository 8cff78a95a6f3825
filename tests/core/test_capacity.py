"""The crash kernel's reservation against the RAM online after growth: the boot's own
crashkernel= as Linux applies it (kernel/crash_reserve.c) and kdump-utils' default with
its additions (kdump-lib.sh), each on the RAM as that source counts it."""

from __future__ import annotations

import pytest

from kdumpd.capacity import (
    GIB,
    MIB,
    TABLES_ONLY,
    TAKEN_BASE,
    TAKEN_DUMPS,
    TAKEN_MEASURED,
    Machine,
    add_to_sizes,
    boot_crashkernel,
    check,
    kdump_utils_ram,
    kdump_utils_rule,
    kernel_ram,
    ram_bytes,
    ranges,
    size_for,
    system_ram_bytes,
    taken_size,
)

RHEL8 = "1G-4G:192M,4G-64G:256M,64G-:512M"  # RHEL 8's kexec-tools default
FEDORA = "2G-64G:256M,64G-:512M"  # kdump-utils' x86_64 default
UBUNTU = "2G-4G:320M,4G-32G:512M,32G-64G:1024M,64G-128G:2048M,128G-:4096M"


@pytest.mark.parametrize(("spec", "ram_mib", "size_mib"), [
    (RHEL8, 512, 0), (RHEL8, 1024, 192), (RHEL8, 3968, 192), (RHEL8, 4096, 256),
    (RHEL8, 64 * 1024 - 128, 256), (RHEL8, 64 * 1024, 512), (RHEL8, 4 << 20, 512),
    # parse_crashkernel_mem rounds the RAM up to 128 MiB before it compares: 1 MiB short
    # of a boundary is at the boundary, 129 MiB short is not.
    (RHEL8, 4096 - 1, 256), (RHEL8, 4096 - 127, 256), (RHEL8, 4096 - 129, 192),
    (RHEL8, 64 * 1024 - 100, 512), (RHEL8, 1024 - 100, 192),
    (UBUNTU, 32 * 1024, 1024), (UBUNTU, 200 * 1024, 4096), (FEDORA, 1900, 0),
    ("384M-2G:128M,2G-:256M@16M", 1024, 128),  # an offset does not change the size
])
def test_a_range_expression_reserves_what_the_kernel_would(spec: str, ram_mib: int,
                                                           size_mib: int) -> None:
    assert size_for(spec, ram_mib * MIB) == size_mib * MIB


def test_the_kernel_rounds_ram_up_to_128_mib() -> None:
    assert kernel_ram(0) == 0
    assert kernel_ram(1) == 128 * MIB
    assert kernel_ram(128 * MIB) == 128 * MIB
    assert kernel_ram(7 * GIB + 512 * MIB + 1) == 7 * GIB + 640 * MIB


def test_a_size_not_below_the_ram_makes_the_kernel_reserve_nothing() -> None:
    # "crashkernel: invalid size": the whole expression is refused.
    assert size_for("0-:1G", 1 * GIB) == 0
    assert size_for("0-:1G", 1 * GIB + 1) == 1 * GIB  # rounded up to 1 GiB + 128 MiB
    assert size_for("0-2G:512M,2G-:4G", 3 * GIB) == 0  # 4G >= 3G before the match


@pytest.mark.parametrize("spec", ["256M", "512M@16M", "242M,high", "auto", "", "1G-:x"])
def test_a_plain_size_is_not_a_range(spec: str) -> None:
    assert ranges(spec) is None and size_for(spec, 8 * GIB) is None


def test_ram_is_counted_as_kdump_utils_counts_it() -> None:
    assert ram_bytes(("0-9fbff", "100000-7ffeffff", "100000000-27fffffff", "x-y")) == (
        0x9fc00 + 0x7fef0000 + 0x180000000)
    assert kdump_utils_ram(2047 * MIB) == 2 * GIB  # rounded up to 128 MiB first
    assert kdump_utils_ram(2 * GIB - 200 * MIB) == 1 * GIB


IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000a0000-000fffff : Reserved
00100000-7ffeffff : System RAM
  01000000-01ffffff : Kernel code
  6f000000-7effffff : Crash kernel
100000000-17fffffff : System RAM
180000000-1bfffffff : System RAM (virtio_mem)
  180000000-18fffffff : System RAM (kmem)
1c0000000-1ffffffff : dax0.0
  1c0000000-1ffffffff : System RAM (kmem)
200000000-23fffffff : ACPI memory
  200000000-23fffffff : System RAM
"""


def test_system_ram_is_what_get_system_size_reads() -> None:
    # Exactly "System RAM" at any depth (the hot-added DIMM nested under its ACPI device
    # counts); driver-managed RAM, top level or nested, does not.
    assert system_ram_bytes(IOMEM) == (0x9ec00 + 0x7fef0000 + 0x80000000 + 0x40000000)
    assert system_ram_bytes("1000-zz : System RAM\nnot a line\n") == 0


def test_the_boot_command_lines_last_crashkernel_counts() -> None:
    assert boot_crashkernel("ro crashkernel=128M quiet crashkernel=256M") == "256M"
    assert boot_crashkernel("ro quiet") == ""
    # get_last_crashkernel() skips the ones with a suffix.
    assert boot_crashkernel(f"crashkernel={RHEL8} crashkernel=1G,high crashkernel=128M,low"
                            ) == RHEL8


def test_a_reservation_that_fits_gives_no_warning() -> None:
    # The VM guest: crashkernel=256M, 2 GiB booted plus 6 GiB hot-added.
    fits = check(256 * MIB, 8 * GIB, "root=/dev/vda crashkernel=256M", "x86_64")
    assert (fits.recommended_bytes, fits.warning, fits.ram_bytes) == (256 * MIB, "", 8 * GIB)
    assert fits.source == (f"kdump-utils' default for x86_64 ({FEDORA}) on 8 GiB as its "
                           "get_system_size counts it")


def test_growth_past_the_boot_rule_names_the_value_to_set() -> None:
    # Booted with 3 GiB under RHEL 8's rule (192M reserved), grown to 70 GiB.
    short = check(192 * MIB, 70 * GIB, f"ro crashkernel={RHEL8}", "x86_64")
    assert short.recommended_bytes == 512 * MIB
    assert short.warning.startswith("192 MiB reserved for the crash kernel, but for the 70.0 "
                                    "GiB of System RAM now")
    assert short.warning.endswith(f"set crashkernel={RHEL8} (it applies at the next boot)")
    # A plain size that fell behind: kdump-utils' rule is the one to set.
    plain = check(256 * MIB, 70 * GIB, "crashkernel=256M", "x86_64")
    assert plain.warning.endswith(f"set crashkernel={FEDORA} (it applies at the next boot)")


def test_the_boot_rule_warns_at_the_kernels_rounded_boundary() -> None:
    # 63.9 GiB of System RAM: the kernel would have reserved 512M for it (rounded up to
    # 64 GiB); comparing the unrounded RAM said 256M was enough.
    near = check(256 * MIB, 64 * GIB - 100 * MIB, f"crashkernel={RHEL8}", "riscv64")
    assert near.recommended_bytes == 512 * MIB
    assert near.source == (f"the boot's crashkernel={RHEL8} (as the kernel applies it to "
                           "64.0 GiB: RAM rounded up to 128 MiB)")
    assert near.warning.endswith(f"set crashkernel={RHEL8} (it applies at the next boot)")


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
    source = (f"kdump-utils' default for x86_64 ({FEDORA}) on 70 GiB as its get_system_size "
              "counts it")
    assert short.source == source
    assert short.warning == (
        f"256 MiB reserved for the crash kernel, but for the 70.0 GiB of System RAM now "
        f"{source} asks for 512 MiB ({TABLES_ONLY}): a dump may fail; set "
        f"crashkernel={FEDORA} (it applies at the next boot)")
    fits = check(512 * MIB, 70 * GIB, "crashkernel=512M", "x86_64")
    assert (fits.reserved_bytes, fits.source) == (512 * MIB, source)
    own = check(1 << 30, 3 * GIB, f"crashkernel={RHEL8}", "riscv64")
    assert own.recommended_bytes == 192 * MIB
    assert own.source.startswith(f"the boot's crashkernel={RHEL8} (as the kernel")


# kdump-utils' additions (kdump_get_arch_recommend_crashkernel, kdump-lib.sh at 63f248c).

def test_memsize_add_adds_to_every_size_in_the_largest_unit() -> None:
    assert add_to_sizes(FEDORA, 64) == "2G-64G:320M,64G-:576M"
    assert add_to_sizes("16G-64G:1G,64G-:4G", 1) == "16G-64G:1025M,64G-:4097M"
    assert add_to_sizes("2G-:1984M", 64) == "2G-:2G"
    assert add_to_sizes(FEDORA, 0) == FEDORA


AARCH64 = "2G-4G:256M,4G-64G:320M,64G-:576M"
PPC64LE = "2G-4G:384M,4G-16G:512M,16G-64G:1G,64G-128G:2G,128G-:4G"
K64 = "5.14.0-312.el9.aarch64+64k"


@pytest.mark.parametrize(("machine", "table", "mib", "reasons"), [
    (Machine("x86_64"), FEDORA, 0, 0),
    (Machine("x86_64", memory_encryption=True), FEDORA, 64, 1),
    (Machine("s390x", memory_encryption=True), FEDORA, 64, 1),
    (Machine("aarch64", "6.12.0"), AARCH64, 0, 0),
    (Machine("aarch64", "6.12.0", mlx5=True), AARCH64, 150, 1),
    (Machine("aarch64", "6.12.0", arm_smmu=True), AARCH64, 0, 0),  # 4K pages: nothing
    (Machine("aarch64", K64), AARCH64, 100, 1),
    (Machine("aarch64", K64, mlx5=True, arm_smmu=True), AARCH64, 100 + 384 + 200, 3),
    (Machine("ppc64le"), PPC64LE, 1, 1),
    (Machine("ppc64le", dump_nr_cpus=16), PPC64LE, 16, 1),
])
def test_kdump_utils_adds_what_its_script_adds(machine: Machine, table: str, mib: int,
                                               reasons: int) -> None:
    rule = kdump_utils_rule(machine)
    assert rule is not None and rule[:2] == (table, mib) and len(rule[2]) == reasons
    assert kdump_utils_rule(Machine("riscv64")) is None


def test_ppc64le_with_fadump_uses_the_fadump_table() -> None:
    rule = kdump_utils_rule(Machine("ppc64le", fadump=True, dump_nr_cpus=2))
    assert rule is not None and rule[0].startswith("4G-16G:768M,16G-64G:1G,") and rule[1] == 2
    assert rule[2] == ("+2M: 1M for each of the dump kernel's 2 CPU(s)",)


def test_an_encrypted_guest_gets_64_mib_more_and_is_told_why() -> None:
    machine = Machine("x86_64", memory_encryption=True)
    short = check(256 * MIB, 8 * GIB, "crashkernel=256M", machine)
    assert short.recommended_bytes == 320 * MIB
    assert short.source == (f"kdump-utils' default for x86_64 ({FEDORA}; +64M: AMD SME/SEV "
                            "active) on 8 GiB as its get_system_size counts it")
    assert short.warning.endswith("set crashkernel=2G-64G:320M,64G-:576M (it applies at the "
                                  "next boot)")
    assert check(256 * MIB, 8 * GIB, "crashkernel=256M", "x86_64").warning == ""


def test_aarch64_with_mlx5_asks_150_mib_more() -> None:
    plain = check(320 * MIB, 8 * GIB, "", Machine("aarch64", "6.12.0"))
    assert (plain.recommended_bytes, plain.warning) == (320 * MIB, "")
    mlx5 = check(320 * MIB, 8 * GIB, "", Machine("aarch64", "6.12.0", mlx5=True))
    assert mlx5.recommended_bytes == 470 * MIB and "+150M: mlx5" in mlx5.source


def test_kdump_utils_rounds_up_to_128_mib_too_then_counts_whole_gib() -> None:
    # 64 GiB less 100 MiB counts as 64 GiB (512M), less 200 MiB as 63 GiB (256M).
    machine = Machine("x86_64")
    assert check(1 << 30, 64 * GIB - 200 * MIB, "", machine).recommended_bytes == 256 * MIB
    assert check(1 << 30, 64 * GIB - 100 * MIB, "", machine).recommended_bytes == 512 * MIB


# The measured rule: a dump kernel that takes hot-added memory as its own.

def test_the_taken_rule_is_the_measured_dump_kernel_plus_its_struct_pages() -> None:
    assert TAKEN_BASE == 208 * MIB  # 256 MiB less the struct pages of 3 GiB, which worked
    assert taken_size(0) == 0 and taken_size(-1) == 0
    assert taken_size(3 * GIB) == 256 * MIB  # the largest measured size that worked fits
    assert taken_size(5 * GIB + 512 * MIB) == 296 * MIB  # the size that failed does not
    assert taken_size(1) == 209 * MIB  # rounded up to whole MiB
    assert taken_size(64 * GIB) == (208 + 1024) * MIB


def test_any_memory_taken_warns_and_names_the_measurements() -> None:
    # The case: 2 GiB at boot + 5.5 GiB of DIMMs = 7.5 GiB, crashkernel=256M, a
    # dump kernel without acpi_no_memhotplug: the tables said enough; it died.
    ram = 7 * GIB + 512 * MIB
    assert check(256 * MIB, ram, "crashkernel=256M", "x86_64").warning == ""
    dead = check(256 * MIB, ram, "crashkernel=256M", "x86_64", 5 * GIB + 512 * MIB)
    assert dead.recommended_bytes == 296 * MIB
    source = ("a dump kernel that takes the 5.5 GiB in ACPI memory slots as its own (its "
              "command line lacks acpi_no_memhotplug): 208 MiB + 1/64 of that memory for its "
              f"struct pages ({TAKEN_MEASURED})")
    takes = ("the dump kernel takes the 5.5 GiB in ACPI memory slots as its own: add "
             "acpi_no_memhotplug to its command line; without it no reservation is enough "
             f"({TAKEN_DUMPS})")
    assert dead.source == source
    assert dead.warning == (
        "256 MiB reserved for the crash kernel, but for the 7.5 GiB of System RAM now "
        f"{source} asks for 296 MiB: a dump may fail; {takes}")
    # 3 GiB taken: the reservation is what the rule asks, the dump failed all the same.
    enough = check(256 * MIB, 5 * GIB, "crashkernel=256M", "x86_64", 3 * GIB)
    assert enough.recommended_bytes == 256 * MIB
    assert enough.warning == (
        "256 MiB reserved for the crash kernel is at least what " + enough.source + " asks for "
        "(256 MiB), but " + takes.replace("5.5 GiB", "3.0 GiB"))
    # A tie (256 MiB both): the measured rule is named, whose fix is the option.
    assert enough.source.startswith("a dump kernel that takes the 3.0 GiB")
    tiny = check(1 << 30, 5 * GIB, "", "riscv64", 128 * MIB)  # no table: the rule alone
    assert tiny.recommended_bytes == 210 * MIB
    assert tiny.warning.startswith("1024 MiB reserved for the crash kernel is at least what a dump "
                                   "kernel that takes the 0.1 GiB")
    assert "(210 MiB), but the dump kernel takes the 0.1 GiB" in tiny.warning
    assert check(1 << 30, 5 * GIB, "", "riscv64", 0).warning == ""


def test_the_larger_rule_wins_between_the_tables_and_the_measurement() -> None:
    # 70 GiB with 1 GiB taken: kdump-utils' 512M beats 208M + 16M; it says it is a table,
    # and the memory taken is named too.
    table = check(256 * MIB, 70 * GIB, "crashkernel=256M", "x86_64", 1 * GIB)
    assert table.recommended_bytes == 512 * MIB
    assert table.source.startswith("kdump-utils' default for x86_64")
    assert TABLES_ONLY in table.warning
    assert f"set crashkernel={FEDORA} (it applies at the next boot); and the dump kernel " \
           "takes the 1.0 GiB" in table.warning
    # 32 GiB taken: 208M + 512M = 720M beats the table's 256M on 34 GiB.
    taken = check(512 * MIB, 34 * GIB, "crashkernel=512M", "x86_64", 32 * GIB)
    assert taken.recommended_bytes == 720 * MIB
    assert "asks for 720 MiB: a dump may fail; the dump kernel takes the 32.0 GiB" in \
           taken.warning
    assert TABLES_ONLY not in taken.warning and "set crashkernel" not in taken.warning


def test_a_table_warning_elsewhere_names_only_the_table() -> None:
    short = check(256 * MIB, 70 * GIB, "crashkernel=256M", "s390x")
    assert "(a table): a dump may fail" in short.warning and TABLES_ONLY not in short.warning


def test_aarch64_64k_kernels_name_each_addition_in_the_source() -> None:
    machine = Machine("aarch64", kernel_release="6.12.0-64k", arm_smmu=True, mlx5=True)
    rule = kdump_utils_rule(machine)
    assert rule is not None
    table, extra, reasons = rule
    assert (extra, reasons) == (684, ("+100M: a 64k-page kernel",
                                      "+384M: an ARM SMMU with 64k pages",
                                      "+200M: mlx5 with 64k pages"))
    capacity = check(4 * GIB, 8 * GIB, "", machine)
    assert capacity.source.startswith(f"kdump-utils' default for aarch64 ({table}; ")
    assert "; " + ", ".join(reasons) + ")" in capacity.source


def test_sizes_are_written_in_the_largest_unit_that_divides_them() -> None:
    assert add_to_sizes("1G-4G:1G,4G-:2047M", 1) == "1G-4G:1025M,4G-:2G"
    assert add_to_sizes("1G-4G:1023M", 1) == "1G-4G:1G"
    assert add_to_sizes("256M", 64) == "256M"  # a plain size is no table: as it is
    assert add_to_sizes("1G-4G:192M", 0) == "1G-4G:192M"


def test_no_rule_keeps_the_ram_counted() -> None:
    capacity = check(256 * MIB, 8 * GIB, "", "riscv64")
    assert (capacity.recommended_bytes, capacity.source, capacity.ram_bytes) == (
        0, "no rule for this machine", 8 * GIB)


def test_a_taking_dump_kernel_with_enough_reserved_keeps_what_was_counted() -> None:
    capacity = check(4 * GIB, 8 * GIB, "", "x86_64", taken_bytes=GIB)
    assert capacity.warning and capacity.reserved_bytes == 4 * GIB
    assert capacity.ram_bytes == 8 * GIB


def test_an_unreadable_line_does_not_end_the_count() -> None:
    iomem = "zz-yy : System RAM\n00100000-001fffff : System RAM\n"
    assert system_ram_bytes(iomem) == MIB
    assert ram_bytes(("zz-yy", "100000-1fffff")) == MIB
