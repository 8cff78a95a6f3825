"""Fake sysfs trees and a fake clock: for tests, the demo, the benchmarks and dry runs."""

from __future__ import annotations

from pathlib import Path

from kdumpd.events import SUBSYSTEMS


def build(
    root: Path,
    *,
    crash_loaded: str | None = "1",
    crash_hotplug: str | None = "0",
    crash_size: str = "268435456",
    elfcorehdr_size: str | None = "4096",
    cmdline: str = "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro crashkernel=256M quiet",
) -> Path:
    """Create (or update) the files kdumpd reads under ``root``; None leaves a file absent.

    ``crash_hotplug`` applies to both subsystems; write the files directly for mixed cases.
    Returns ``root``.
    """
    files: dict[str, str | None] = {
        "sys/kernel/kexec_crash_loaded": crash_loaded,
        "sys/kernel/kexec_crash_size": crash_size,
        "sys/kernel/crash_elfcorehdr_size": elfcorehdr_size,
        "proc/cmdline": cmdline,
        # What kexec-tools needs for a kexec_load, as root with all capabilities sees it.
        "proc/iomem": "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n"
                      "01000000-10ffffff : Crash kernel",
        "proc/kallsyms": "ffffffff81000000 T _stext",
        "proc/kcore": "ELF",
    }
    for subsystem in SUBSYSTEMS:
        files[f"sys/devices/system/{subsystem}/crash_hotplug"] = crash_hotplug
    for relative, value in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(value + "\n", encoding="ascii")
    return root


