"""The composition root: the one place where real implementations are chosen and wired."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kdumpd import arch as archmod
from kdumpd import (
    capacity,
    capacity_facts,
    command,
    image_report,
    loaded_header,
    metrics,
    systemd,
)
from kdumpd import config as configmod
from kdumpd.backends import Backend, BackendError, distro
from kdumpd.backends import tools as toolbackends
from kdumpd.backends.distro import CrashImage
from kdumpd.backends.fake import FakeBackend
from kdumpd.backends.kexec import KexecBackend
from kdumpd.backends.kexec_syscalls import FileLoad
from kdumpd.backends.kexec_syscalls import file_load as kexec_file_load
from kdumpd.backends.runner import CheckedRunner, run
from kdumpd.config import Config, ConfigError
from kdumpd.control_socket import ControlServer
from kdumpd.controller import Controller
from kdumpd.daemon import Daemon, Parts
from kdumpd.hardware import (
    Hardware,
    Reservation,
    read_cmdline,
    read_crash_reservation,
    read_hardware,
    read_text,
)
from kdumpd.kernel_log import open_kernel_log
from kdumpd.reloader import Reloader
from kdumpd.scheduler import ReloadScheduler
from kdumpd.source import UdevSource, resolve_source, udev_answers
from kdumpd.state import FileStore, read_boot_id
from kdumpd.status import NO_RESERVATION, NO_RESERVATION_DT
from kdumpd.sysfs import Sysfs

if TYPE_CHECKING:
    from kdumpd.rules.apply import Keeper

log = logging.getLogger("kdumpd")


def this_machine() -> str:
    """The architecture (``uname -m``): read here only, when asked, never at import."""
    return os.uname().machine


def this_arch() -> archmod.Arch:
    """What kdumpd knows of this architecture (arch.py)."""
    return archmod.facts(this_machine())


def file_load(root: Path) -> FileLoad:
    """Whether the running kernel has kexec_file_load (its configuration under ``root``)."""
    return kexec_file_load(root, os.uname().release)


def reservation(root: Path) -> Reservation:
    """The crash reservation, read from where this architecture publishes it."""
    return read_crash_reservation(root, this_arch().reservation_in)


def backend_name(cfg: Config) -> str:
    """``auto`` is kdumpd's own kexec load of the image the distribution loads: one
    process, the image replaced in one syscall, and it works inside the unit's sandbox,
    where kdumpctl and kdump-config do not (they unload first, then fail on their lock,
    /proc/kcore or a read-only /var). Those two stay available by name."""
    return "kexec" if cfg.reload.backend == "auto" else cfg.reload.backend


def image_source(cfg: Config, root: Path, release: str | None = None,
                 machine: str | None = None) -> Callable[[], CrashImage]:
    """The crash image a reload loads, read again at every reload: the distribution's
    (backends/distro/), with kdumpd's own [reload] kernel/initrd/append where set."""
    release = release or os.uname().release
    machine = machine or this_machine()
    reload = cfg.reload

    def image() -> CrashImage:
        if reload.kernel and reload.append:
            found = CrashImage(Path(reload.kernel), None, reload.append)
        else:
            found = distro.crash_image(root, release, machine)
        image = distro.with_overrides(found, reload.kernel, reload.initrd, reload.append)
        if not reload.growth_safe:
            return image
        return distro.survive_growth(image, machine, distro.acpi_memory_hotplug(root))

    return image


def describe_image(cfg: Config) -> dict[str, Any] | None:
    """What a reload would load now, and where each part came from: kdumpd's own kexec
    load, or the distribution's image, which kdumpctl and kdump-config load
    (image_report.py has the keys)."""
    name = backend_name(cfg)
    if name not in ("kexec", "kdumpctl", "kdump-config"):
        return None
    root = cfg.sysfs.root
    machine = this_machine()
    try:
        image = (image_source(cfg, root)() if name == "kexec"
                 else distro.crash_image(root, os.uname().release, machine))
    except distro.DistroError as error:
        return image_report.failed(str(error))
    except Exception as error:  # a reader's bug on odd input: said, never a traceback
        return image_report.failed(f"reading the distribution's kdump configuration "
                                   f"failed ({type(error).__name__}: {error})")
    note = None
    if name == "kexec" and image.kexec_args_from is not None:
        backend = KexecBackend(image, cfg.reload.load, Sysfs(root), run, cfg.reload.timeout_s,
                               arch=this_arch(), file_load=file_load(root))
        note = backend.choice(image)[1]
    hazard = distro.memory_hotplug_hazard(image, machine,
                                          distro.acpi_memory_hotplug(root))
    if hazard and name == "kexec":
        hazard += "; or set [reload] growth_safe = true"
    elif hazard:
        hazard += ("; kdumpd's own load ([reload] backend = \"auto\") adds it by itself")
    return image_report.report(image, mode=cfg.reload.load if name == "kexec" else None,
                               missing=distro.missing_parts(image, root), kexec_note=note,
                               warning=hazard)


