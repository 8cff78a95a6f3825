"""Prometheus metrics through the node exporter's textfile collector, the way fleets
already scrape hosts: ``kdumpd.prom`` is written atomically into ``[metrics]
textfile_dir`` after every decision and at least every minute, and removed at a final stop
(not at a restart), so the node exporter never serves a gone daemon's values. The text is
prometheus_client's (``generate_latest``); the file is written through a descriptor of the
directory, opened without following links and only when root alone controls it
(metrics_dir.py), never by a name another user could re-point.

Nothing here reads sysfs: the values come from what the daemon already knows (the
crash_hotplug it last read for the loaded image; a read of crash_hotplug, like one of
/sys/kernel/kexec_crash_size, takes the kexec lock, and a hotplug update that meets it
is skipped by the kernel).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdumpd import __version__, metrics_dir
from kdumpd.atomic import WriteError, replace_at
from kdumpd.exposure import Exposure
from kdumpd.hardware import Hardware, read_crash_reservation
from kdumpd.knowledge import Knowledge
from kdumpd.loaded_header import CURRENT, STALE, HeaderCheck
from kdumpd.metrics_dir import DirectoryRefused
from kdumpd.sysfs import Sysfs

log = logging.getLogger("kdumpd")

FILE_NAME = "kdumpd.prom"
# prometheus-node-exporter's textfile directory on Debian and Ubuntu
# (--collector.textfile.directory in /etc/default/prometheus-node-exporter).
DEFAULT_DIRS = (Path("/var/lib/prometheus/node-exporter"),)
INTERVAL_S = 60.0


class MetricsUnavailable(Exception):
    """prometheus_client is not installed."""


# What a write or a removal raises besides OSError, each one line naming the directory.
Refused = (MetricsUnavailable, DirectoryRefused, WriteError)


@dataclass(frozen=True)
class Reading:
    """What the metrics say, gathered by the daemon."""

    crash_kernel_loaded: bool
    kernel_keeps_current: dict[str, bool]
    owed: bool
    hardware_agrees: bool | None
    events: int
    exposure: Exposure = field(default_factory=Exposure)
    last_reload_duration_s: float | None = None
    reserved_bytes: int | None = None
    recommended_bytes: int | None = None
    # The loaded header as last read back (loaded_header.py): 1 current, 0 stale, absent
    # when it was never read or could not be told; with the counts missing and extra.
    header_current: bool | None = None
    header_ranges_missing: int | None = None
    header_ranges_extra: int | None = None
    failed_reads: int = 0  # "kexec_trylock() failed" lines with no hotplug event
    state_write_failures: int = 0  # writes of state.json that failed (state.py)
    state_saved: bool = True  # the state on disk is current (False: the last write failed)


def gather(known: Knowledge, sysfs: Sysfs, hardware: Callable[[], Hardware],
           where: str = "iomem") -> Reading:
    """What the daemon knows (knowledge.py), with kexec_crash_loaded, the reservation
    (``where``: /proc/iomem or the device tree, arch.py) and the hardware read now (none
    of them takes the kexec lock), never crash_hotplug."""
    loaded = sysfs.crash_loaded()
    is_loaded = loaded.text == "1"
    fingerprint = known.state.fingerprint
    agrees = hardware().fingerprint == fingerprint if is_loaded and fingerprint else None
    capacity = known.capacity
    return Reading(
        crash_kernel_loaded=is_loaded,
        kernel_keeps_current=known.kernel_keeps_current(),
        owed=known.state.owed,
        hardware_agrees=agrees,
        events=known.stats.events,
        exposure=known.state.exposure,
        last_reload_duration_s=known.stats.last_duration_s,
        reserved_bytes=read_crash_reservation(sysfs.root, where).size,
        recommended_bytes=capacity.recommended_bytes if capacity is not None else None,
        **_header(known.header),
        failed_reads=known.stats.failed_reads,
        state_write_failures=known.state_write_failures,
        state_saved=known.state_problem is None,
    )


def _header(check: HeaderCheck | None) -> dict[str, Any]:
    if check is None or check.verdict not in (CURRENT, STALE):
        return {}
    return {"header_current": check.verdict == CURRENT,
            "header_ranges_missing": len(check.ranges_missing),
            "header_ranges_extra": len(check.ranges_extra)}


def textfile_dir(setting: str, exists: object = Path.is_dir) -> Path | None:
    """``[metrics] textfile_dir``: "" is off, "auto" the distribution's node-exporter
    directory when it exists (else off), anything else that directory."""
    if setting == "":
        return None
    if setting != "auto":
        return Path(setting)
    return next((d for d in DEFAULT_DIRS if callable(exists) and exists(d)), None)


class _Collector:
    def __init__(self, reading: Reading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        r, e = self.reading, self.reading.exposure

        def gauge(name: str, text: str, value: float | None) -> Iterator[object]:
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, value=value)

        yield from gauge("kdumpd_crash_kernel_loaded", "A crash kernel is loaded.",
                         float(r.crash_kernel_loaded))
        keeps = GaugeMetricFamily("kdumpd_kernel_keeps_current",
                                  "The kernel updates the loaded image's header itself "
                                  "(crash_hotplug 1, as last read).", labels=["subsystem"])
        for subsystem, value in sorted(r.kernel_keeps_current.items()):
            keeps.add_metric([subsystem], float(value))
        yield keeps
        yield from gauge("kdumpd_owed", "kdumpd unloaded a crash kernel it has not loaded "
                         "again.", float(r.owed))
        yield from gauge("kdumpd_hardware_agrees", "The loaded image was recorded for the "
                         "hardware of now (absent: unknown).",
                         None if r.hardware_agrees is None else float(r.hardware_agrees))
        yield from gauge("kdumpd_header_current", "The loaded header, read back through "
                         "/proc/kcore, covers the RAM and CPUs of now (absent: not read or "
                         "cannot tell).",
                         None if r.header_current is None else float(r.header_current))
        yield from gauge("kdumpd_header_ranges_missing", "System RAM ranges the loaded "
                         "header lacks, as last read back.",
                         None if r.header_ranges_missing is None
                         else float(r.header_ranges_missing))
        yield from gauge("kdumpd_header_ranges_extra", "Loaded header ranges over memory "
                         "that is not RAM, as last read back.",
                         None if r.header_ranges_extra is None
                         else float(r.header_ranges_extra))
        yield counter("kdumpd_crash_hotplug_failed_reads", "The kernel's \"kexec_trylock() "
                      "failed\" lines with no hotplug event near: reads of crash_hotplug "
                      "during a load, since kdumpd started.", r.failed_reads)
        yield counter("kdumpd_state_write_failures", "Writes of state.json that failed "
                      "since kdumpd started (a directory in its place, a full or read-only "
                      "filesystem).", r.state_write_failures)
        yield from gauge("kdumpd_state_saved", "The state file holds what kdumpd knows (0: "
                         "its last write failed; a restart would not know a crash kernel "
                         "kdumpd owes).", float(r.state_saved))
        yield counter("kdumpd_events", "Relevant hotplug events since kdumpd started.",
                      r.events)
        yield counter("kdumpd_reloads", "Reloads that worked, this boot.", e.reloads)
        yield counter("kdumpd_reloads_avoided", "Bursts the kernel kept current, this boot.",
                      e.reloads_avoided)
        yield counter("kdumpd_reload_failures", "Reloads that failed after all retries, "
                      "this boot.", e.failures)
        yield counter("kdumpd_no_crash_kernel_seconds", "Seconds without a crash kernel "
                      "while kdumpd ran, this boot (own loads counted whole).",
                      e.no_crash_kernel_s)
        yield counter("kdumpd_stale_seconds", "Seconds from the first event of a burst that "
                      "needed a reload until a current image was loaded, this boot.",
                      e.stale_s)
        yield from gauge("kdumpd_last_reload_duration_seconds", "The last reload's duration.",
                         r.last_reload_duration_s)
        yield from gauge("kdumpd_crash_reservation_bytes", "Memory reserved for the crash "
                         "kernel (/proc/iomem).", r.reserved_bytes)
        yield from gauge("kdumpd_crash_reservation_recommended_bytes", "What the larger "
                         "rule asks for the RAM online now (0: no rule).", r.recommended_bytes)
        yield InfoMetricFamily("kdumpd_build", "kdumpd's version.",
                               value={"version": __version__})


def render(reading: Reading) -> bytes:
    """The text exposition format of ``reading``. Raises MetricsUnavailable."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        raise MetricsUnavailable("metrics need prometheus_client (python3-prometheus-client)"
                                 ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(reading))  # type: ignore[arg-type]
    return generate_latest(registry)


