"""Debian's and Ubuntu's kdump-tools (``kdump-config load``, 1.8.1 and 1.10.7).

It sources ``/etc/default/kdump-tools``; ``KDUMP_KERNEL``/``KDUMP_INITRD`` (else the
running kernel's ``/boot/vmlinuz-<release>`` and ``/boot/initrd.img-<release>``); the
command line is ``KDUMP_CMDLINE`` or /proc/cmdline without ``crashkernel=``,
``hugepages=``, ``hugepagesz=``, ``abm=``, then ``KDUMP_CMDLINE_APPEND`` (default below).
"""

from __future__ import annotations

import re
from pathlib import Path

from kdumpd.backends.distro.files import SHELL_FILE_LIMIT, exists, proc_cmdline, squeeze
from kdumpd.backends.distro.image import CrashImage, admin_kexec_args
from kdumpd.backends.distro.origin import Origin, Setting
from kdumpd.backends.distro.shellvars import read_shell_vars
from kdumpd.smallfile import read_regular

DEBIAN_DEFAULTS = "/etc/default/kdump-tools"

KDUMP_CONFIG = "/usr/sbin/kdump-config"

# kdump-tools' debian/rules builds its default KDUMP_CMDLINE_APPEND per architecture.
_DEBIAN_DUMP = "reset_devices systemd.unit=kdump-tools-dump.service"

DEBIAN_APPEND = f"{_DEBIAN_DUMP} nr_cpus=1 irqpoll usbcore.nousb"

DEBIAN_APPEND_BY_MACHINE = {
    "aarch64": f"{_DEBIAN_DUMP} nr_cpus=1",
    "ppc64le": f"{_DEBIAN_DUMP} maxcpus=1 irqpoll noirqdistrib usbcore.nousb",
}


def debian(root: Path, release: str, machine: str) -> CrashImage:
    settings = read_shell_vars(root, DEBIAN_DEFAULTS)
    initrd_from: Origin | None
    if settings.get("KDUMP_KERNEL"):
        kernel = Path(settings["KDUMP_KERNEL"])
        kernel_from = Origin.setting(DEBIAN_DEFAULTS, "KDUMP_KERNEL")
        initrd = Path(settings["KDUMP_INITRD"]) if settings.get("KDUMP_INITRD") else None
        initrd_from = Origin.setting(DEBIAN_DEFAULTS, "KDUMP_INITRD") if initrd else None
        required = initrd is not None
    else:
        kernel = Path(f"/boot/vmlinuz-{release}")
        kernel_from = Origin("running-kernel")
        candidate = Path(f"/boot/initrd.img-{release}")
        initrd = candidate if exists(root, str(candidate)) else None
        initrd_from = Origin("running-kernel") if initrd else None
        required = False
    if settings.get("KDUMP_CMDLINE"):
        base, base_from = settings["KDUMP_CMDLINE"], Setting(DEBIAN_DEFAULTS, "KDUMP_CMDLINE")
    else:
        base = re.sub(r"(^| )(crashkernel|hugepages|hugepagesz|abm)=[^ ]*", "",
                      proc_cmdline(root))
        base_from = Setting("/proc/cmdline")
    # kdump-config: KDUMP_CMDLINE_APPEND=${KDUMP_CMDLINE_APPEND:="..."}: empty means default.
    if settings.get("KDUMP_CMDLINE_APPEND"):
        append = settings["KDUMP_CMDLINE_APPEND"]
        appended: tuple[Setting, ...] = (Setting(DEBIAN_DEFAULTS, "KDUMP_CMDLINE_APPEND"),)
    else:
        append, appended = _kdump_config_default(root, machine)
    args_from = Origin.setting(DEBIAN_DEFAULTS, "KDUMP_KEXEC_ARGS")
    return CrashImage(
        kernel, initrd, squeeze(f"{base} {append}"), required, "debian",
        kernel_from, initrd_from, Origin.tool("kdump-config", base_from, *appended),
        DEBIAN_DEFAULTS,
        kexec_args=admin_kexec_args(settings.get("KDUMP_KEXEC_ARGS", ""), args_from),
        kexec_args_from=args_from,
    )


def _kdump_config_default(root: Path, machine: str) -> tuple[str, tuple[Setting, ...]]:
    """kdump-config's own default KDUMP_CMDLINE_APPEND (debian/rules writes it into the
    script per package architecture), and the script it was read from; kdump-tools'
    per-architecture values without it (and no file: they are kdumpd's copy)."""
    try:
        script = read_regular(root / KDUMP_CONFIG.lstrip("/"), SHELL_FILE_LIMIT)
    except OSError:
        script = b""
    found = re.search(rb'KDUMP_CMDLINE_APPEND:="([^"$`\\]*)"', script)
    if found:
        return (found.group(1).decode("utf-8", "replace"),
                (Setting(KDUMP_CONFIG, "KDUMP_CMDLINE_APPEND"),))
    return DEBIAN_APPEND_BY_MACHINE.get(machine, DEBIAN_APPEND), ()