def preflight(cfg: Config) -> list[tuple[str, bool]]:
    """Everything a reload would fail on before its syscall, each with whether it is the
    settings' fault (it cannot pass without a change: a command line too long for the
    kernel, an untrusted file, a load mode impossible here) rather than the machine's now
    (a kernel not installed yet). Empty when a reload could go ahead."""
    backend = make_backend(cfg, Sysfs(cfg.sysfs.root))
    if not isinstance(backend, KexecBackend):
        problem = backend.probe()
        return [] if problem is None else [(problem, False)]
    try:
        return [(str(error), error.permanent) for error in backend.problems()]
    except BackendError as error:  # the image itself cannot be told (distro files)
        return [(str(error), error.permanent)]


def make_backend(cfg: Config, sysfs: Sysfs, *, runner: CheckedRunner = run) -> Backend:
    name = backend_name(cfg)
    timeout = float(cfg.reload.timeout_s)
    if name == "kdumpctl":
        return toolbackends.kdumpctl(runner, timeout)
    if name == "kdump-config":
        return toolbackends.kdump_config(runner, timeout)
    if name == "fake":
        fake = cfg.reload.fake
        return FakeBackend(
            fake.log, sysfs, delay_ms=fake.delay_ms, fail=fake.fail,
            hotplug_after_load=fake.hotplug_after_load,
        )
    return KexecBackend(image_source(cfg, sysfs.root), cfg.reload.load, sysfs, runner, timeout,
                        arch=this_arch(), file_load=file_load(sysfs.root))


def stop_wait_s(timeout_s: float) -> float:
    """How long SIGTERM may wait: the attempt in flight, then one last attempt to restore
    a crash kernel kdumpd unloaded (each bounded by ``timeout_s``), plus slack. The unit's
    TimeoutStopSec must be longer (tests check it against config.MAX_TIMEOUT_S)."""
    return 2.0 * timeout_s + 5.0


def make_parts(cfg: Config, backend: Backend | None = None) -> Parts:
    sysfs = Sysfs(cfg.sysfs.root)
    backend = backend or make_backend(cfg, sysfs)
    root = cfg.sysfs.root
    return Parts(
        reloader=Reloader(backend, sysfs, cfg.reload.retries),
        sysfs=sysfs,
        quiet_s=cfg.events.quiet_ms / 1000,
        max_delay_s=cfg.events.max_delay_ms / 1000,
        stop_wait_s=stop_wait_s(cfg.reload.timeout_s),
        hardware=lambda: read_hardware(root),
        source=cfg.events.source,
        receive_buffer_bytes=cfg.events.receive_buffer_bytes,
    )


def make_controller(cfg: Config, parts: Parts, *, dry_run: bool) -> Controller:
    store = FileStore(cfg.state.dir, read_boot_id(cfg.sysfs.root), writable=not dry_run)
    return Controller(
        ReloadScheduler(parts.quiet_s, parts.max_delay_s), parts.sysfs.snapshot,
        store=store, hardware=parts.hardware, backend=parts.reloader.backend, dry_run=dry_run,
        arch=this_machine(), capacity=capacity_reader(cfg.sysfs.root),
        verify=(lambda: loaded_header.verify(cfg.sysfs.root, arch=this_machine()))
        if cfg.reload.verify_header
        else None,
        protection=growth_safety(cfg),
    )


def growth_safety(cfg: Config) -> Callable[[str], str | None] | None:
    """Why a loaded dump kernel command line would not survive memory growth, where
    kdumpd's own image would ([reload] growth_safe with the kexec backend); else None."""
    if not cfg.reload.growth_safe or backend_name(cfg) != "kexec":
        return None
    root, machine = cfg.sysfs.root, this_machine()
    return lambda line: distro.loaded_lacks_growth_safety(
        line, machine, distro.acpi_memory_hotplug(root))


def capacity_reader(root: Path, arch: str | None = None, release: str | None = None,
                    encryption: Callable[[Path], bool] | None = None,
                    ) -> Callable[[Hardware, str | None], capacity.Capacity]:
    """The reservation under ``root`` (where the architecture publishes it, arch.py)
    against its System RAM now (capacity.py counts it from /proc/iomem as kdump-utils
    does: driver-managed RAM left out, so the hardware reading's ranges are not used),
    with the machine's facts kdump-utils' rule adds to (capacity_facts.py; the kernel's
    memory-encryption line, which cannot change during a boot, is looked up once), and
    the loaded dump kernel's command line (read back; None: not known), which says
    whether it would take the memory in ACPI memory slots as its own (the measured rule)."""
    machine = arch or this_machine()
    version = release or os.uname().release
    where = archmod.facts(machine).reservation_in
    found: list[bool] = []

    def encrypted(at: Path) -> bool:
        if not found:
            found.append((encryption or capacity_facts.memory_encryption_active)(at))
        return found[0]

    def capacity_now(hardware: Hardware, loaded_cmdline: str | None = None
                     ) -> capacity.Capacity:
        iomem = read_text(root / "proc/iomem")
        reservation = read_crash_reservation(root, where)
        if not reservation.listed or reservation.size is None:
            # Nothing reserved (said on its own, with crashkernel=) or addresses hidden.
            return capacity.Capacity(0, 0, "no reservation to compare")
        return capacity.check(reservation.size, capacity.system_ram_bytes(iomem),
                              read_cmdline(root),
                              capacity_facts.read_machine(root, machine, version, encrypted),
                              capacity_facts.taken_bytes(root, machine, loaded_cmdline))

    return capacity_now


