"""The machine's facts kdump-utils' crashkernel rule adds to, read from fake trees where
kdump-lib.sh reads them; and the reservation check on a fake root end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdumpd import app
from kdumpd.capacity import GIB, MIB, Machine
from kdumpd.capacity_facts import (
    MEMORY_ENCRYPTION_LINES,
    acpi_memory_bytes,
    dump_nr_cpus,
    memory_encryption_active,
    read_machine,
    taken_bytes,
)
from kdumpd.fakes import fakesysfs


def tree(tmp_path: Path, files: dict[str, str], dirs: tuple[str, ...] = ()) -> Path:
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
        (tmp_path / relative).chmod(0o644)
    for relative in dirs:
        (tmp_path / relative).mkdir(parents=True, exist_ok=True)
    return tmp_path


def never(root: Path) -> bool:
    raise AssertionError("the kernel log is read only where the rule uses it")


def test_aarch64_reads_mlx5_the_smmu_and_the_dump_kernels_version(tmp_path: Path) -> None:
    bare = read_machine(tree(tmp_path / "a", {}), "aarch64", "6.12.0", never)
    assert bare == Machine("aarch64", "6.12.0")
    full = tree(tmp_path / "b", {"etc/sysconfig/kdump": 'KDUMP_KERNELVER="5.14.0-1.el9+64k"\n'},
                ("sys/bus/pci/drivers/mlx5_core", "sys/devices/platform/arm-smmu-v3.0.auto"))
    assert read_machine(full, "aarch64", "6.12.0", never) == Machine(
        "aarch64", "5.14.0-1.el9+64k", mlx5=True, arm_smmu=True)


def test_ppc64le_counts_the_dump_kernels_cpus_and_sees_fadump(tmp_path: Path) -> None:
    sysconfig = ('KDUMP_COMMANDLINE_APPEND="irqpoll nr_cpus=0 maxcpus=1 nr_cpus=8"\n'
                 'FADUMP_COMMANDLINE_APPEND="nr_cpus=16 nr_cpus=x"\n')
    kdump = tree(tmp_path / "k", {"etc/sysconfig/kdump": sysconfig,
                                  "sys/kernel/fadump/enabled": "0\n"})
    assert read_machine(kdump, "ppc64le", "6.12.0", never) == Machine(
        "ppc64le", "6.12.0", dump_nr_cpus=8)
    fadump = tree(tmp_path / "f", {"etc/sysconfig/kdump": sysconfig,
                                   "sys/kernel/fadump/enabled": "1\n"})
    assert read_machine(fadump, "ppc64le", "6.12.0", never) == Machine(
        "ppc64le", "6.12.0", fadump=True, dump_nr_cpus=16)
    # A configuration kdumpd cannot read as sh would: kdump-utils' default, 1 CPU.
    refused = tree(tmp_path / "r", {"etc/sysconfig/kdump": 'KDUMP_COMMANDLINE_APPEND="$(x)"\n'})
    assert read_machine(refused, "ppc64le", "6.12.0", never).dump_nr_cpus == 1


def test_find_nr_cpus_takes_the_last_positive_number() -> None:
    assert dump_nr_cpus("") == 1
    assert dump_nr_cpus("nr_cpus=4 nr_cpus=2") == 2
    assert dump_nr_cpus("nr_cpus=4 nr_cpus=02 nr_cpus=-1 nr_cpus= xnr_cpus=9") == 4


def test_x86_asks_the_kernel_log_and_nothing_else(tmp_path: Path) -> None:
    seen: list[Path] = []

    def encrypted(root: Path) -> bool:
        seen.append(root)
        return True

    assert read_machine(tmp_path, "x86_64", "6.12.0", encrypted) == Machine(
        "x86_64", "6.12.0", memory_encryption=True)
    assert seen == [tmp_path]
    assert read_machine(tmp_path, "riscv64", "6.12.0", never) == Machine("riscv64", "6.12.0")


class FakeJournal:
    """journal.Reader's calls that memory_encryption_active makes, over a list of entries."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.groups: list[list[tuple[str, str]]] = [[]]
        self.closed = False

    def this_boot(self) -> None:
        self.groups[-1].append(("_BOOT_ID", "this"))

    def add_match(self, **fields: str) -> None:
        self.groups[-1].extend(fields.items())

    def add_disjunction(self) -> None:
        self.groups.append([])

    def get_next(self) -> dict[str, Any]:
        for entry in self.entries:
            if any(all(entry.get(k) == v for k, v in group) for group in self.groups):
                return entry
        return {}

    def close(self) -> None:
        self.closed = True


def kernel(message: str) -> dict[str, Any]:
    return {"_BOOT_ID": "this", "_TRANSPORT": "kernel", "MESSAGE": message}


def test_sme_or_sev_is_the_kernels_line_matched_whole() -> None:
    readers: list[FakeJournal] = []

    def reader_of(*entries: dict[str, Any]) -> Any:
        def make() -> FakeJournal:
            readers.append(FakeJournal(list(entries)))
            return readers[-1]
        return make

    root = Path("/")
    assert memory_encryption_active(root, reader_of(kernel(MEMORY_ENCRYPTION_LINES[0])))
    assert memory_encryption_active(root, reader_of(kernel(MEMORY_ENCRYPTION_LINES[1])))
    # kdump-utils' grep is anchored: SEV-ES after SEV does not match, nor does kdumpd's
    # own message quoting it, nor another boot's line.
    assert not memory_encryption_active(root, reader_of(
        kernel("Memory Encryption Features active: AMD SEV SEV-ES")))
    assert not memory_encryption_active(root, reader_of(
        {**kernel(MEMORY_ENCRYPTION_LINES[0]), "_TRANSPORT": "journal"},
        {**kernel(MEMORY_ENCRYPTION_LINES[1]), "_BOOT_ID": "earlier"}))
    assert all(reader.closed for reader in readers) and len(readers) == 4
    # Another [sysfs] root: the host's journal is not its kernel's; nothing is opened.
    assert not memory_encryption_active(Path("/tmp/root"), reader_of())
    assert len(readers) == 4

    def broken() -> Any:
        raise OSError(2, "no journal")

    assert not memory_encryption_active(root, broken)


