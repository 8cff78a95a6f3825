"""kdumpd run as a subprocess against real kernel uevents through a real systemd-udevd.

Needs root and touches the host's udev (synthetic online events reach any live kdump
rules), so it runs only with KDUMPD_REAL_UEVENTS=1 (set by .ci/run).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd.fakes import fakesysfs
from tests.support import udev

pytestmark = [
    pytest.mark.real_uevents,
    pytest.mark.skipif(os.environ.get("KDUMPD_REAL_UEVENTS") != "1",
                       reason="set KDUMPD_REAL_UEVENTS=1 (root, touches the host's udev)"),
]


@pytest.fixture(scope="module")
def udevd() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("KDUMPD_REAL_UEVENTS=1 needs root")
    with udev.running_udevd() as how:
        yield how


class Daemon:
    """`kdumpd run` with its own NOTIFY_SOCKET, so the test knows when it listens."""

    def __init__(self, tmp: Path, root: Path, quiet_ms: int = 300, extra: str = "",
                 *, source: str = "udev", hotplug_after_load: bool = False,
                 delay_ms: int = 100) -> None:
        self.log = tmp / "fake.log"
        self.config = tmp / "kdumpd.toml"
        self.config.write_text(
            f'[sysfs]\nroot = "{root}"\n[state]\ndir = "{tmp}/state"\n'
            f'control = "{tmp}/control"\n'
            f'[events]\nsource = "{source}"\nquiet_ms = {quiet_ms}\n'
            f'{extra}'
            f'[reload]\nbackend = "fake"\n[reload.fake]\nlog = "{self.log}"\n'
            f'delay_ms = {delay_ms}\n'
            f'hotplug_after_load = {str(hotplug_after_load).lower()}\n'
            f'[rule]\nstate = "ignore"\nhandover = "{tmp}/handles-reload"\n'
        )
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify"))
        self.notify.settimeout(0.2)
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp / "notify")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kdumpd", "run", "--config", str(self.config)],
            env=env, stderr=subprocess.PIPE, text=True,
        )

    def wait_for(self, word: str, timeout: float = 20) -> str:
        """The next notify message containing ``word``; fails if kdumpd exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.notify.recv(4096).decode()
            except socket.timeout:
                if self.process.poll() is not None:
                    _, err = self.process.communicate()
                    raise AssertionError(
                        f"kdumpd exited {self.process.returncode}: {err}") from None
                continue
            if word in message:
                return message
        self.process.kill()
        _, err = self.process.communicate()
        raise AssertionError(f"no notify message with {word!r} in {timeout} s: {err}")

    def loads(self) -> int:
        if not self.log.exists():
            return 0
        return sum(json.loads(x)["op"] == "load" for x in self.log.read_text().splitlines())

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        self.notify.close()
        assert self.process.returncode == 0, err
        return err


def burst(n: int) -> None:
    blocks = udev.memory_blocks()
    for i in range(n):
        udev.trigger(blocks[i % len(blocks)], "online")


def settle(daemon: Daemon, status_word: str, timeout: float = 20) -> None:
    """Wait until STATUS= reports ``status_word`` and then one quiet window more."""
    daemon.wait_for(status_word, timeout)
    time.sleep(1.0)


def test_burst_of_64_real_events_gives_exactly_one_load(udevd: str, tmp_path: Path) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    daemon = Daemon(tmp_path, root)
    daemon.wait_for("READY=1")
    assert (tmp_path / "handles-reload").exists()
    burst(64)
    settle(daemon, "reloads 1")
    err = daemon.stop()
    assert daemon.loads() == 1, err
    assert "64 event(s) on memory: reloading" in err
    assert not (tmp_path / "handles-reload").exists()


def test_burst_with_crash_hotplug_1_gives_no_load(udevd: str, tmp_path: Path) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="1")
    daemon = Daemon(tmp_path, root)
    daemon.wait_for("READY=1")
    burst(64)
    settle(daemon, "skipped 64")
    err = daemon.stop()
    assert daemon.loads() == 0, err
    assert "64 event(s) on memory: no reload: crash_hotplug=1" in err


def test_overflowing_a_tiny_socket_buffer_still_reloads_after_the_storm(
    udevd: str, tmp_path: Path
) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    daemon = Daemon(tmp_path, root, extra="receive_buffer_bytes = 4096\n")
    daemon.wait_for("READY=1")
    burst(3840)
    written = time.time()
    daemon.wait_for("overflows", timeout=60)

    def starts() -> list[float]:
        if not daemon.log.exists():
            return []
        return [json.loads(x)["t"] for x in daemon.log.read_text().splitlines()
                if json.loads(x)["op"] == "load"]

    # Until the resync's load has started (a busy CI machine took over 2 s), bounded.
    deadline = time.monotonic() + 60
    while not any(t >= written for t in starts()) and time.monotonic() < deadline:
        time.sleep(0.1)
    err = daemon.stop()
    assert "event socket overflowed" in err
    assert starts() and max(starts()) >= written, err


def test_cpu_and_memory_events_in_one_burst_reload_once(udevd: str, tmp_path: Path) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    daemon = Daemon(tmp_path, root)
    daemon.wait_for("READY=1")
    burst(8)
    for cpu in udev.cpus():
        udev.trigger(cpu, "online")
    settle(daemon, "reloads 1")
    err = daemon.stop()
    assert daemon.loads() == 1, err
    assert "on cpu,memory: reloading" in err


def test_a_second_run_is_refused_and_leaves_the_first_and_its_handover_alone(
    udevd: str, tmp_path: Path
) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    first = Daemon(tmp_path, root)
    first.wait_for("READY=1")
    second = subprocess.run(
        [sys.executable, "-m", "kdumpd", "run", "--config", str(first.config)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert second.returncode == 75, second.stderr
    assert f"kdumpd run (pid {first.process.pid}) owns reloads" in second.stderr
    assert (tmp_path / "handles-reload").exists()
    burst(16)
    settle(first, "reloads 1")
    first.stop()
    assert first.loads() == 1


def test_kdumpd_reload_during_the_daemons_reload_is_answered_by_it(
    udevd: str, tmp_path: Path
) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    daemon = Daemon(tmp_path, root, delay_ms=2000)
    daemon.wait_for("READY=1")
    burst(8)
    loaded = root / "sys/kernel/kexec_crash_loaded"
    deadline = time.monotonic() + 20
    while loaded.read_text().strip() != "0":  # the fake kernel's load is under way
        assert time.monotonic() < deadline, "the daemon's reload did not start"
        time.sleep(0.02)
    cli = subprocess.run(
        [sys.executable, "-m", "kdumpd", "reload", "--config", str(daemon.config)],
        capture_output=True, text=True, timeout=60, check=False)
    settle(daemon, "reloads 1")
    err = daemon.stop()
    assert cli.returncode == 0, cli.stderr
    first, detail = cli.stdout.splitlines()
    assert first.startswith("reload: memory: crash_hotplug=0") and first.endswith(
        "(decided by the running kdumpd)")
    assert detail.startswith("reloaded in ")
    assert daemon.loads() == 1, err  # one load: the CLI's request did not add a window
    assert "during a reload: answered by its outcome" in err