def make_daemon(
    cfg: Config,
    *,
    dry_run: bool,
    reconfigure: Callable[[], Parts | None],
    notify: Callable[[str], None],
    watchdog_s: float | None,
    rules_watch: Callable[[], None] | None = None,
) -> Daemon:
    parts = make_parts(cfg)
    controller = make_controller(cfg, parts, dry_run=dry_run)
    kind = resolve_source(cfg.events.source, udev_answers)
    source = UdevSource(kind, cfg.events.receive_buffer_bytes)
    log.info(
        "event source %s (receive buffer %d bytes), backend %s%s",
        kind, source.granted_buffer, parts.reloader.backend.describe(),
        " (dry run: nothing is reloaded or written)" if dry_run else "",
    )
    if not reservation(cfg.sysfs.root).listed:
        log.warning(NO_RESERVATION_DT if this_arch().reservation_in == archmod.DEVICE_TREE
                    else NO_RESERVATION)  # once: the policy never reloads without a crash kernel
    warning = (describe_image(cfg) or {}).get("warning")
    if warning:
        log.warning("the crash kernel image: %s", warning)
    kernel_log, why = open_kernel_log(cfg.events.kernel_log, cfg.sysfs.root)
    if kernel_log is None:
        log.warning("cannot read the kernel's messages: %s; kdumpd does not see the header "
                    "updates the kernel skips (\"kexec_trylock() failed\")", why)
    return Daemon(
        controller, source, parts,
        reconfigure=reconfigure, notify=notify,
        handover=None if dry_run else cfg.rule.handover,
        restart_pending=lambda: systemd.restart_pending(command.run, _own_cgroup()),
        watchdog_s=watchdog_s,
        udev_alive=udev_answers,  # asked only while [events] source is not "kernel"
        rules_watch=rules_watch,
        kernel_log=kernel_log,
        control=None if dry_run else ControlServer(cfg.state.control,
                                                    known=lambda: controller.knowledge().as_dict()),
        metrics=None if dry_run else metrics_file(cfg, controller, parts.sysfs),
    )


def _own_cgroup() -> str:
    """/proc/self/cgroup: the unit kdumpd runs in ("" when it cannot be read)."""
    try:
        return Path("/proc/self/cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def metrics_file(cfg: Config, controller: Controller, sysfs: Sysfs) -> metrics.TextFile | None:
    """kdumpd.prom when [metrics] textfile_dir names a directory; the journal says which
    file and who owns its directory (or why kdumpd refuses it)."""
    directory = metrics.textfile_dir(cfg.metrics.textfile_dir)
    if directory is None:
        return None
    log.info("metrics: %s", metrics.locate(directory).line())
    where = this_arch().reservation_in
    return metrics.TextFile(directory, lambda: metrics.gather(
        controller.knowledge(), sysfs, controller.hardware, where))


def make_rule_keeper(cfg: Config, *, dry_run: bool) -> Keeper:
    """``[rule] state`` for `kdumpd run`, fadump read under the configured sysfs root."""
    # Only `kdumpd run` needs the rule machinery: other commands do not import it.
    from kdumpd.rules.apply import Keeper
    from kdumpd.rules.manage import Env, fadump_enabled

    return Keeper(cfg, dry_run=dry_run, env=Env(fadump=lambda: fadump_enabled(cfg.sysfs.root)))


# Settings a running daemon cannot take over consistently: its state and lock, the
# hand-over file the udev rules test, the tree everything is read from.
RESTART_KEYS = ("state.dir", "state.control", "rule.handover", "sysfs.root")


def reloading_config(
    path: Path, on_config: Callable[[Config], None], load: Callable[[Path], Config],
    current: Config,
) -> Callable[[], Parts | None]:
    """SIGHUP: re-read ``path`` with ``load``; a broken file, or one that changes a
    setting only a restart can apply, is logged and the old config kept. The log says
    what changed."""
    running = [current]

    def reconfigure() -> Parts | None:
        try:
            cfg = load(path)
        except ConfigError as error:
            log.error("configuration not reloaded, keeping the old one: %s", error)
            return None
        changed = configmod.changes(running[0], cfg)
        fixed = [key for key in RESTART_KEYS if key in changed]
        if fixed:
            log.error("configuration not reloaded, keeping the old one: %s changed; "
                      "restart kdumpd to apply it (systemctl restart kdumpd)", ", ".join(fixed))
            return None
        try:
            on_config(cfg)
        except ConfigError as error:
            log.error("configuration not reloaded, keeping the old one: %s", error)
            return None
        running[0] = cfg
        log.info("configuration reloaded: %s", "; ".join(
            f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
            or "nothing changed")
        return make_parts(cfg)

    return reconfigure
