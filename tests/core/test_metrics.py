"""kdumpd.prom: written atomically, read back with prometheus_client's own parser, and
gathered without reading crash_hotplug or kexec_crash_size (they take the kexec lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpd import metrics
from kdumpd.exposure import Exposure
from kdumpd.fakesysfs import FakeClock
from kdumpd.metrics import Reading
from kdumpd.sysfs import Sysfs, Value
from tests.core.test_controller import Rig, memory_events

parser = pytest.importorskip("prometheus_client.parser")


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(path.read_text())
            for s in family.samples}


def test_the_file_holds_every_named_metric(tmp_path: Path) -> None:
    reading = Reading(True, {"cpu": True, "memory": False}, owed=False, hardware_agrees=None,
                      events=64, exposure=Exposure(0.5, 1.25, 2, 3, 1, 0.4),
                      last_reload_duration_s=0.12, reserved_bytes=256 << 20,
                      recommended_bytes=512 << 20)
    metrics.write(tmp_path, reading)
    got = samples(tmp_path / "kdumpd.prom")
    assert got[("kdumpd_crash_kernel_loaded", ())] == 1
    assert got[("kdumpd_kernel_keeps_current", (("subsystem", "cpu"),))] == 1
    assert got[("kdumpd_kernel_keeps_current", (("subsystem", "memory"),))] == 0
    assert got[("kdumpd_owed", ())] == 0
    assert ("kdumpd_hardware_agrees", ()) not in got  # unknown: no sample, not a guess
    assert got[("kdumpd_events_total", ())] == 64
    assert got[("kdumpd_reloads_total", ())] == 2
    assert got[("kdumpd_reloads_avoided_total", ())] == 3
    assert got[("kdumpd_reload_failures_total", ())] == 1
    assert got[("kdumpd_no_crash_kernel_seconds_total", ())] == 0.5
    assert got[("kdumpd_stale_seconds_total", ())] == 1.25
    assert got[("kdumpd_last_reload_duration_seconds", ())] == 0.12
    assert got[("kdumpd_crash_reservation_bytes", ())] == 256 << 20
    assert got[("kdumpd_crash_reservation_recommended_bytes", ())] == 512 << 20
    (build,) = [k for k in got if k[0] == "kdumpd_build_info"]
    assert dict(build[1])["version"].startswith("0.")
    assert [p.name for p in tmp_path.iterdir()] == ["kdumpd.prom"]  # no temp file left


def test_the_directory_setting() -> None:
    assert metrics.textfile_dir("") is None
    assert metrics.textfile_dir("/srv/prom") == Path("/srv/prom")
    assert metrics.textfile_dir("auto", exists=lambda d: False) is None
    assert metrics.textfile_dir("auto", exists=lambda d: True) == metrics.DEFAULT_DIRS[0]


class SpySysfs(Sysfs):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.names: list[str] = []

    def read(self, name: str) -> Value:
        self.names.append(name)
        return super().read(name)


def test_gathering_takes_no_kexec_lock(root: Path, clock: FakeClock) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(3))
    rig.settle()
    spy = SpySysfs(root)
    reading = metrics.gather(rig.controller, spy)
    assert not [n for n in spy.names if "crash_hotplug" in n or "kexec_crash_size" in n]
    assert reading.crash_kernel_loaded and reading.events == 3
    assert reading.exposure.reloads == 1 and reading.hardware_agrees is True
    # What crash_hotplug last read for the image kdumpd loaded (a plain load: 0).
    assert reading.kernel_keeps_current == {"cpu": False, "memory": False}
