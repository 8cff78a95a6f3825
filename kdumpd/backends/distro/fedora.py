"""Fedora's and RHEL's kdump-utils (``kdumpctl``, ``prepare_kdump_bootinfo`` and
``prepare_cmdline`` in kdump-lib.sh).

It sources ``/etc/sysconfig/kdump``; the kernel of ``KDUMP_KERNELVER`` (or the running
one, or its non-debug twin) found as kdumpctl looks for it (BOOT_IMAGE,
``vmlinuz-<ver>``, the Boot Loader Specification and UKI names, OSTree deployments, in
``KDUMP_BOOTDIR``), the kdump initrd kdumpctl built beside its initramfs
(``initramfs-<ver>kdump.img``) or under /var/lib/kdump; the command line is
``KDUMP_COMMANDLINE`` or /proc/cmdline without ``KDUMP_COMMANDLINE_REMOVE`` and the options
kdumpctl always removes, then ``KDUMP_COMMANDLINE_APPEND``, ``disable_cpu_apicid=`` of CPU
0, ``<driver>.pretimeout=0`` for each watchdog's driver (``hpwdt.kdumptimeout=0`` too; see
watchdog.py) and ``rd.systemd.gpt_auto=no``. Not reproduced: dropping ``irqpoll`` on AWS
Graviton (kdumpctl asks lscpu for the BIOS model name).
"""

from __future__ import annotations

import contextlib
import re
import shlex
from pathlib import Path

from kdumpd.backends.distro.files import (
    SMALL_FILE_LIMIT,
    SYSCONFIG,
    boot_cpu_apicid,
    exists,
    is_file,
    mtime,
    proc_cmdline,
    small_text,
    squeeze,
)
from kdumpd.backends.distro.image import CrashImage, admin_kexec_args
from kdumpd.backends.distro.origin import Origin, Setting
from kdumpd.backends.distro.shellvars import read_shell_vars
from kdumpd.backends.distro.watchdog import find_watchdogs
from kdumpd.smallfile import read_regular

# kdumpctl's prepare_cmdline always removes these.
FEDORA_DEFAULT_REMOVE = "hugepages hugepagesz slub_debug"

FEDORA_ALWAYS_REMOVED = ("crashkernel", "panic_on_warn", "root", "rd.lvm.lv", "rd.luks.uuid",
                         "rd.dm.uuid", "rd.md.uuid", "fcoe", "netroot", "rd.iscsi.initiator",
                         "iscsi_initiator")

EFI_STUB_IMAGE = ("/sys/firmware/efi/efivars/"
                  "StubImageIdentifier-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f")


def fedora(root: Path, release: str, machine: str) -> CrashImage:
    settings = read_shell_vars(root, SYSCONFIG)
    version = settings.get("KDUMP_KERNELVER") or _kdumpctl_version(root, release)
    cmdline = proc_cmdline(root)
    kernel = _kdumpctl_kernel(root, settings, version, cmdline)
    initrd = _kdumpctl_initrd(root, kernel.parent, version)
    base = settings.get("KDUMP_COMMANDLINE") or cmdline
    # kdumpctl: KDUMP_COMMANDLINE_REMOVE defaults to these when the file does not set it;
    # its entries are option names ("foo=bar" removes every "foo").
    remove_setting = settings.get("KDUMP_COMMANDLINE_REMOVE", FEDORA_DEFAULT_REMOVE)
    removed = set(FEDORA_ALWAYS_REMOVED) | {n for n, _ in _kdumpctl_options(remove_setting)}
    kept = [name if value is None else f"{name}={value}"
            for name, value in _kdumpctl_options(base) if name not in removed]
    parts = [*kept, settings.get("KDUMP_COMMANDLINE_APPEND", "")]
    apicid = boot_cpu_apicid(root, "apicid")
    if apicid:
        parts.append(f"disable_cpu_apicid={apicid}")
    watchdogs = find_watchdogs(root, version)
    for driver in watchdogs.drivers:
        # A pretimeout would panic the dump kernel instead of letting the watchdog reset.
        parts.append(f"{driver}.pretimeout=0")
        if driver == "hpwdt":
            parts.append("hpwdt.kdumptimeout=0")
    parts.append("rd.systemd.gpt_auto=no")
    args_from = Origin.setting(SYSCONFIG, "KEXEC_ARGS")
    return CrashImage(
        kernel, initrd, squeeze(" ".join(parts)), True, "fedora",
        Origin.tool("kdumpctl", *_set(settings, "KDUMP_KERNELVER", "KDUMP_IMG",
                                      "KDUMP_IMG_EXT", "KDUMP_BOOTDIR")),
        Origin.tool("kdumpctl"),
        Origin.tool("kdumpctl", *_set(settings, "KDUMP_COMMANDLINE"),
                    *(() if settings.get("KDUMP_COMMANDLINE") else (Setting("/proc/cmdline"),)),
                    *_set(settings, "KDUMP_COMMANDLINE_REMOVE", "KDUMP_COMMANDLINE_APPEND")),
        SYSCONFIG,
        kexec_args=admin_kexec_args(settings.get("KEXEC_ARGS", ""), args_from),
        kexec_args_from=args_from,
        not_derived=tuple(f"watchdog {line}: its <driver>.pretimeout=0 is left out"
                          for line in watchdogs.unknown),
    )