def test_the_reservation_check_counts_system_ram_as_kdump_utils_does(tmp_path: Path) -> None:
    root = fakesysfs.build(tmp_path / "root", cmdline="ro crashkernel=256M")
    iomem = (root / "proc/iomem").read_text()
    # 6 GiB hot-added as plain System RAM and 64 GiB driver-managed (virtio-mem): only
    # the first counts.
    (root / "proc/iomem").write_text(
        iomem.rstrip("\n") + "\n100000000-27fffffff : System RAM\n"
        "1000000000-1fffffffff : System RAM (virtio_mem)\n")
    asked: list[Path] = []

    def encrypted(where: Path) -> bool:
        asked.append(where)
        return True

    reader = app.capacity_reader(root, "x86_64", "6.12.0", encrypted)
    first = reader(fakesysfs_hardware(root))
    assert first.reserved_bytes == 256 * MIB
    assert 6 * GIB < first.ram_bytes < 9 * GIB
    # SME/SEV active: kdump-utils asks 256M + 64M from 2 GiB on, so 256M falls short.
    assert first.recommended_bytes == 320 * MIB
    assert "+64M: AMD SME/SEV active" in first.source
    assert first.warning.endswith("set crashkernel=2G-64G:320M,64G-:576M (it applies at "
                                  "the next boot)")
    reader(fakesysfs_hardware(root))
    assert asked == [root]  # the boot's kernel log is asked once


def fakesysfs_hardware(root: Path) -> Any:
    from kdumpd.hardware import read_hardware

    return read_hardware(root)


def acpi_tree(tmp_path: Path, blocks: dict[str, int], size: str = "8000000\n") -> Path:
    """ACPI memory devices with ``blocks`` memory blocks bound each (physical_node,
    physical_node1, ... as drivers/acpi/glue.c names the links)."""
    root = tree(tmp_path, {"sys/devices/system/memory/block_size_bytes": size})
    for device, count in blocks.items():
        where = root / "sys/bus/acpi/devices" / device
        where.mkdir(parents=True)
        for n in range(count):
            (where / ("physical_node" + (str(n) if n else ""))).mkdir()
    (root / "sys/bus/acpi/devices/PNP0A03:00/physical_node").mkdir(parents=True)  # a bus
    return root


def test_the_memory_in_acpi_slots_is_their_blocks(tmp_path: Path) -> None:
    root = acpi_tree(tmp_path / "a", {"PNP0C80:00": 4, "PNP0C80:01": 24, "PNP0C80:02": 0})
    assert acpi_memory_bytes(root) == 28 * 128 * MIB
    assert acpi_memory_bytes(acpi_tree(tmp_path / "g", {"PNP0C80:00": 2}, "40000000\n")) == 2 * GIB
    assert acpi_memory_bytes(acpi_tree(tmp_path / "n", {})) == 0
    assert acpi_memory_bytes(acpi_tree(tmp_path / "x", {"PNP0C80:00": 2}, "x\n")) == 0
    assert acpi_memory_bytes(tmp_path / "none") == 0


def test_only_a_dump_kernel_without_acpi_no_memhotplug_on_x86_takes_it(tmp_path: Path) -> None:
    root = acpi_tree(tmp_path, {"PNP0C80:00": 24})
    assert taken_bytes(root, "x86_64", "root=/dev/vda irqpoll nr_cpus=1") == 3 * GIB
    assert taken_bytes(root, "i686", "root=/dev/vda") == 3 * GIB
    assert taken_bytes(root, "x86_64", "root=/dev/vda acpi_no_memhotplug irqpoll") == 0
    assert taken_bytes(root, "x86_64", "acpi_no_memhotplug=1") == 3 * GIB  # not the option
    assert taken_bytes(root, "x86_64", None) == 0  # not known: not guessed
    assert taken_bytes(root, "ppc64le", "root=/dev/sda") == 0
    assert taken_bytes(root, "aarch64", "root=/dev/sda") == 0


def test_the_reader_applies_the_measured_rule_to_the_loaded_command_line(
        tmp_path: Path) -> None:
    root = fakesysfs.build(tmp_path / "root", cmdline="ro crashkernel=256M")
    iomem = (root / "proc/iomem").read_text()
    (root / "proc/iomem").write_text(iomem.rstrip("\n") + "\n100000000-25fffffff : System RAM\n")
    acpi_tree(root, {"PNP0C80:00": 44})  # 5.5 GiB: the size that killed the dump kernel
    reader = app.capacity_reader(root, "x86_64", "6.12.0", lambda at: False)
    hardware = fakesysfs_hardware(root)
    assert reader(hardware, "root=/dev/vda acpi_no_memhotplug").warning == ""
    assert reader(hardware, None).warning == ""
    taking = reader(hardware, "root=/dev/vda")
    assert taking.recommended_bytes == 296 * MIB
    assert "add acpi_no_memhotplug" in taking.warning and "5.5 GiB" in taking.warning
