"""The crash kernel each distribution loads: kernel, initrd and command line, and where
each came from.

kdumpd reloads *that* image (kdumpd's own load over the loaded one, in one syscall),
so a crash kernel it loads boots into the distribution's dump path. What each kdump
tool does, read from its sources (see tests/fixtures/distro/README.md):

- Debian/Ubuntu kdump-tools (``kdump-config load``, 1.8.1 and 1.10.7): sources
  ``/etc/default/kdump-tools``; ``KDUMP_KERNEL``/``KDUMP_INITRD`` (else the running
  kernel's ``/boot/vmlinuz-<release>`` and ``/boot/initrd.img-<release>``); the command
  line is ``KDUMP_CMDLINE`` or /proc/cmdline without ``crashkernel=``, ``hugepages=``,
  ``hugepagesz=``, ``abm=``, then ``KDUMP_CMDLINE_APPEND`` (default below).
- Fedora/RHEL kdump-utils (``kdumpctl``, ``prepare_kdump_bootinfo``/``prepare_cmdline``
  in kdump-lib.sh): ``/etc/sysconfig/kdump``; the kernel of ``KDUMP_KERNELVER`` (or the
  running one, or its non-debug twin) found as kdumpctl looks for it (BOOT_IMAGE,
  ``vmlinuz-<ver>``, the Boot Loader Specification and UKI names, OSTree deployments, in
  ``KDUMP_BOOTDIR``), the kdump initrd kdumpctl built beside its initramfs
  (``initramfs-<ver>kdump.img``) or under /var/lib/kdump; the command line
  is ``KDUMP_COMMANDLINE`` or /proc/cmdline without ``KDUMP_COMMANDLINE_REMOVE`` and the
  options kdumpctl always removes, then ``KDUMP_COMMANDLINE_APPEND``,
  ``disable_cpu_apicid=`` of CPU 0, ``<driver>.pretimeout=0`` for each watchdog's driver
  (``hpwdt.kdumptimeout=0`` too; the drivers modprobe would name, read from the kernel's
  modules.alias) and ``rd.systemd.gpt_auto=no``. Not reproduced: dropping ``irqpoll`` on
  AWS Graviton (kdumpctl asks lscpu for the BIOS model name).
- openSUSE/SLES kdump (``/usr/lib/kdump/load.sh``): ``/etc/sysconfig/kdump``; kernel
  ``/var/lib/kdump/kernel``, initrd ``/var/lib/kdump/initrd``; the command line of
  ``build_kdump_commandline`` (not its Xen serial console).

Every file is read under an injected root; nothing here runs a command.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from kdumpd.security import fd_problem
from kdumpd.smallfile import read_regular

DEBIAN_DEFAULTS = "/etc/default/kdump-tools"
KDUMP_CONFIG = "/usr/sbin/kdump-config"
SYSCONFIG = "/etc/sysconfig/kdump"
# kdump-tools' debian/rules builds its default KDUMP_CMDLINE_APPEND per architecture.
_DEBIAN_DUMP = "reset_devices systemd.unit=kdump-tools-dump.service"
DEBIAN_APPEND = f"{_DEBIAN_DUMP} nr_cpus=1 irqpoll usbcore.nousb"
DEBIAN_APPEND_BY_MACHINE = {
    "aarch64": f"{_DEBIAN_DUMP} nr_cpus=1",
    "ppc64le": f"{_DEBIAN_DUMP} maxcpus=1 irqpoll noirqdistrib usbcore.nousb",
}
# kdumpctl's prepare_cmdline always removes these.
FEDORA_DEFAULT_REMOVE = "hugepages hugepagesz slub_debug"
FEDORA_ALWAYS_REMOVED = ("crashkernel", "panic_on_warn", "root", "rd.lvm.lv", "rd.luks.uuid",
                         "rd.dm.uuid", "rd.md.uuid", "fcoe", "netroot", "rd.iscsi.initiator",
                         "iscsi_initiator")
SUSE_REMOVED = ("root|resume|crashkernel|splash|mem|BOOT_IMAGE|showopts|zfcp\\.allow_lun_scan|"
                "hugepages|acpi_no_memhotplug|cgroup_disable|unknown_nmi_panic|"
                "rd\\.udev\\.children-max")

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


SHELL_FILE_LIMIT = 1 << 20  # a kdump tool's shell configuration is a few KiB
SMALL_FILE_LIMIT = 64 << 10  # a modalias, /etc/machine-id, an EFI variable, /proc/cmdline
EFI_STUB_IMAGE = ("/sys/firmware/efi/efivars/"
                  "StubImageIdentifier-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f")
ALIAS_FILE_LIMIT = 16 << 20  # modules.alias: 1.3 MiB on Fedora 42


class DistroError(Exception):
    """The distribution's kdump configuration cannot be used; one line naming the file."""


