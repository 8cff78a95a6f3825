"""packaging/build-deps (build-deb's dependency step).

build-deps runs against stand-ins for dpkg-checkbuilddeps, apt-get and id on PATH that
answer like dpkg 1.21 (Debian 12) and 1.22 (Debian 13) and record what they were asked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .helpers import REPO

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
