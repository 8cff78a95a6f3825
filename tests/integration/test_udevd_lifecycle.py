"""kdumpd with source "auto" while the test starts and stops a systemd-udevd of its own.

Runs only with KDUMPD_REAL_UEVENTS=1 and only where no udevd runs already (the test
must own the udevd it stops, by its PID).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd.fakes import fakesysfs
from tests.integration.test_real_uevents import Daemon, burst
from tests.support import udev

pytestmark = [
    pytest.mark.real_uevents,
    pytest.mark.skipif(os.environ.get("KDUMPD_REAL_UEVENTS") != "1",
                       reason="set KDUMPD_REAL_UEVENTS=1 (root, touches the host's udev)"),
]


@pytest.fixture
def no_udevd() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("KDUMPD_REAL_UEVENTS=1 needs root")
    if udev.udevd_answers():
        pytest.skip("a udevd runs on this machine: the test must own the one it stops")
    yield


def test_auto_with_no_udevd_answering_listens_to_the_kernel(
    no_udevd: None, tmp_path: Path
) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    daemon = Daemon(tmp_path, root, source="auto")
    daemon.wait_for("READY=1")
    burst(16)
    daemon.wait_for("reloads 1")
    err = daemon.stop()
    assert "event source kernel" in err
    assert "16 event(s) on memory: reloading" in err


def test_udevd_stopped_and_started_under_kdumpd_switches_and_resyncs(
    no_udevd: None, tmp_path: Path
) -> None:
    # The image updates itself (crash_hotplug 1) and kdumpd's reloads keep it so: bursts
    # it sees are skipped, while each switch of source reloads once, since the events
    # it could not see may hide a hot-remove (which the x86 update leaves in the header).
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="1")
    process = udev.start_udevd()
    try:
        daemon = Daemon(tmp_path, root, source="auto", hotplug_after_load=True)
        daemon.wait_for("READY=1")
        burst(4)
        daemon.wait_for("skipped 4")
        udev.stop_udevd(process)
        daemon.wait_for("reloads 1", timeout=20)  # two unanswered pings 3 s apart
        time.sleep(1.0)
        burst(4)  # udevd is gone: only the kernel source can see these
        daemon.wait_for("skipped 8", timeout=20)
        process = udev.start_udevd()
        daemon.wait_for("reloads 2", timeout=20)
        time.sleep(1.0)
        burst(4)
        daemon.wait_for("skipped 12", timeout=20)
    finally:
        udev.stop_udevd(process)
    err = daemon.stop()
    assert "event source udev" in err
    assert "udevd stopped answering: listening for kernel events now" in err
    assert "udevd answers again: listening for udev events now" in err, err
    assert err.count("deciding over both subsystems") == 2
    assert daemon.loads() == 2, err
