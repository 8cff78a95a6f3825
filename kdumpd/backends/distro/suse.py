"""openSUSE's and SLES's kdump (``/usr/lib/kdump/load.sh``).

It reads ``/etc/sysconfig/kdump``; kernel ``/var/lib/kdump/kernel``, initrd
``/var/lib/kdump/initrd``; the command line of ``build_kdump_commandline`` (not its Xen
serial console).
"""

from __future__ import annotations

import re
from pathlib import Path

from kdumpd.backends.distro.files import (
    SYSCONFIG,
    boot_cpu_apicid,
    cmdline_words,
    exists,
    proc_cmdline,
    squeeze,
)
from kdumpd.backends.distro.image import CrashImage, admin_kexec_args
from kdumpd.backends.distro.origin import Origin, Setting
from kdumpd.backends.distro.shellvars import read_shell_vars

SUSE_REMOVED = ("root|resume|crashkernel|splash|mem|BOOT_IMAGE|showopts|zfcp\\.allow_lun_scan|"
                "hugepages|acpi_no_memhotplug|cgroup_disable|unknown_nmi_panic|"
                "rd\\.udev\\.children-max")


def suse(root: Path, release: str, machine: str) -> CrashImage:
    settings = read_shell_vars(root, SYSCONFIG)
    commandline = settings.get("KDUMP_COMMANDLINE", "")
    if not commandline:
        commandline = _remove_options(proc_cmdline(root), SUSE_REMOVED)
        cpus = settings.get("KDUMP_CPUS") or "32"  # kdump-read-config.sh's default
        if not re.fullmatch(r"-?[0-9]{1,9}", cpus):
            cpus = "32"  # kdump-read-config.sh ignores a value that is not a number
        if exists(root, "/proc/xen"):
            cpus = "1"  # load.sh: makedumpfile cannot use threads on Xen
        nr_cpus = f"nr_cpus={cpus}" if int(cpus) != 0 else ""
        commandline += (" sysrq=yes reset_devices acpi_no_memhotplug cgroup_disable=memory "
                        f"nokaslr numa=off irqpoll {nr_cpus} root=kdump rootflags=bind "
                        "rd.udev.children-max=8")
        if re.fullmatch(r"i.86|x86_64", machine):
            apicid = boot_cpu_apicid(root, "initial apicid")
            if apicid:
                commandline += f" disable_cpu_apicid={apicid}"
            commandline = _remove_options(commandline, "unknown_nmi_panic|notsc|console=hvc0")
        elif machine.startswith("s390"):
            commandline += " zfcp.allow_lun_scan=0"
    commandline += " " + settings.get("KDUMP_COMMANDLINE_APPEND", "")
    if _remove_options(commandline, "panic") == squeeze(commandline):
        commandline += " panic=1"
    args_from = Origin.tool("load.sh", Setting(SYSCONFIG, "KEXEC_OPTIONS"))
    cmdline_inputs = tuple(Setting(SYSCONFIG, key) for key in (
        "KDUMP_COMMANDLINE", "KDUMP_CPUS", "KDUMP_COMMANDLINE_APPEND") if settings.get(key))
    if not settings.get("KDUMP_COMMANDLINE"):
        cmdline_inputs = (Setting("/proc/cmdline"), *cmdline_inputs)
    return CrashImage(
        Path("/var/lib/kdump/kernel"), Path("/var/lib/kdump/initrd"), squeeze(commandline),
        True, "suse", Origin.tool("load.sh"), Origin.tool("load.sh"),
        Origin.tool("load.sh", *cmdline_inputs), SYSCONFIG,
        # load.sh: "$KEXEC -p ... $KEXEC_OPTIONS -a": its -a comes last and wins.
        kexec_args=admin_kexec_args(settings.get("KEXEC_OPTIONS", "") + " -a", args_from),
        kexec_args_from=args_from,
    )


def _remove_options(cmdline: str, names: str) -> str:
    """Drop words whose option name matches the regex alternation ``names`` (SUSE's
    remove_from_commandline: ``^(names)(=|$)`` on each word, quotes ignored)."""
    pattern = re.compile(f"^({names})(=|$)")
    kept = (w for w in cmdline_words(cmdline) if not pattern.match(w.replace('"', "")))
    return squeeze(" ".join(kept))