@dataclass(frozen=True)
class CrashImage:
    """The crash kernel a reload loads, and where each part came from."""

    kernel: Path
    initrd: Path | None
    append: str
    initrd_required: bool = False  # the distribution boots its dump path from an initrd
    family: str = "configured"  # "debian", "fedora", "suse", "generic" (none found)
    kernel_from: str = "reload.kernel"
    initrd_from: str = "reload.initrd"
    append_from: str = "reload.append"
    config_file: str = ""  # the distribution's kdump configuration it was read from

    def sources(self) -> dict[str, str]:
        """What would be loaded and where each part came from, for `kdumpd status`."""
        return {
            "kernel": f"{self.kernel} ({self.kernel_from})",
            "initrd": f"{self.initrd or 'none'} ({self.initrd_from})",
            "append": f"{self.append} ({self.append_from})",
        }


def family(root: Path) -> str:
    """Which distribution kdump is installed under ``root``."""
    if _exists(root, DEBIAN_DEFAULTS) or _exists(root, "/usr/sbin/kdump-config"):
        return "debian"
    if _exists(root, "/usr/lib/kdump/load.sh"):
        return "suse"
    if _exists(root, "/usr/bin/kdumpctl") or _exists(root, "/usr/sbin/kdumpctl"):
        return "fedora"
    return "generic"


def crash_image(root: Path, release: str, machine: str) -> CrashImage:
    """The image the distribution under ``root`` loads for kernel ``release``.

    Raises DistroError when its configuration cannot be evaluated safely.
    """
    readers = {"debian": debian, "fedora": fedora, "suse": suse, "generic": generic}
    return readers[family(root)](root, release, machine)


def debian(root: Path, release: str, machine: str) -> CrashImage:
    settings = read_shell_vars(root, DEBIAN_DEFAULTS)
    where = f"{DEBIAN_DEFAULTS} ({{}})"
    if settings.get("KDUMP_KERNEL"):
        kernel = Path(settings["KDUMP_KERNEL"])
        kernel_from = where.format("KDUMP_KERNEL")
        initrd = Path(settings["KDUMP_INITRD"]) if settings.get("KDUMP_INITRD") else None
        initrd_from = where.format("KDUMP_INITRD") if initrd else "none (KDUMP_INITRD empty)"
        required = initrd is not None
    else:
        kernel = Path(f"/boot/vmlinuz-{release}")
        kernel_from = "the running kernel (KDUMP_KERNEL empty)"
        candidate = Path(f"/boot/initrd.img-{release}")
        initrd = candidate if _exists(root, str(candidate)) else None
        initrd_from = "the running kernel's" if initrd else "none (no initrd for it)"
        required = False
    if settings.get("KDUMP_CMDLINE"):
        base, base_from = settings["KDUMP_CMDLINE"], "KDUMP_CMDLINE"
    else:
        base = re.sub(r"(^| )(crashkernel|hugepages|hugepagesz|abm)=[^ ]*", "",
                      _proc_cmdline(root))
        base_from = "/proc/cmdline"
    # kdump-config: KDUMP_CMDLINE_APPEND=${KDUMP_CMDLINE_APPEND:="..."}: empty means default.
    append = settings.get("KDUMP_CMDLINE_APPEND") or _kdump_config_default(root, machine)
    appended = (where.format("KDUMP_CMDLINE_APPEND") if settings.get("KDUMP_CMDLINE_APPEND")
                else "kdump-config's default KDUMP_CMDLINE_APPEND")
    return CrashImage(
        kernel, initrd, _squeeze(f"{base} {append}"), required, "debian",
        kernel_from, initrd_from, f"{base_from} as kdump-config edits it, then {appended}",
        DEBIAN_DEFAULTS,
    )


