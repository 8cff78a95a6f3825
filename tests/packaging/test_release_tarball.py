"""A release tarball (``git archive``, files 0664 as git writes them) builds the .deb and
the .rpm as root and as an unprivileged user, with the packages' own checks (the .deb's
dh_auto_test, the spec's %check) running.

As root, kdumpd refuses a group-writable configuration file; the builds' smoke tests
therefore parse the shipped configuration (config.load) instead of trust-checking a file
the tarball unpacked with whatever mode it had.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import REPO, need_root, need_tool

pytestmark = pytest.mark.packaging

CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
NOBODY = 65534


@pytest.fixture
def base() -> Iterator[Path]:
    """A build directory a user can reach (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="kdumpd-release-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def release(tmp_path: Path, owner: int) -> Path:
    """``git archive HEAD`` unpacked keeping the archive's modes, owned by ``owner``."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--prefix=kdumpd/", "HEAD"],
                             capture_output=True, check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "--same-permissions", "-C", str(tmp_path)], input=archive,
                   check=True, timeout=120)
    tree = tmp_path / "kdumpd"
    os.chmod(tmp_path, 0o755)  # noqa: S103 - a build directory the user must reach
    for path in (tmp_path, *tree.rglob("*"), tree):
        os.lchown(path, owner, owner)
    return tree


def as_user(uid: int, argv: list[str]) -> list[str]:
    if uid == 0:
        return argv
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


@pytest.mark.parametrize("uid", [0, NOBODY], ids=["root", "user"])
def test_the_deb_builds_from_a_release_tarball(base: Path, uid: int) -> None:
    tmp_path = base
    need_root()
    need_tool("dpkg-buildpackage", "dpkg-dev")
    need_tool("fakeroot", "fakeroot")
    tree = release(tmp_path, uid)
    config = tree / "packaging/kdumpd.toml"
    assert stat.S_IMODE(config.stat().st_mode) & 0o020  # group-writable, as git wrote it
    env = {**CLEAN_ENV, "HOME": str(tmp_path)}
    done = subprocess.run(as_user(uid, ["dpkg-buildpackage", "--no-sign", "-b"]), cwd=tree,
                          env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "kdumpd 0.1" in done.stdout  # the smoke test ran (kdumpd --version)
    assert list(tmp_path.glob("kdumpd_*_all.deb"))


@pytest.mark.parametrize("uid", [0, NOBODY], ids=["root", "user"])
def test_the_rpm_builds_from_a_release_tarball(base: Path, uid: int) -> None:
    tmp_path = base
    need_root()
    need_tool("rpmbuild", "rpm")
    tree = release(tmp_path, uid)
    env = {**CLEAN_ENV, "HOME": str(tmp_path)}
    done = subprocess.run(as_user(uid, ["./packaging/build-rpm"]), cwd=tree, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rpms = list((tree / "out").rglob("kdumpd-*.noarch.rpm"))
    assert rpms, sorted(p.name for p in (tree / "out").rglob("*"))
