"""Whether the running kernel has kexec_file_load, told without loading anything.

The kernel's build configuration says it: ``CONFIG_KEXEC_FILE=y``, or ``# CONFIG_KEXEC_FILE
is not set`` (Debian's ppc64el kernels, trixie 6.12 and bookworm 6.1: ``kexec -s -p``
answers "syscall kexec_file_load not available", exit 253). The distributions ship that
configuration beside the kernel: Debian, Ubuntu, Fedora, RHEL and openSUSE in
``/boot/config-<release>``, Fedora and RHEL also in ``/lib/modules/<release>/config``;
kernels built with CONFIG_IKCONFIG_PROC expose ``/proc/config.gz``.

Why not another sign: /proc/kallsyms names ``sys_kexec_file_load`` even where the syscall
is not built (COND_SYSCALL aliases it to sys_ni_syscall) and the syscall's body is inlined;
no /sys/kernel attribute belongs to kexec_file_load alone; and a trial load frees the
loaded image first where the syscall exists (a failed ``-s`` over a loaded image left no
crash kernel under lockdown). Where no configuration is found the answer is "unknown"
and kdumpd keeps trying kexec_file_load as before.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

from kdumpd.smallfile import read_regular

CONFIG_LIMIT = 4 << 20  # a distribution kernel's config is 200-300 KiB
OPTION = "CONFIG_KEXEC_FILE"


@dataclass(frozen=True)
class FileLoad:
    """``available``: True, False, or None (no configuration found); ``source``: the file
    that said it, or where kdumpd looked."""

    available: bool | None
    source: str

    def line(self) -> str:
        if self.available is None:
            return f"unknown (no kernel configuration in {self.source})"
        setting = "=y" if self.available else " is not set"
        return f"{'yes' if self.available else 'no'} ({OPTION}{setting} in {self.source})"


def config_paths(release: str) -> tuple[str, ...]:
    return (f"boot/config-{release}", f"lib/modules/{release}/config", "proc/config.gz")


def setting(config: str) -> bool | None:
    """CONFIG_KEXEC_FILE in a kernel configuration's text: True (=y), False (not set, or
    the file does not name it), None (not a configuration)."""
    seen_config = False
    for raw in config.splitlines():
        line = raw.strip()
        if line.startswith(f"{OPTION}="):
            return line == f"{OPTION}=y"
        if line == f"# {OPTION} is not set":
            return False
        seen_config = seen_config or line.startswith("CONFIG_")
    return False if seen_config else None


def file_load(root: Path, release: str) -> FileLoad:
    """Whether the kernel ``release`` under ``root`` has kexec_file_load; never raises."""
    paths = config_paths(release)
    for relative in paths:
        try:
            data = read_regular(root / relative, CONFIG_LIMIT)
            if relative.endswith(".gz"):
                data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            continue
        found = setting(data.decode("ascii", "replace"))
        if found is not None:
            return FileLoad(found, "/" + relative)
    return FileLoad(None, ", ".join("/" + p for p in paths))