def _kdump_config_default(root: Path, machine: str) -> str:
    """kdump-config's own default KDUMP_CMDLINE_APPEND (debian/rules writes it into the
    script per package architecture); kdump-tools' per-architecture values without it."""
    try:
        script = read_regular(root / KDUMP_CONFIG.lstrip("/"), SHELL_FILE_LIMIT)
    except OSError:
        script = b""
    found = re.search(rb'KDUMP_CMDLINE_APPEND:="([^"$`\\]*)"', script)
    if found:
        return found.group(1).decode("utf-8", "replace")
    return DEBIAN_APPEND_BY_MACHINE.get(machine, DEBIAN_APPEND)


def fedora(root: Path, release: str, machine: str) -> CrashImage:
    settings = read_shell_vars(root, SYSCONFIG)
    version = settings.get("KDUMP_KERNELVER") or _kdumpctl_version(root, release)
    cmdline = _proc_cmdline(root)
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
    apicid = _boot_cpu_apicid(root, "apicid")
    if apicid:
        parts.append(f"disable_cpu_apicid={apicid}")
    for driver in watchdog_drivers(root, version):
        # A pretimeout would panic the dump kernel instead of letting the watchdog reset.
        parts.append(f"{driver}.pretimeout=0")
        if driver == "hpwdt":
            parts.append("hpwdt.kdumptimeout=0")
    parts.append("rd.systemd.gpt_auto=no")
    return CrashImage(
        kernel, initrd, _squeeze(" ".join(parts)), True, "fedora",
        f"{SYSCONFIG} (KDUMP_KERNELVER, KDUMP_IMG) as kdumpctl finds it",
        "kdumpctl's kdump initramfs for that kernel",
        f"{'KDUMP_COMMANDLINE' if settings.get('KDUMP_COMMANDLINE') else '/proc/cmdline'} "
        f"as kdumpctl's prepare_cmdline edits it ({SYSCONFIG})",
        SYSCONFIG,
    )


def _kdumpctl_version(root: Path, release: str) -> str:
    """_get_kdump_kernel_version: a debug kernel dumps with its non-debug twin if installed."""
    plain = re.sub(r"[+-]debug$", "", release)
    if plain != release and _exists(root, f"/usr/lib/modules/{plain}/modules.dep"):
        return plain
    return release


def _kdumpctl_kernel(root: Path, settings: dict[str, str], version: str,
                     cmdline: str) -> Path:
    """prepare_kdump_kernel: the first image that exists, names within directories."""
    image = settings.get("KDUMP_IMG") or "vmlinuz"
    machine_id = (_small_text(root, "/etc/machine-id").splitlines() or [""])[0].strip()
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
    if _exists(root, "/run/ostree-booted"):
        dirs[:0] = sorted(f"/{p.relative_to(root)}" for p in (root / "boot/ostree").glob("*"))
    for directory in dirs:
        for name in images:
            path = re.sub("/+", "/", f"{directory}/{name}")
            if _is_file(root, Path(path)):
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
                    if _is_file(root, boot / name)), None)
    state = Path(f"/var/lib/kdump/initramfs-{version}kdump.img")
    if default is None:
        return state
    if default.name.endswith(".img"):
        beside = default.with_name(default.name[:-len(".img")] + "kdump.img")
    else:
        beside = default.with_name(default.name + "kdump")
    built = [(_mtime(root, path), path) for path in (beside, state) if _is_file(root, path)]
    return max(built)[1] if built else beside


def _is_file(root: Path, path: Path) -> bool:
    return (root / str(path).lstrip("/")).is_file()


def _mtime(root: Path, path: Path) -> float:
    try:
        return (root / str(path).lstrip("/")).stat().st_mtime
    except OSError:  # removed since it was seen: the other one, if any
        return float("-inf")


