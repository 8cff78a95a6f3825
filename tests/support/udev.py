"""Real udev for integration tests and benchmarks: a systemd-udevd of our own when none
runs (stopped by its PID afterwards), and synthetic kernel uevents."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

UDEVD_CANDIDATES = ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd")
SYSTEM = Path("/sys/devices/system")


def udevd_answers() -> bool:
    """True when a systemd-udevd answers on its control socket."""
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return False
    try:
        done = subprocess.run([udevadm, "control", "--ping", "--timeout=2"],
                              capture_output=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def start_udevd() -> subprocess.Popen[bytes]:
    """Start a systemd-udevd of our own and wait until it answers."""
    binary = next((c for c in UDEVD_CANDIDATES if Path(c).exists()), None)
    if binary is None:
        raise RuntimeError("systemd-udevd not found: install the Debian package 'udev'")
    process = subprocess.Popen([binary], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not udevd_answers():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_udevd(process)
            raise RuntimeError(f"{binary} did not start (exit {process.returncode})")
        time.sleep(0.05)
    return process


def stop_udevd(process: subprocess.Popen[bytes]) -> None:
    """Stop a udevd we started, by its PID."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@contextlib.contextmanager
def running_udevd() -> Iterator[str]:
    """Yield "existing" or "started"; a udevd we started is stopped afterwards."""
    if udevd_answers():
        yield "existing"
        return
    process = start_udevd()
    try:
        yield "started"
    finally:
        stop_udevd(process)


def memory_blocks() -> list[Path]:
    """This machine's memory block devices, in numeric order."""
    blocks = SYSTEM.glob("memory/memory[0-9]*")
    return sorted(blocks, key=lambda p: int(p.name[len("memory"):]))


def cpus() -> list[Path]:
    found = SYSTEM.glob("cpu/cpu[0-9]*")
    return sorted(found, key=lambda p: int(p.name[len("cpu"):]))


def trigger(device: Path, action: str) -> None:
    """Make the kernel emit a synthetic ``action`` uevent for ``device`` (needs root)."""
    (device / "uevent").write_text(action)
