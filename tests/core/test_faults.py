"""Faults with real processes: a kexec that hangs is killed by the timeout and retried."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kdumpd.backends.kexec import KexecBackend, KexecImage
from kdumpd.backends.runner import run
from kdumpd.reloader import Reloader
from kdumpd.sysfs import Sysfs

FAKE_KEXEC = """
import pathlib, sys, time
root = pathlib.Path(sys.argv[1])
args = sys.argv[2:]
# The kernel as kexec gets it, /proc/self/fd/N of a file kdumpd opened: its real path.
shown = [str(pathlib.Path(a).resolve()) if a.startswith("/proc/self/fd/") else a
         for a in args]
with open(root / "calls", "a") as calls:
    calls.write(" ".join(shown) + "\\n")
loaded = root / "sys/kernel/kexec_crash_loaded"
if "-u" in args:
    loaded.write_text("0\\n")
    sys.exit(0)
hang = root / "hang-once"
if hang.exists():
    hang.unlink()
    time.sleep(60)
loaded.write_text("1\\n")
"""


def test_hanging_load_is_killed_and_retried(root: Path, tmp_path: Path) -> None:
    script = tmp_path / "kexec.py"
    script.write_text(FAKE_KEXEC)
    (root / "hang-once").touch()
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")

    def runner(argv: Sequence[str], timeout: float, *, pass_fds: Sequence[int] = ()) -> str:
        assert argv[0] == "kexec"
        return run([sys.executable, str(script), str(root), *argv[1:]], timeout,
                   pass_fds=pass_fds)

    sysfs = Sysfs(root)
    backend = KexecBackend(KexecImage(kernel, None, "quiet"), "file", sysfs, runner, 0.5)
    outcome = Reloader(backend, sysfs, retries=2, sleep=lambda s: None).reload()
    assert outcome.ok, outcome.error
    assert outcome.attempts == 2
    calls = (root / "calls").read_text().splitlines()
    assert calls == [f"-s -p {kernel} --append=quiet"] * 2  # never a separate unload
    assert sysfs.crash_loaded().text == "1"


def test_load_failing_inside_the_syscall_leaves_status_honest(
    root: Path, tmp_path: Path
) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    sysfs = Sysfs(root)

    def runner(argv: Sequence[str], timeout: float, *, pass_fds: Sequence[int] = ()) -> str:
        sysfs.path("kernel/kexec_crash_loaded").write_text("0\n")  # the kernel freed it
        return run([sys.executable, "-c", "import sys; sys.exit('kexec: EBUSY')"], timeout)

    backend = KexecBackend(KexecImage(kernel, None, "quiet"), "auto", sysfs, runner, 5)
    outcome = Reloader(backend, sysfs, retries=1, sleep=lambda s: None).reload()
    assert not outcome.ok
    assert outcome.attempts == 2
    assert "kexec: EBUSY" in outcome.error
    assert outcome.crash_loaded.text == "0"


def test_a_timeout_kills_the_commands_children_too(tmp_path: Path) -> None:
    import pytest

    from kdumpd.backends import BackendError

    marker = tmp_path / "child-alive"
    child = f"import time, pathlib; time.sleep(1.5); pathlib.Path({str(marker)!r}).touch()"
    parent = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]);"
              " time.sleep(30)")
    with pytest.raises(BackendError, match="timed out"):
        run([sys.executable, "-c", parent], 0.5)
    import time

    time.sleep(2.0)
    assert not marker.exists(), "the timed-out command's child lived on"