def suse(root: Path, release: str, machine: str) -> CrashImage:
    settings = read_shell_vars(root, SYSCONFIG)
    commandline = settings.get("KDUMP_COMMANDLINE", "")
    if not commandline:
        commandline = _remove_options(_proc_cmdline(root), SUSE_REMOVED)
        cpus = settings.get("KDUMP_CPUS") or "32"  # kdump-read-config.sh's default
        if not re.fullmatch(r"-?[0-9]+", cpus):
            cpus = "32"  # kdump-read-config.sh ignores a value that is not a number
        if _exists(root, "/proc/xen"):
            cpus = "1"  # load.sh: makedumpfile cannot use threads on Xen
        nr_cpus = f"nr_cpus={cpus}" if int(cpus) != 0 else ""
        commandline += (" sysrq=yes reset_devices acpi_no_memhotplug cgroup_disable=memory "
                        f"nokaslr numa=off irqpoll {nr_cpus} root=kdump rootflags=bind "
                        "rd.udev.children-max=8")
        if re.fullmatch(r"i.86|x86_64", machine):
            apicid = _boot_cpu_apicid(root, "initial apicid")
            if apicid:
                commandline += f" disable_cpu_apicid={apicid}"
            commandline = _remove_options(commandline, "unknown_nmi_panic|notsc|console=hvc0")
        elif machine.startswith("s390"):
            commandline += " zfcp.allow_lun_scan=0"
    commandline += " " + settings.get("KDUMP_COMMANDLINE_APPEND", "")
    if _remove_options(commandline, "panic") == _squeeze(commandline):
        commandline += " panic=1"
    return CrashImage(
        Path("/var/lib/kdump/kernel"), Path("/var/lib/kdump/initrd"), _squeeze(commandline),
        True, "suse",
        "load.sh's /var/lib/kdump/kernel", "load.sh's /var/lib/kdump/initrd (mkdumprd)",
        f"load.sh's build_kdump_commandline ({SYSCONFIG})", SYSCONFIG,
    )


def generic(root: Path, release: str, machine: str) -> CrashImage:
    initrd = Path(f"/boot/initrd.img-{release}")
    found = initrd if _exists(root, str(initrd)) else None
    return CrashImage(
        Path(f"/boot/vmlinuz-{release}"), found, default_append(_proc_cmdline(root), machine),
        False, "generic",
        "the running kernel (no distribution kdump found)",
        "the running kernel's" if found else "none",
        "/proc/cmdline without what a dump kernel must not inherit, plus Fedora's "
        "dump-kernel options",
    )


def default_append(cmdline: str, machine: str = "x86_64") -> str:
    """A dump kernel's command line derived from the running kernel's (see GENERIC_*)."""
    kept = [word for word in cmdline.split()
            if not any(word == d or word.startswith(d) for d in GENERIC_DROP)]
    extra = GENERIC_APPEND + (f" {X86_ONLY}" if re.fullmatch(r"i.86|x86_64", machine) else "")
    return " ".join([*kept, *extra.split()])


# Where each family's dump kernel command line takes extra options.
APPEND_SETTING = {
    "debian": f"KDUMP_CMDLINE_APPEND in {DEBIAN_DEFAULTS}",
    "fedora": f"KDUMP_COMMANDLINE_APPEND in {SYSCONFIG}",
    "suse": f"KDUMP_COMMANDLINE_APPEND in {SYSCONFIG}",
}


def acpi_memory_hotplug(root: Path) -> bool:
    """Whether the machine has ACPI memory devices (PNP0C80): slots a DIMM can be hot-added to."""
    return any((root / "sys/bus/acpi/devices").glob("PNP0C80:*"))


def memory_hotplug_hazard(image: CrashImage, machine: str, acpi_slots: bool) -> str | None:
    """Why the dump kernel of ``image`` may take memory hot-added before the panic as its
    own, or None.

    On x86 with ACPI memory slots (``acpi_slots``) the dump kernel finds hot-added DIMMs in
    the ACPI tables and adds them as its own memory unless told not to with
    ``acpi_no_memhotplug``; it then runs in the memory it should dump, and makedumpfile's
    read of it fails ("ioremap on RAM"). Seen with Debian's kdump-tools in the Debian 13
    guest (tests/vm, scenario 14); Fedora's default append has ``acpi_no_memhotplug``.
    ``memhp_default_state=offline`` does not count: the memory is still added, and a udev
    rule in the dump initrd may online it.
    """
    if not acpi_slots or not re.fullmatch(r"i.86|x86_64", machine):
        return None
    words = image.append.split()
    if "acpi_no_memhotplug" in words:
        return None
    states = [word.split("=", 1)[1] for word in words
              if word.startswith("memhp_default_state=")]
    setting = ("reload.append" if image.append_from == "reload.append"
               else APPEND_SETTING.get(image.family, "reload.append"))
    inherited = f", and it has memhp_default_state={states[-1]}" if states else ""
    return (f"the dump kernel's command line lacks acpi_no_memhotplug{inherited}: after a "
            "memory hot-add it may online the new memory as its own and the dump can fail; "
            f"add acpi_no_memhotplug to {setting}")


