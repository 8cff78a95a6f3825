"""`kdumpd status`: what the kernel says, which backend would run, and the verdict."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from kdumpd import image_report
from kdumpd.arch import DEVICE_TREE, Arch
from kdumpd.backends import Backend
from kdumpd.capacity import Capacity
from kdumpd.events import SUBSYSTEMS
from kdumpd.hardware import Hardware, Reservation, read_crash_reservation
from kdumpd.kernel_log import KernelLog
from kdumpd.loaded_header import HeaderCheck
from kdumpd.metrics import Location
from kdumpd.policy import is_loaded, kernel_updates
from kdumpd.state import State
from kdumpd.sysfs import OK, UNREADABLE, Sysfs, Value

# Version of the `kdumpd status --json` document: bumped when a key changes meaning or
# type (adding a key does not bump it). Keys and types: README, "status --json".
SCHEMA_VERSION = 4  # 4: image's *_from and kexec_args.from are origin objects; 3: image typed


def number(value: Value) -> int | None:
    """A sysfs number as an int; None when the attribute is absent, unreadable or not a
    number (``sysfs_problems`` in the JSON says which)."""
    if value.kind != OK:
        return None
    try:
        return int(value.text, 0)
    except ValueError:
        return None


@dataclass(frozen=True)
class Status:
    crash_loaded: Value
    reservation: Reservation  # from /proc/iomem: kexec_crash_size takes the kexec lock
    elfcorehdr_size: Value
    crash_hotplug: dict[str, Value]
    backend: str
    backend_action: str
    state: State | None = None  # what kdumpd recorded for this boot
    hardware: Hardware | None = None  # the hardware now
    image: dict[str, Any] | None = None  # what a reload would load (image_report.py)
    kernel_skips: int | None = None  # skipped header updates the kernel logged this boot
    kernel_log_problem: str = "not read"  # why kernel_skips is None
    capacity: Capacity | None = None  # the reservation against the RAM online now
    # Where crash_hotplug came from: read now, as the running kdumpd last read it (a read
    # takes the kexec lock), or why it was not read (see hotplug_origin).
    crash_hotplug_from: dict[str, Any] = field(default_factory=lambda: hotplug_origin(
        "read-now"))
    header: HeaderCheck | None = None  # the loaded header read back (kdumpd verify)
    daemon: dict[str, Any] | None = None  # what the running kdumpd said it knows
    # Why the loaded dump kernel may not survive memory growth (its command line read
    # back), or that this cannot be told; None when fine or not asked.
    loaded_warning: str | None = None
    metrics: Location | None = None  # kdumpd.prom (None: [metrics] off)
    arch: Arch | None = None  # the machine's facts (arch.py); None: not told

    @property
    def owed(self) -> bool:
        return self.state is not None and self.state.owed

    @property
    def hardware_agrees(self) -> bool | None:
        """Does the recorded fingerprint match the hardware now (None: nothing recorded)."""
        if self.state is None or not self.state.fingerprint or self.hardware is None \
                or not self.loaded:
            return None  # agreement is only ever claimed for a loaded image
        return self.state.fingerprint == self.hardware.fingerprint

    @property
    def loaded(self) -> bool:
        return self.crash_loaded.kind == OK and self.crash_loaded.text == "1"

    def kernel_keeps_current(self, subsystem: str) -> bool:
        return self.loaded and kernel_updates(self.crash_hotplug[subsystem])

    def as_dict(self) -> dict[str, Any]:
        attributes = {"kexec_crash_loaded": self.crash_loaded,
                      "crash_elfcorehdr_size": self.elfcorehdr_size,
                      **{f"{s}/crash_hotplug": v for s, v in self.crash_hotplug.items()}}
        return {
            "schema_version": SCHEMA_VERSION,
            "kexec_crash_loaded": number(self.crash_loaded),
            # Bytes reserved, as /proc/iomem's "Crash kernel" ranges give them: reading
            # /sys/kernel/kexec_crash_size takes the kexec lock (see hardware.py).
            "kexec_crash_size": self.reservation.size,
            "crash_memory_reserved": self.reservation.listed,
            "crash_elfcorehdr_size": number(self.elfcorehdr_size),
            "crash_hotplug": {s: number(v) for s, v in self.crash_hotplug.items()},
            "sysfs_problems": {name: str(value) if value.kind != OK else
                               f"not a number: {value.text!r}"
                               for name, value in attributes.items()
                               if value.kind != OK or number(value) is None},
            "kernel_keeps_current": {s: self.kernel_keeps_current(s) for s in self.crash_hotplug},
            "crash_kernel_loaded": self.loaded,
            "backend": self.backend,
            "backend_action": self.backend_action,
            "owed": self.owed,
            "recorded_hardware": self.state.hardware if self.state else None,
            "recorded_fingerprint": self.state.fingerprint if self.state else None,
            "current_hardware": self.hardware.summary() if self.hardware else None,
            "current_fingerprint": self.hardware.fingerprint if self.hardware else None,
            "hardware_agrees": self.hardware_agrees,
            "image": self.image,
            "kernel_skips": self.kernel_skips,
            "last_load": asdict(self.state.last_load) if self.state and self.state.last_load
            else None,
            "exposure": asdict(self.state.exposure) if self.state else None,
            "capacity": {**asdict(self.capacity), "warning": self.capacity.warning or None}
            if self.capacity else None,
            "crash_hotplug_from": self.crash_hotplug_from,
            "header": self.header.as_dict() if self.header else None,
            "daemon": self.daemon,
            "loaded_cmdline_warning": self.loaded_warning,
            "metrics": self.metrics.as_dict() if self.metrics else None,
            "architecture": {"machine": self.arch.machine, "notes": list(self.arch.lines())}
            if self.arch else None,
        }

    def as_text(self) -> str:
        return escape_controls(self._text())

    def _text(self) -> str:
        loaded = "loaded" if self.loaded else "NOT loaded"
        lines = [
            f"crash kernel: {loaded} (kexec_crash_loaded={self.crash_loaded}, "
            f"reserved {_reserved(self.reservation)}, "
            f"crash_elfcorehdr_size={self.elfcorehdr_size})",
        ]
        if not self.reservation.listed and not self.loaded:
            lines.append(NO_RESERVATION_DT if self.arch and self.arch.reservation_in
                         == DEVICE_TREE else NO_RESERVATION)
        if self.arch and self.arch.family != "x86":
            lines.extend(f"{self.arch.machine}: {line}" for line in self.arch.lines())
        for subsystem, value in self.crash_hotplug.items():
            verdict = "yes" if self.kernel_keeps_current(subsystem) else "no"
            lines.append(
                f"{subsystem + ':':8}crash_hotplug={value}; "
                f"kernel keeps the crash kernel current: {verdict}"
            )
        lines.append(f"crash_hotplug: {hotplug_origin_text(self.crash_hotplug_from)}")
        if self.header is not None:
            lines.append(f"loaded header: {self.header.line()}")
            if self.header.loaded_cmdline is not None:
                lines.append(f"loaded command line: {self.header.loaded_cmdline}")
        if self.loaded_warning is not None:
            lines.append(f"warning: {self.loaded_warning}")
        if self.daemon is not None:
            lines.append(f"kdumpd: {self.daemon.get('status_line', '?')}; header "
                         f"verification {self.daemon.get('header_verification', '?')}")
            saved = self.daemon.get("state_file") or {}
            if isinstance(saved, dict) and saved.get("problem"):
                lines.append(f"warning: state NOT saved ({saved.get('write_failures')} "
                             f"failed write(s)): {saved['problem']}; kdumpd keeps it in "
                             "memory, a restart would not know it")
        lines.append(f"backend: {self.backend} ({self.backend_action})")
        if self.image is not None:
            lines.extend(image_report.lines(self.image))
        if self.owed:
            lines.append("kdumpd OWES a crash kernel it unloaded: the daemon retries loading it")
        agrees = self.hardware_agrees
        now = self.hardware.summary() if self.hardware else "unknown"
        if not self.loaded:
            lines.append(f"hardware: {now}; no crash kernel loaded to describe it")
        elif agrees is None:
            lines.append(f"hardware: {now}; nothing recorded for this boot")
        else:
            verdict = "agrees with" if agrees else "DIFFERS from"
            lines.append(f"hardware: {now}; {verdict} what the loaded image was recorded for")
        if self.kernel_skips is None:
            lines.append(f"kernel log: cannot be read ({self.kernel_log_problem}): a header "
                         "update the kernel skips is not seen")
        else:
            lines.append(f"kernel log: {self.kernel_skips} skipped header update(s) this "
                         "boot (\"kexec_trylock() failed\")")
        if self.capacity is not None and self.capacity.warning:
            lines.append(f"capacity: WARNING: {self.capacity.warning}")
        elif self.capacity is not None and self.capacity.recommended_bytes:
            lines.append(f"capacity: {self.capacity.reserved_bytes >> 20} MiB reserved, "
                         f"{self.capacity.recommended_bytes >> 20} MiB asked by "
                         f"{self.capacity.source}: enough")
        lines.append(f"metrics: {self.metrics.line()}" if self.metrics
                     else "metrics: off ([metrics] textfile_dir)")
        if self.state is not None:
            lines.append(f"exposure this boot: {self.state.exposure.summary()}")
        last = self.state.last_load if self.state else None
        if last is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.at))
            lines.append(f"last load by kdumpd: {when}, {'ok' if last.ok else 'FAILED'}, "
                         f"{last.duration_s:.2f} s, {last.how}")
        return "\n".join(lines)

    def as_json(self) -> str:
        # ensure_ascii: control characters from sysfs or files come out as \u escapes.
        # allow_nan=False: NaN or Infinity is not JSON (the state file holds none).
        return json.dumps(self.as_dict(), indent=2, sort_keys=True, ensure_ascii=True,
                          allow_nan=False)


def gather(sysfs: Sysfs, backend: Backend, state: State | None = None,
           hardware: Hardware | None = None, image: dict[str, Any] | None = None, *,
           kernel_log: tuple[KernelLog | None, str] = (None, "not read"),
           capacity: Capacity | None = None, metrics: Location | None = None,
           daemon: tuple[dict[str, Any] | None, str] = (None, ""),
           header: HeaderCheck | None = None,
           protection: Callable[[str], str | None] | None = None,
           arch: Arch | None = None, reservation: Reservation | None = None) -> Status:
    """What `kdumpd status` shows. ``daemon``: what the running kdumpd said it knows, or
    None and why it was not asked or did not answer ("" when none runs): while kdumpd
    runs, crash_hotplug is taken from it and never read here (a read takes the kexec
    lock); with no daemon it is read once, and only while a crash kernel is loaded.
    ``reservation``: read from where ``arch`` publishes it (None: /proc/iomem)."""
    known, daemon_problem = daemon
    reader, problem = kernel_log
    skips: int | None = None
    if reader is not None:
        try:
            skips, _ = reader.lookback()
        except OSError as error:
            problem = f"the journal cannot be read ({error})"
        finally:
            reader.close()
    crash_loaded = sysfs.crash_loaded()
    crash_hotplug, source = _crash_hotplug(sysfs, crash_loaded, known, daemon_problem)
    return Status(
        crash_loaded=crash_loaded,
        reservation=reservation or read_crash_reservation(sysfs.root),
        arch=arch,
        elfcorehdr_size=sysfs.read("kernel/crash_elfcorehdr_size"),
        crash_hotplug=crash_hotplug,
        crash_hotplug_from=source,
        header=header,
        daemon=known,
        loaded_warning=_loaded_warning(header, protection) if is_loaded(crash_loaded)
        else None,
        backend=backend.name,
        backend_action=backend.describe(),
        state=state,
        hardware=hardware,
        image=image,
        kernel_skips=skips,
        kernel_log_problem=problem,
        capacity=capacity,
        metrics=metrics,
    )


def _loaded_warning(header: HeaderCheck | None,
                    protection: Callable[[str], str | None] | None) -> str | None:
    if protection is None or header is None:
        return None
    if header.loaded_cmdline is None:
        return ("the loaded dump kernel's command line cannot be read back "
                f"({header.why}): whether it survives memory growth is unknown")
    return protection(header.loaded_cmdline)


def hotplug_origin(source: str, read_at: float | None = None,
                   why: str | None = None) -> dict[str, Any]:
    """``crash_hotplug_from`` of ``status --json``: ``source`` is ``read-now`` (read by
    this command), ``daemon`` (as the running kdumpd last read it, at ``read_at``, Unix
    time, null: never) or ``not-read`` (``why``: a read takes the kexec lock, so never
    while kdumpd runs, never while no crash kernel is loaded)."""
    return {"source": source, "read_at": read_at, "why": why}


def hotplug_origin_text(origin: dict[str, Any]) -> str:
    """The text output's phrase for :func:`hotplug_origin`."""
    if origin["source"] == "daemon":
        at = origin["read_at"]
        when = "never" if at is None else time.strftime("%H:%M:%S", time.localtime(at))
        return f"as the running kdumpd last read it ({when})"
    if origin["source"] == "not-read":
        return f"not read: {origin['why']}"
    return "read now"