def _set(settings: dict[str, str], *keys: str) -> tuple[Setting, ...]:
    """The settings of /etc/sysconfig/kdump among ``keys`` that are set (non-empty)."""
    return tuple(Setting(SYSCONFIG, key) for key in keys if settings.get(key))


def _kdumpctl_version(root: Path, release: str) -> str:
    """_get_kdump_kernel_version: a debug kernel dumps with its non-debug twin if installed."""
    plain = re.sub(r"[+-]debug$", "", release)
    if plain != release and exists(root, f"/usr/lib/modules/{plain}/modules.dep"):
        return plain
    return release


def _kdumpctl_kernel(root: Path, settings: dict[str, str], version: str,
                     cmdline: str) -> Path:
    """prepare_kdump_kernel: the first image that exists, names within directories."""
    image = settings.get("KDUMP_IMG") or "vmlinuz"
    machine_id = (small_text(root, "/etc/machine-id").splitlines() or [""])[0].strip()
    try:  # the UKI the firmware booted, as a path with backslashes
        stub = read_regular(root / EFI_STUB_IMAGE.lstrip("/"), SMALL_FILE_LIMIT)
        uki = "".join(chr(b) for b in stub if 32 <= b < 127).replace("\\", "/")
    except OSError:
        uki = f"EFI/Linux/{machine_id}-{version}.efi"
    standard = f"{image}-{version}{settings.get('KDUMP_IMG_EXT', '')}"
    images = [standard, f"{machine_id}/{version}/{image}", uki]
    boot_image = re.search(r"^BOOT_IMAGE=(?:\([^)]*\))?(\S*)", cmdline)
    if boot_image and boot_image.group(1).endswith(version):
        images.insert(0, boot_image.group(1))
    dirs = (settings.get("KDUMP_BOOTDIR") or "/boot /boot/efi /efi /").split()
    if exists(root, "/run/ostree-booted"):
        dirs[:0] = sorted(f"/{p.relative_to(root)}" for p in (root / "boot/ostree").glob("*"))
    for directory in dirs:
        for name in images:
            path = re.sub("/+", "/", f"{directory}/{name}")
            if is_file(root, Path(path)):
                return Path(path)
    return Path(dirs[0] if dirs else "/boot") / standard  # none: the load check names it


def _kdumpctl_initrd(root: Path, boot: Path, version: str) -> Path:
    """prepare_kdump_bootinfo's kdump initrd: beside the boot initramfs
    (``initramfs-<ver>kdump.img``, ``initrdkdump``), or under /var/lib/kdump when there is
    none or /boot is read-only to kdumpctl.

    Whether /boot is writable cannot be asked from inside kdumpd's unit, where /boot is
    always read-only (ProtectSystem=strict): the one that exists is the one kdumpctl built,
    the newer one if both do.
    """
    default = next((boot / name for name in (f"initramfs-{version}.img", "initrd")
                    if is_file(root, boot / name)), None)
    state = Path(f"/var/lib/kdump/initramfs-{version}kdump.img")
    if default is None:
        return state
    if default.name.endswith(".img"):
        beside = default.with_name(default.name[:-len(".img")] + "kdump.img")
    else:
        beside = default.with_name(default.name + "kdump")
    built = [(mtime(root, path), path) for path in (beside, state) if is_file(root, path)]
    return max(built)[1] if built else beside


def _kdumpctl_options(cmdline: str) -> list[tuple[str, str | None]]:
    """kdumpctl's _cmdline_parse: xargs splits the words and takes their quotes off;
    "foo=" is dropped; a value with a space in it is quoted again. (name, value or None)."""
    lexer = shlex.shlex(cmdline, posix=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    words: list[str] = []
    with contextlib.suppress(ValueError):  # an unmatched quote: xargs keeps the words
        for word in lexer:                 # before it, and stops
            words.append(word)
    options: list[tuple[str, str | None]] = []
    for word in words:
        name, equals, value = word.partition("=")
        if not name or (equals and not value):
            continue
        if not equals:
            options.append((name, None))
        else:
            options.append((name, f'"{value}"' if any(c.isspace() for c in value) else value))
    return options
