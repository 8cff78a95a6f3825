"""With the real udev (opt-in: KDUMPD_REAL_UEVENTS=1, root, package udev).

``udevadm test`` runs the rules for a device without a running udevd and without
executing RUN programs (it lists them), so a rules file with a harmless ``RUN+="/bin/true
..."`` shows whether the distribution's reload would have run. The file lives in
/etc/udev/rules.d for a moment (udevadm test reads only the system directories) and is
removed afterwards; a running udevd is not reloaded (the fake control socket is absent).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd.rules import manage, planner, udev

from .conftest import distro_text

CPU0 = "/devices/system/cpu/cpu0"

pytestmark = [
    pytest.mark.real_uevents,
    pytest.mark.skipif(os.environ.get("KDUMPD_REAL_UEVENTS") != "1",
                       reason="set KDUMPD_REAL_UEVENTS=1 to run with the real udev"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("udevadm") is None, reason="needs udevadm (package udev)"),
    pytest.mark.skipif(not Path("/sys" + CPU0).exists(), reason=f"needs /sys{CPU0}"),
]


def udevadm_test(action: str = "add") -> str:
    done = subprocess.run(["udevadm", "test", f"--action={action}", CPU0],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


RELOADS = {  # the distribution's reload, replaced by a harmless RUN
    "debian": 'PROGRAM="/usr/sbin/kdump-config try-reload"',
    "fedora": 'RUN+="/bin/sh -c \'/usr/bin/systemctl is-active kdump.service || exit 0; '
              '/usr/bin/systemd-run --quiet --no-block /usr/lib/udev/kdump-udev-throttler\'"',
}


@pytest.fixture(params=sorted(RELOADS))
def distro_rules(request: pytest.FixtureRequest) -> Iterator[tuple[Path, str, str]]:
    """A kdump rules file (Debian's: no labels; Fedora's: kdump_reload_end) whose reload is a
    harmless, recognisable RUN."""
    distro = request.param
    token = f"kdumpd-test-{secrets.token_hex(4)}"
    run_line = f"/bin/true {token}"
    assert RELOADS[distro] in distro_text(distro)
    text = distro_text(distro).replace(RELOADS[distro], f'RUN+="{run_line}"')
    path = Path("/etc/udev/rules.d") / f"97-{token}.rules"
    path.write_text(text)
    try:
        yield path, text, run_line
    finally:
        path.unlink(missing_ok=True)
        for leftover in path.parent.glob(f"{path.name}.*"):
            leftover.unlink()


def test_handover_file_switches_the_distribution_reload_off_and_on(
        distro_rules: tuple[Path, str, str], tmp_path: Path) -> None:
    path, original, run_line = distro_rules
    handover = tmp_path / "handles-reload"
    env = manage.Env(udev=udev.Udev(control_socket=tmp_path / "no-udevd-control"))

    before = udevadm_test()
    assert f"run: '{run_line}'" in before  # the distribution's rule runs today

    result = manage.run(state="present", path=str(path), handover=handover, env=env)
    assert result["changed"] is True, result
    assert planner.BLOCK_BEGIN in path.read_text()

    without = udevadm_test()
    assert f"Reading rules file: {path}" in without
    problems = [line for line in without.splitlines()
                if str(path) + ":" in line and ("nvalid" in line or "rror" in line
                                                 or "ignoring" in line)]
    assert problems == []  # the managed block and label parse cleanly
    assert f"run: '{run_line}'" in without  # kdumpd not running: the distribution reloads

    handover.write_text("1\n")
    with_handover = udevadm_test()
    assert f"run: '{run_line}'" not in with_handover  # kdumpd in charge: skipped
    handover.unlink()
    assert f"run: '{run_line}'" in udevadm_test()  # kdumpd stopped: reloads again

    removed = manage.run(state="absent", path=str(path), handover=handover, env=env)
    assert removed["changed"] is True
    assert path.read_text() == original


def test_installed_udevadm_reports_its_version() -> None:
    version = udev.Udev().version()
    assert version is not None and version > 200
