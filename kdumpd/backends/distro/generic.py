"""A machine with no distribution kdump: the running kernel, with a command line derived
from its own."""

from __future__ import annotations

import re
from pathlib import Path

from kdumpd.backends.distro.files import exists, proc_cmdline
from kdumpd.backends.distro.image import CrashImage
from kdumpd.backends.distro.origin import Origin, Setting

# Without a distribution's kdump configuration: what a dump kernel must not inherit (the
# reservation, the boot image, CPU limits, memory the first kernel set aside or onlines
# on hotplug, noise) and what the distributions add. Fedora's x86_64 defaults
# (gen-kdump-sysconfig.sh) are the reference; acpi_no_memhotplug keeps the capture
# kernel from onlining hot-added memory as its own (seen in the Debian 13 guest).
GENERIC_DROP = ("crashkernel=", "BOOT_IMAGE=", "nr_cpus=", "maxcpus=", "initrd=",
                "kexec_jump_back_entry=", "hugepages=", "hugepagesz=", "default_hugepagesz=",
                "hugetlb_cma=", "cma=", "memhp_default_state=", "memory_hotplug.",
                "movable_node", "kernelcore=", "movablecore=", "slub_debug", "log_buf_len=",
                "swiotlb=", "quiet", "splash", "resume=", "panic_on_warn", "panic=")

GENERIC_APPEND = ("irqpoll nr_cpus=1 reset_devices cgroup_disable=memory mce=off numa=off "
                  "udev.children-max=2 panic=10 transparent_hugepage=never cma=0 "
                  "hugetlb_cma=0 novmcoredd kfence.sample_interval=0")

X86_ONLY = "acpi_no_memhotplug"


def generic(root: Path, release: str, machine: str) -> CrashImage:
    initrd = Path(f"/boot/initrd.img-{release}")
    found = initrd if exists(root, str(initrd)) else None
    return CrashImage(
        Path(f"/boot/vmlinuz-{release}"), found, default_append(proc_cmdline(root), machine),
        False, "generic",
        Origin("running-kernel"), Origin("running-kernel") if found else None,
        Origin.tool("kdumpd", Setting("/proc/cmdline")),
    )


def default_append(cmdline: str, machine: str = "x86_64") -> str:
    """A dump kernel's command line derived from the running kernel's (see GENERIC_*).
    What follows ``--`` is the running init's arguments, not the kernel's: not kept."""
    words = cmdline.split()
    if "--" in words:
        words = words[:words.index("--")]
    kept = [word for word in words
            if not any(word == d or word.startswith(d) for d in GENERIC_DROP)]
    extra = GENERIC_APPEND + (f" {X86_ONLY}" if re.fullmatch(r"i.86|x86_64", machine) else "")
    return " ".join([*kept, *extra.split()])