def _crash_hotplug(sysfs: Sysfs, crash_loaded: Value, known: dict[str, Any] | None,
                   daemon_problem: str) -> tuple[dict[str, Value], dict[str, Any]]:
    if known is not None:
        read = known.get("crash_hotplug") or {}
        at = known.get("crash_hotplug_read_at")
        at = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None
        return ({s: Value(str(read[s])) if s in read else Value("not read by kdumpd",
                                                                  UNREADABLE)
                 for s in SUBSYSTEMS}, hotplug_origin("daemon", read_at=at))
    if daemon_problem:
        why = f"kdumpd runs and {daemon_problem}"
    elif not is_loaded(crash_loaded):
        why = "no crash kernel loaded (a read would take the kexec lock)"
    else:
        return sysfs.snapshot(SUBSYSTEMS).crash_hotplug, hotplug_origin("read-now")
    return ({s: Value(f"not read: {why}", UNREADABLE) for s in SUBSYSTEMS},
            hotplug_origin("not-read", why=why))


NO_RESERVATION = ("no memory is reserved for a crash kernel (/proc/iomem has no \"Crash "
                  "kernel\" range): nothing can be loaded; boot with crashkernel= (for "
                  "example crashkernel=256M, or the distribution's default) and reboot")
NO_RESERVATION_DT = ("no memory is reserved for a crash kernel (the device tree has no "
                     "/chosen/linux,crashkernel-size): nothing can be loaded; boot with "
                     "crashkernel= (for example crashkernel=512M, or the distribution's "
                     "default) and reboot")


def _reserved(reservation: Reservation) -> str:
    if reservation.size is not None:
        return f"{reservation.size // 2**20} MiB"
    return "size unknown (addresses hidden)" if reservation.listed else "none"


def escape_controls(text: str) -> str:
    """Control characters from sysfs or files shown as escapes (never raw ESC, BEL, CR)."""
    return "".join(c if c == "\n" or c.isprintable() else repr(c)[1:-1] for c in text)
