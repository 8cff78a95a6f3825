"""packaging/build-deps (build-deb's dependency step) and debian/control's Build-Depends.

build-deps runs against stand-ins for dpkg-checkbuilddeps, apt-get and id on PATH that
answer like dpkg 1.21 (Debian 12) and 1.22 (Debian 13) and record what they were asked.
The Build-Depends checks: what the unit tests of the package build skip without, and
apt's own reading of debian/control on this machine (a simulation, nothing installed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import REPO, unavailable

BUILD_DEPS = REPO / "packaging" / "build-deps"

# dpkg-checkbuilddeps' message for a missing build dependency, before and after 1.22.
UNMET = {
    "dpkg 1.21": "dpkg-checkbuilddeps: error: Unmet build dependencies: gawk",
    "dpkg 1.22": "dpkg-checkbuilddeps: error: unmet build dependencies: gawk",
}

STAND_INS = {
    # Unmet until apt-get build-dep ran (it leaves a mark).
    "dpkg-checkbuilddeps": """#!/bin/sh
echo "dpkg-checkbuilddeps $PWD" >> "$LOG"
[ -e "$MARK" ] && exit 0
echo "$UNMET" >&2
exit 1
""",
    "apt-get": """#!/bin/sh
echo "apt-get $* in $PWD" >> "$LOG"
case "$*" in *build-dep*) [ -n "$APT_FAILS" ] && exit 100; touch "$MARK";; esac
exit 0
""",
    "id": """#!/bin/sh
echo "$UID_IS"
""",
}


def run_build_deps(tmp_path: Path, *, unmet: str | None, uid: int = 0,
                   apt_fails: bool = False) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    src = tmp_path / "kdumpd-0.1.0"
    src.mkdir()
    log, mark = tmp_path / "log", tmp_path / "installed"
    if unmet is None:
        mark.touch()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log), "MARK": str(mark),
           "UNMET": unmet or "", "UID_IS": str(uid), "APT_FAILS": "1" if apt_fails else ""}
    done = subprocess.run([str(BUILD_DEPS), str(src)], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return done, [call.replace(str(src), "SRC") for call in calls]


@pytest.mark.parametrize("dpkg", sorted(UNMET))
def test_missing_build_dependencies_are_installed_by_apt_get_build_dep(
    tmp_path: Path, dpkg: str
) -> None:
    done, calls = run_build_deps(tmp_path, unmet=UNMET[dpkg])

    assert done.returncode == 0, done.stderr
    assert calls == [
        "dpkg-checkbuilddeps SRC",
        "apt-get update -q in SRC",
        "apt-get build-dep -y -q --no-install-recommends ./ in SRC",
        "dpkg-checkbuilddeps SRC",  # dpkg agrees that everything is there now
    ]


def test_nothing_is_installed_when_nothing_is_missing(tmp_path: Path) -> None:
    done, calls = run_build_deps(tmp_path, unmet=None)

    assert done.returncode == 0, done.stderr
    assert calls == ["dpkg-checkbuilddeps SRC"]


def test_without_root_it_shows_dpkgs_list_and_installs_nothing(tmp_path: Path) -> None:
    done, calls = run_build_deps(tmp_path, unmet=UNMET["dpkg 1.22"], uid=1000)

    assert done.returncode == 1
    assert "unmet build dependencies: gawk" in done.stderr
    assert "run as root" in done.stderr
    assert not [call for call in calls if call.startswith("apt-get")]


def test_a_failed_apt_get_build_dep_fails_the_build(tmp_path: Path) -> None:
    done, _ = run_build_deps(tmp_path, unmet=UNMET["dpkg 1.22"], apt_fails=True)

    assert done.returncode != 0


def build_depends() -> dict[str, str]:
    """debian/control's Build-Depends: package name -> the whole entry."""
    control = (REPO / "debian" / "control").read_text()
    field = re.search(r"^Build-Depends:(.*?)^\S", control, flags=re.MULTILINE | re.DOTALL)
    assert field is not None
    entries = [entry.strip() for entry in field.group(1).split(",") if entry.strip()]
    return {entry.split()[0]: entry for entry in entries}


# What tests/core and tests/rules (debian/rules runs them) skip without, and why each is
# or is not a build dependency. A new skip on a tool or module fails the test below until
# it is listed here.
TEST_NEEDS = {
    'shutil.which("gawk")': "gawk <!nocheck>",
    'importorskip("prometheus_client.parser")': "python3-prometheus-client <!nocheck>",
    'importorskip("prometheus_client")': "python3-prometheus-client <!nocheck>",
    'importorskip("systemd.journal")': "python3-systemd <!nocheck>",
    # Essential in Debian: always there.
    'shutil.which("bash")': None,
    # The unit's exposure score needs systemd-analyze >= 250; buildds run no systemd.
    'shutil.which("systemd-analyze")': None,
    # The completion must come from shtab 1.7.1; Debian 12 has 1.5.5 (the test skips).
    'importorskip("shtab")': None,
    # Only with KDUMPD_REAL_UEVENTS=1 (root, the host's udev): never in a package build.
    'shutil.which("udevadm")': None,
}


def test_build_depends_name_what_the_package_builds_unit_tests_skip_without() -> None:
    found = set()
    for test_file in [*(REPO / "tests/core").glob("*.py"), *(REPO / "tests/rules").glob("*.py")]:
        found |= set(re.findall(r'(?:shutil\.which|importorskip)\("[^"]+"\)',
                                test_file.read_text()))

    assert found <= set(TEST_NEEDS), f"list in TEST_NEEDS: {sorted(found - set(TEST_NEEDS))}"
    depends = build_depends()
    for need, entry in TEST_NEEDS.items():
        if entry is not None:
            assert depends.get(entry.split()[0]) == entry, need


def test_apt_reads_the_build_depends_and_the_nocheck_profile(tmp_path: Path) -> None:
    # apt-get build-dep as build-deps runs it, simulated (-s) against this machine's
    # package lists and an empty dpkg status, so every build dependency must resolve
    # to an installable package; with DEB_BUILD_PROFILES=nocheck the test tools drop out.
    if shutil.which("apt-get") is None or not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        unavailable("needs apt-get and its package lists (apt-get update)")
    src = tmp_path / "kdumpd"
    shutil.copytree(REPO / "debian", src / "debian")
    status = tmp_path / "status"
    status.touch()

    def simulate(profiles: str) -> set[str]:
        done = subprocess.run(
            ["apt-get", "-s", "-o", f"Dir::State::status={status}", "build-dep", "./"],
            cwd=src, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "DEB_BUILD_PROFILES": profiles, "LC_ALL": "C"})
        assert done.returncode == 0, done.stdout + done.stderr
        return set(re.findall(r"^Inst (\S+)", done.stdout, flags=re.MULTILINE))

    full, nocheck = simulate(""), simulate("nocheck")

    assert {"debhelper", "dh-python", "pybuild-plugin-pyproject", "gawk",
            "python3-prometheus-client", "python3-pytest"} <= full
    assert not {"gawk", "python3-prometheus-client", "python3-pytest"} & nocheck
    assert {"debhelper", "dh-python"} <= nocheck
