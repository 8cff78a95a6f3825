"""The machine's facts kdump-utils' crashkernel recommendation adds to (capacity.py), read
where kdump-lib.sh reads them, under an injected root (rhkdump/kdump-utils at 63f248c):

- ``is_sme_or_sev_active``: ``journalctl -q --dmesg --grep "^Memory Encryption Features
  active: AMD (SME|SEV)$"``: this boot's kernel messages from the journal, the two lines
  matched whole (only for the host's own tree: another ``[sysfs] root`` has no journal
  of its own, and its kernel is not the one that logged);
- ``has_mlx5``: the directory ``/sys/bus/pci/drivers/mlx5_core``;
- ``has_aarch64_smmu``: ``/sys/devices/platform/arm-smmu-*``;
- ``is_fadump_capable``: ``/sys/kernel/fadump/enabled`` reads 1;
- ``find_nr_cpus``: the last ``nr_cpus=<N>`` (N a positive number) of
  ``KDUMP_COMMANDLINE_APPEND`` in /etc/sysconfig/kdump (``FADUMP_COMMANDLINE_APPEND`` with
  fadump), else 1;
- ``_get_kdump_kernel_version``: ``KDUMP_KERNELVER`` there, else the running kernel's.

Each is read only for the architecture whose rule uses it; a fact that cannot be read is
the default kdump-utils would take (absent, 1 CPU).

For the measured rule (capacity.py, :func:`taken_bytes`): the memory a dump kernel without
``acpi_no_memhotplug`` would take as its own on x86, the memory blocks bound to the ACPI
memory devices (``/sys/bus/acpi/devices/PNP0C80:*/physical_node*``, one link per block,
drivers/acpi/glue.c ``acpi_bind_one()``) times ``/sys/devices/system/memory/
block_size_bytes``.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Callable

from kdumpd.arch import X86
from kdumpd.backends.distro import DistroError, read_shell_vars
from kdumpd.backends.distro.files import SYSCONFIG
from kdumpd.capacity import Machine
from kdumpd.smallfile import read_regular

# arch/x86/mm/mem_encrypt.c print_mem_encrypt_feature_info(), as kdump-utils matches it.
MEMORY_ENCRYPTION_LINES = ("Memory Encryption Features active: AMD SME",
                           "Memory Encryption Features active: AMD SEV")


def memory_encryption_active(root: Path, reader: Callable[[], Any] | None = None) -> bool:
    """Whether this boot's kernel logged one of :data:`MEMORY_ENCRYPTION_LINES` (read
    from the journal; False where it cannot be read). ``reader`` makes the
    journal.Reader (tests)."""
    if root != Path("/"):
        return False
    if reader is None:
        try:
            from systemd import journal
        except ImportError:
            return False
        reader = journal.Reader
    try:
        opened = reader()
    except (OSError, ValueError):
        return False
    try:
        for index, line in enumerate(MEMORY_ENCRYPTION_LINES):
            if index:
                opened.add_disjunction()
            opened.this_boot()
            opened.add_match(_TRANSPORT="kernel", MESSAGE=line)
        return bool(opened.get_next())
    except (OSError, ValueError):
        return False
    finally:
        with contextlib.suppress(OSError, ValueError):
            opened.close()


def _flag(root: Path, path: str) -> bool:
    try:
        return read_regular(root / path.lstrip("/"), 64).strip() == b"1"
    except OSError:
        return False


def dump_nr_cpus(append: str) -> int:
    """``find_nr_cpus``: the last ``nr_cpus=`` with a positive number, else 1."""
    cpus = 1
    for word in append.split():
        value = word[len("nr_cpus="):] if word.startswith("nr_cpus=") else ""
        if re.fullmatch(r"[1-9][0-9]*", value):
            cpus = int(value)
    return cpus


def read_machine(root: Path, arch: str, release: str,
                 encryption: Callable[[Path], bool] = memory_encryption_active) -> Machine:
    """The facts of the machine under ``root`` that kdump-utils' rule for ``arch`` uses."""
    if arch in ("x86_64", "s390x"):
        return Machine(arch, release, memory_encryption=encryption(root))
    settings: dict[str, str] = {}
    if arch in ("aarch64", "ppc64le"):
        with contextlib.suppress(DistroError, OSError):
            settings = read_shell_vars(root, SYSCONFIG)
    if arch == "aarch64":
        return Machine(arch, settings.get("KDUMP_KERNELVER") or release,
                       mlx5=(root / "sys/bus/pci/drivers/mlx5_core").is_dir(),
                       arm_smmu=any((root / "sys/devices/platform").glob("arm-smmu-*")))
    if arch == "ppc64le":
        fadump = _flag(root, "/sys/kernel/fadump/enabled")
        append = settings.get("FADUMP_COMMANDLINE_APPEND" if fadump
                              else "KDUMP_COMMANDLINE_APPEND", "")
        return Machine(arch, release, fadump=fadump, dump_nr_cpus=dump_nr_cpus(append))
    return Machine(arch, release)


def acpi_memory_bytes(root: Path) -> int:
    """Bytes of the memory blocks bound to ACPI memory devices (PNP0C80): what a dump
    kernel without ``acpi_no_memhotplug`` finds in the ACPI tables and adds as its own;
    0 when there are none or the block size cannot be read."""
    try:
        block = int(read_regular(root / "sys/devices/system/memory/block_size_bytes",
                                 64).strip(), 16)
    except (OSError, ValueError):
        return 0
    devices = (root / "sys/bus/acpi/devices").glob("PNP0C80:*")
    return block * sum(1 for device in devices for _ in device.glob("physical_node*"))


def taken_bytes(root: Path, arch: str, loaded_cmdline: str | None) -> int:
    """The hot-added memory the loaded dump kernel would take as its own: on x86, when its
    command line (read back from the loaded image; None: not known) lacks
    ``acpi_no_memhotplug``, :func:`acpi_memory_bytes`; else 0."""
    if loaded_cmdline is None or arch not in X86:
        return 0
    if "acpi_no_memhotplug" in loaded_cmdline.split():
        return 0
    return acpi_memory_bytes(root)