def write(directory: Path, reading: Reading, *, owner: int = 0) -> None:
    """Replace ``directory``/kdumpd.prom atomically, relative to the directory opened by
    :func:`metrics_dir.open_directory` (``owner``: who must own it, root but in tests).

    Raises MetricsUnavailable, DirectoryRefused, WriteError (the old file unchanged),
    OSError (the directory cannot be opened).
    """
    text = render(reading)
    opened = metrics_dir.open_directory(directory, owner=owner)
    try:
        replace_at(opened.fd, FILE_NAME, text, label=str(directory / FILE_NAME))
    finally:
        os.close(opened.fd)


def remove(directory: Path, *, owner: int = 0) -> bool:
    """Remove ``directory``/kdumpd.prom (a final stop: the node exporter must not serve
    a gone daemon's values); False when there was none. Raises DirectoryRefused, OSError.
    """
    opened = metrics_dir.open_directory(directory, owner=owner)
    try:
        os.unlink(FILE_NAME, dir_fd=opened.fd)
    except FileNotFoundError:
        return False
    finally:
        os.close(opened.fd)
    return True


@dataclass(frozen=True)
class Location:
    """Where kdumpd.prom goes and who owns its directory (for the journal and status)."""

    file: Path
    owner_uid: int | None = None  # None: the directory could not be opened
    mode: int | None = None
    note: str = ""  # a parent another user can change, or ""
    problem: str | None = None  # why nothing is written there, or None

    def line(self) -> str:
        """One line: ``/d/kdumpd.prom (directory owned by root, mode 0755)``, or why not."""
        if self.problem is not None or self.owner_uid is None or self.mode is None:
            return f"{self.file}: NOT written: {self.problem or 'not opened'}"
        text = (f"{self.file} (directory owned by {metrics_dir.user_name(self.owner_uid)}, "
                f"mode {self.mode:04o})")
        return f"{text}; {self.note}" if self.note else text

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.file), "directory_owner_uid": self.owner_uid,
                "problem": self.problem}