def read_shell_vars(root: Path, path: str) -> dict[str, str]:
    """``NAME=value`` lines of a shell file that a kdump tool sources; missing file: {}.

    Quotes are undone the way the shell would; a value that needs the shell to expand
    (``$``, backquotes) cannot be known without running it and raises DistroError.
    """
    try:
        # Never blocks (a FIFO), never reads without bound, and as root the file read is
        # the file checked: root's, not writable by others.
        data = read_regular(root / path.lstrip("/"), SHELL_FILE_LIMIT + 1, fd_problem)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise DistroError(f"{path}: cannot read: {error.strerror}") from None
    if len(data) > SHELL_FILE_LIMIT:
        raise DistroError(f"{path}: larger than {SHELL_FILE_LIMIT} bytes: not a kdump "
                          "configuration")
    text = data.decode("utf-8", errors="replace")
    values: dict[str, str] = {}
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not match:
            continue
        name, raw = match.groups()
        first = number
        while True:  # a quoted value may go on over several lines
            try:
                words = shlex.split(raw, comments=True, posix=True)
                break
            except ValueError as error:
                if number >= len(lines):
                    raise DistroError(f"{path}:{first}: {name}: {error}") from None
                raw += "\n" + lines[number]
                number += 1
        if _needs_expansion(raw):
            raise DistroError(f"{path}:{first}: {name} needs the shell to expand it; "
                              "kdumpd does not run it: set reload.kernel/initrd/append instead")
        value = " ".join(words)
        if "'" not in raw:  # in double quotes the shell undoes \$ and \` (shlex does not)
            value = value.replace("\\$", "$").replace("\\`", "`")
        values[name] = value
    return values


def _needs_expansion(raw: str) -> bool:
    """True when the shell would expand something in ``raw`` ($, backquotes outside
    single quotes and not escaped with a backslash)."""
    quote = ""
    escaped = False
    for char in raw:
        if escaped:
            escaped = False
        elif quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif char == "'" and not quote:
            quote = "'"
        elif char == "#" and not quote:
            return False
        elif char in "$`":
            return True
        elif char == '"':
            quote = "" if quote == '"' else '"'
    return False


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


def _remove_options(cmdline: str, names: str) -> str:
    """Drop words whose option name matches the regex alternation ``names`` (SUSE's
    remove_from_commandline: ``^(names)(=|$)`` on each word, quotes ignored)."""
    pattern = re.compile(f"^({names})(=|$)")
    return _squeeze(" ".join(w for w in _words(cmdline) if not pattern.match(w.replace('"', ""))))


def _words(cmdline: str) -> list[str]:
    return re.findall(r'(?:"[^"]*"?|[^"\s])+', cmdline)


def watchdog_drivers(root: Path, version: str) -> list[str]:
    """kdumpctl's get_watchdog_drvs: the modules ``modprobe --set-version <version> -R``
    names for each /sys/class/watchdog/*/device/modalias, each once, in order.

    Like modprobe, this matches the alias against the shell patterns of that kernel's
    modules.alias and, only when none matches, the aliases of its built-in drivers
    (modules.builtin.modinfo), with "-" and "_" alike. A watchdog without a device
    (softdog) has no modalias and adds nothing, as in kdumpctl.
    """
    aliases = []
    for modalias in sorted((root / "sys/class/watchdog").glob("*/device/modalias")):
        try:
            aliases.append(read_regular(modalias, SMALL_FILE_LIMIT).decode("ascii", "replace"))
        except OSError:
            continue
    drivers: list[str] = []
    if not aliases:
        return drivers
    directory = _modules_dir(root, version)
    modules, builtin = _module_aliases(directory), None
    for alias in (_normalize(a.strip()) for a in aliases):
        found = _matches(alias, modules)
        if not found:
            builtin = _builtin_aliases(directory) if builtin is None else builtin
            found = _matches(alias, builtin)
        drivers.extend(m for m in dict.fromkeys(found) if m not in drivers)
    return drivers


