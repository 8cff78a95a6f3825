"""kdumpd.prom: written atomically, read back with prometheus_client's own parser, and
gathered without reading crash_hotplug or kexec_crash_size (they take the kexec lock)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kdumpd import metrics
from kdumpd.atomic import WriteError, replace_at
from kdumpd.exposure import Exposure
from kdumpd.fakes.clock import MockTime
from kdumpd.header_proof import HeaderProof
from kdumpd.loaded_header import STALE, UNKNOWN, HeaderCheck
from kdumpd.metrics import Reading
from kdumpd.metrics_dir import DirectoryRefused
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
    metrics.write(tmp_path, reading, owner=os.geteuid())
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
    assert ("kdumpd_header_current", ()) not in got  # never read back: no sample
    assert got[("kdumpd_crash_hotplug_failed_reads_total", ())] == 0
    assert got[("kdumpd_state_write_failures_total", ())] == 0
    assert got[("kdumpd_state_saved", ())] == 1


def test_an_unwritable_state_shows_in_the_metrics(tmp_path: Path) -> None:
    reading = Reading(True, {"cpu": True, "memory": True}, owed=True, hardware_agrees=None,
                      events=1, state_write_failures=3, state_saved=False)
    metrics.write(tmp_path, reading, owner=os.geteuid())
    got = samples(tmp_path / "kdumpd.prom")
    assert got[("kdumpd_state_write_failures_total", ())] == 3
    assert got[("kdumpd_state_saved", ())] == 0


def test_the_header_read_back_is_a_gauge_with_its_counts(root: Path, clock: MockTime,
                                                          tmp_path: Path) -> None:
    rig = Rig(root, clock)
    stale = HeaderCheck(STALE, "x", ranges_missing=((1 << 32, 1 << 33),),
                        ranges_extra=((1 << 34, 1 << 35), (1 << 36, 1 << 37)))
    rig.controller.header = HeaderProof(lambda: stale, clock)
    rig.controller.header.read()
    rig.controller.stats.failed_reads = 7
    metrics.write(tmp_path, metrics.gather(rig.controller.knowledge(), rig.sysfs,
                                           rig.controller.hardware), owner=os.geteuid())
    got = samples(tmp_path / "kdumpd.prom")
    assert got[("kdumpd_header_current", ())] == 0
    assert got[("kdumpd_header_ranges_missing", ())] == 1
    assert got[("kdumpd_header_ranges_extra", ())] == 2
    assert got[("kdumpd_crash_hotplug_failed_reads_total", ())] == 7
    rig.controller.header = HeaderProof(lambda: HeaderCheck(UNKNOWN, "no kcore"), clock)
    rig.controller.header.read()
    metrics.write(tmp_path, metrics.gather(rig.controller.knowledge(), rig.sysfs,
                                           rig.controller.hardware), owner=os.geteuid())
    assert ("kdumpd_header_current", ()) not in samples(tmp_path / "kdumpd.prom")


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


def test_gathering_takes_no_kexec_lock(root: Path, clock: MockTime) -> None:
    rig = Rig(root, clock)
    rig.feed(memory_events(3))
    rig.settle()
    spy = SpySysfs(root)
    reading = metrics.gather(rig.controller.knowledge(), spy, rig.controller.hardware)
    assert not [n for n in spy.names if "crash_hotplug" in n or "kexec_crash_size" in n]
    assert reading.crash_kernel_loaded and reading.events == 3
    assert reading.exposure.reloads == 1 and reading.hardware_agrees is True
    # What crash_hotplug last read for the image kdumpd loaded (a plain load: 0).
    assert reading.kernel_keeps_current == {"cpu": False, "memory": False}


READING = Reading(True, {"cpu": True, "memory": True}, owed=False, hardware_agrees=True,
                  events=1)
ME = os.geteuid()
as_root = pytest.mark.skipif(ME != 0, reason="giving a directory away needs root")


def textfile_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "textfile"
    directory.mkdir(mode=0o755)
    return directory


def test_a_directory_another_user_owns_is_refused_and_nothing_written(tmp_path: Path) -> None:
    directory = textfile_dir(tmp_path)
    # Whoever owns it could plant links at the temp name: another uid than the allowed one.
    with pytest.raises(DirectoryRefused, match=rf"textfile is owned by .*, not uid {ME + 1}\b"):
        metrics.write(directory, READING, owner=ME + 1)
    assert list(directory.iterdir()) == []


@as_root
def test_as_root_a_user_owned_directory_is_refused(tmp_path: Path) -> None:
    directory = textfile_dir(tmp_path)
    os.chown(directory, 4242, 4242)
    with pytest.raises(DirectoryRefused, match=r"owned by uid 4242.*not root"):
        metrics.write(directory, READING)
    assert list(directory.iterdir()) == []
    assert metrics.locate(directory).problem is not None


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_a_group_or_world_writable_directory_is_refused(tmp_path: Path, mode: int) -> None:
    directory = textfile_dir(tmp_path)
    directory.chmod(mode)
    with pytest.raises(DirectoryRefused, match=f"group- or world-writable.*{mode & 0o777:o}"):
        metrics.write(directory, READING, owner=ME)


def test_a_symlinked_directory_is_refused_at_the_end_and_on_the_way(tmp_path: Path) -> None:
    real = textfile_dir(tmp_path)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(DirectoryRefused, match=r"/link is a symlink"):
        metrics.write(tmp_path / "link", READING, owner=ME)
    (tmp_path / "via").symlink_to(tmp_path)
    with pytest.raises(DirectoryRefused, match=r"/via \(on the way to .*\) is a symlink"):
        metrics.write(tmp_path / "via" / "textfile", READING, owner=ME)
    assert list(real.iterdir()) == []


def test_a_symlink_planted_at_the_temp_name_is_not_followed(tmp_path: Path) -> None:
    directory = textfile_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (directory / "kdumpd.prom").write_text("old\n")
    (directory / ".kdumpd.prom.kdumpd-guess.tmp").symlink_to(victim)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(WriteError, match="create temp file: File exists"):
            replace_at(fd, "kdumpd.prom", b"new\n", label="kdumpd.prom",
                       token=lambda: "guess")
    finally:
        os.close(fd)
    assert victim.read_text() == "root's file\n"  # neither truncated nor written
    assert (directory / "kdumpd.prom").read_text() == "old\n"


def test_a_symlink_at_the_file_name_is_replaced_not_written_through(tmp_path: Path) -> None:
    directory = textfile_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (directory / "kdumpd.prom").symlink_to(victim)
    metrics.write(directory, READING, owner=ME)
    assert victim.read_text() == "root's file\n"
    prom = directory / "kdumpd.prom"
    assert not prom.is_symlink() and "kdumpd_crash_kernel_loaded 1.0" in prom.read_text()
    assert oct(prom.stat().st_mode & 0o777) == oct(0o644)  # the node exporter reads it
    assert sorted(p.name for p in directory.iterdir()) == ["kdumpd.prom"]


def test_the_location_names_the_file_and_who_owns_the_directory(tmp_path: Path) -> None:
    directory = textfile_dir(tmp_path)
    where = metrics.locate(directory, owner=ME)
    assert where.problem is None and where.owner_uid == ME
    assert where.line().startswith(f"{directory}/kdumpd.prom (directory owned by ")
    assert "mode 0755" in where.line()
    missing = metrics.locate(tmp_path / "absent", owner=ME)
    assert missing.line() == (f"{tmp_path}/absent/kdumpd.prom: NOT written: cannot open "
                              f"{tmp_path}/absent: No such file or directory")


@as_root
def test_a_parent_another_user_can_change_is_said_not_refused(tmp_path: Path) -> None:
    # Debian: /var/lib/prometheus is the prometheus user's, node-exporter in it root's.
    parent = tmp_path / "prometheus"
    parent.mkdir()
    os.chown(parent, 4242, 4242)
    directory = textfile_dir(parent)
    line = metrics.locate(directory).line()
    assert "directory owned by root" in line
    assert f"its parent {parent} is uid 4242" in line
    metrics.write(directory, READING)
    assert (directory / "kdumpd.prom").exists()


def test_remove_takes_the_file_away_once(tmp_path: Path) -> None:
    directory = textfile_dir(tmp_path)
    metrics.write(directory, READING, owner=ME)
    assert metrics.remove(directory, owner=ME) is True
    assert metrics.remove(directory, owner=ME) is False
    assert list(directory.iterdir()) == []


def test_the_daemons_file_says_a_refusal_once(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    directory = textfile_dir(tmp_path)
    directory.chmod(0o777)
    text_file = metrics.TextFile(directory, lambda: READING, owner=ME)
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        for _ in range(3):
            text_file.write()
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot write metrics to {directory}: {directory} is group- or world-writable "
        "(mode 0777); refusing it"]
    assert list(directory.iterdir()) == []