def locate(directory: Path, *, owner: int = 0) -> Location:
    """Open and vet ``directory`` as a write would. Raises nothing."""
    file = directory / FILE_NAME
    try:
        opened = metrics_dir.open_directory(directory, owner=owner)
    except DirectoryRefused as error:
        return Location(file, problem=str(error))
    except OSError as error:
        return Location(file, problem=f"cannot open {directory}: {error.strerror or error}")
    os.close(opened.fd)
    return Location(file, opened.owner_uid, opened.mode, opened.note)


class TextFile:
    """kdumpd.prom in ``directory`` for the daemon: written with what ``gather`` returns,
    removed at a final stop. A failure is logged once per reason, never raised (the
    daemon keeps serving without metrics)."""

    def __init__(self, directory: Path, gather: Callable[[], Reading], *,
                 owner: int = 0) -> None:
        self.directory = directory
        self._gather = gather
        self._owner = owner
        self._said: set[str] = set()

    def write(self) -> None:
        try:
            write(self.directory, self._gather(), owner=self._owner)
        except (*Refused, OSError) as error:
            self._say(f"cannot write metrics to {self.directory}: {error}")

    def withdraw(self) -> None:
        """A final stop: remove the file, so the node exporter stops serving it."""
        try:
            if remove(self.directory, owner=self._owner):
                log.info("removed %s: kdumpd stops", self.directory / FILE_NAME)
        except (DirectoryRefused, OSError) as error:
            self._say(f"cannot remove {self.directory / FILE_NAME}: {error}")

    def _say(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            log.warning("%s", text)