AliasTable = list[tuple[str, str, str]]  # (literal prefix, pattern, module), normalised


def _matches(alias: str, table: AliasTable) -> list[str]:
    return [module for prefix, pattern, module in table
            if alias.startswith(prefix) and fnmatch.fnmatchcase(alias, pattern)]


def _modules_dir(root: Path, version: str) -> Path:
    usr = root / "usr/lib/modules" / version
    return usr if usr.is_dir() else root / "lib/modules" / version


def _module_aliases(directory: Path) -> AliasTable:
    """The ``alias <pattern> <module>`` lines of modules.alias."""
    try:
        text = _read_whole(directory / "modules.alias").decode("utf-8", "replace")
    except OSError:
        return []
    words = (line.split() for line in text.splitlines())
    return [_alias_entry(w[1], w[2]) for w in words if len(w) == 3 and w[0] == "alias"]


def _builtin_aliases(directory: Path) -> AliasTable:
    """The ``<module>.alias=<pattern>`` entries of modules.builtin.modinfo (NUL-separated);
    depmod writes the built-in aliases only in binary form otherwise."""
    try:
        data = _read_whole(directory / "modules.builtin.modinfo")
    except OSError:
        return []
    table = []
    for entry in data.decode("utf-8", "replace").split("\0"):
        module, _, field = entry.partition(".")
        key, equals, pattern = field.partition("=")
        if key == "alias" and equals and pattern:
            table.append(_alias_entry(pattern, module))
    return table


def _read_whole(path: Path) -> bytes:
    data = read_regular(path, ALIAS_FILE_LIMIT + 1)
    if len(data) > ALIAS_FILE_LIMIT:  # a cut last line could name the wrong module
        raise DistroError(f"{path}: larger than {ALIAS_FILE_LIMIT >> 20} MiB")
    return data


def _alias_entry(pattern: str, module: str) -> tuple[str, str, str]:
    pattern = _normalize(pattern)
    return re.split(r"[*?\[]", pattern, maxsplit=1)[0], pattern, module


def _normalize(alias: str) -> str:
    """kmod's alias_normalize: "-" is "_" outside bracket expressions."""
    if "[" not in alias:
        return alias.replace("-", "_")
    out, in_brackets = [], False
    for char in alias:
        if char == "[":
            in_brackets = True
        elif char == "]":
            in_brackets = False
        out.append("_" if char == "-" and not in_brackets else char)
    return "".join(out)


def _boot_cpu_apicid(root: Path, field: str) -> str:
    """CPU 0's ``apicid`` (or ``initial apicid``) from /proc/cpuinfo; "" if none."""
    try:
        text = (root / "proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    cpu = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            cpu = value
        elif key == field and cpu == "0":
            return value
    return ""


def _proc_cmdline(root: Path) -> str:
    return _small_text(root, "/proc/cmdline").strip()


def _small_text(root: Path, path: str) -> str:
    """A small file's text under ``root``; "" when it cannot be read."""
    try:
        data = read_regular(root / path.lstrip("/"), SMALL_FILE_LIMIT)
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def _exists(root: Path, path: str) -> bool:
    return (root / path.lstrip("/")).exists()


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def with_overrides(image: CrashImage, kernel: str, initrd: str, append: str) -> CrashImage:
    """kdumpd's own [reload] kernel/initrd/append, where set, win over the distribution's."""
    return CrashImage(
        Path(kernel) if kernel else image.kernel,
        Path(initrd) if initrd else image.initrd,
        append or image.append,
        image.initrd_required and not initrd,
        image.family,
        "reload.kernel" if kernel else image.kernel_from,
        "reload.initrd" if initrd else image.initrd_from,
        "reload.append" if append else image.append_from,
        image.config_file,
    )
