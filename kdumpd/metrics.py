"""Prometheus metrics through the node exporter's textfile collector, the way fleets
already scrape hosts: ``kdumpd.prom`` is written atomically (prometheus_client's
``write_to_textfile``) into ``[metrics] textfile_dir`` after every decision and at least
every minute.

Nothing here reads sysfs: the values come from what the daemon already knows (the
crash_hotplug it last read for the loaded image; a read of crash_hotplug, like one of
/sys/kernel/kexec_crash_size, takes the kexec lock, and a hotplug update that meets it
is skipped by the kernel).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kdumpd import __version__
from kdumpd.controller import Controller
from kdumpd.exposure import Exposure
from kdumpd.hardware import read_crash_reservation
from kdumpd.sysfs import Sysfs

FILE_NAME = "kdumpd.prom"
# prometheus-node-exporter's textfile directory on Debian and Ubuntu
# (--collector.textfile.directory in /etc/default/prometheus-node-exporter).
DEFAULT_DIRS = (Path("/var/lib/prometheus/node-exporter"),)
INTERVAL_S = 60.0


class MetricsUnavailable(Exception):
    """prometheus_client is not installed."""


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


def gather(controller: Controller, sysfs: Sysfs) -> Reading:
    """What the daemon knows now; reads kexec_crash_loaded, /proc/iomem and the hardware
    (none of them takes the kexec lock), never crash_hotplug."""
    loaded = sysfs.crash_loaded()
    is_loaded = loaded.text == "1"
    fingerprint = controller.state.fingerprint
    agrees = (controller.hardware().fingerprint == fingerprint
              if is_loaded and fingerprint else None)
    capacity = controller.last_capacity
    return Reading(
        crash_kernel_loaded=is_loaded,
        kernel_keeps_current=controller.image_updates(),
        owed=controller.owed,
        hardware_agrees=agrees,
        events=controller.stats.events,
        exposure=controller.state.exposure,
        last_reload_duration_s=controller.stats.last_duration_s,
        reserved_bytes=read_crash_reservation(sysfs.root).size,
        recommended_bytes=capacity.recommended_bytes if capacity is not None else None,
    )


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


def write(directory: Path, reading: Reading) -> None:
    """Write ``directory``/kdumpd.prom atomically. Raises MetricsUnavailable, OSError."""
    try:
        from prometheus_client import CollectorRegistry, write_to_textfile
    except ImportError:
        raise MetricsUnavailable("metrics need prometheus_client (python3-prometheus-client)"
                                 ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(reading))  # type: ignore[arg-type]
    write_to_textfile(str(directory / FILE_NAME), registry)
