"""`make deb` on a fresh Debian 13 (trixie): in a throwaway copy of a cached minimal trixie
chroot (debootstrap's minbase and make, no build dependency), on a copy of the sources,
packaging/build-deb as it ships installs its tools and the build dependencies
(packaging/build-deps: apt-get build-dep, from the network), builds, and runs trixie's
lintian, which must report no error (Debian 12's debhelper put the unit under /lib, which
trixie's lintian rejects: aliased-location). The .deb built there, and the one built on
the host (Debian 12), install with dpkg alone in a trixie chroot that holds the runtime
dependencies, and an earlier build that had the unit under /lib upgrades to it without
losing the unit."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd import __version__

from . import chroot
from .helpers import REPO, build, need_root, need_tool

pytestmark = pytest.mark.packaging

SUITE = "trixie"
UNIT = "usr/lib/systemd/system/kdumpd.service"
# merged /usr: these are symlinks into /usr, a package must not ship files under them.
ALIASED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """out/deb/ of `make deb` run in a fresh trixie chroot (copied here), and its output."""
    need_root()
    need_tool("debootstrap", "debootstrap")
    need_tool("unshare", "util-linux")
    base = chroot.base_chroot(suite=SUITE, packages=chroot.MINIMAL, flavour="minimal")
    saved = tmp_path_factory.mktemp("trixie-deb")
    with chroot.instance(base) as root:
        # Fresh: not even dpkg-dev, so build-deb and build-deps must install everything.
        for package in ("dpkg-dev", "debhelper", "lintian", "python3"):
            status = chroot.run(root, ["dpkg-query", "-W", "-f=${db:Status-Status}",
                                       package], check=False).stdout
            assert status != "installed", f"{package} is in the minimal chroot"
        tree = root / "build/kdumpd"
        # The sources as build-deb copies them (tracked and untracked, not ignored files).
        subprocess.run(["bash", "-c", '. packaging/sources.sh && copy_sources "$1"', "-",
                        str(tree)], cwd=REPO, check=True, timeout=300)
        started = time.monotonic()
        result = chroot.run(root, ["make", "-C", "/build/kdumpd", "deb"], timeout=1800,
                            check=False)
        took = time.monotonic() - started
        output = f"{result.stdout}\n{result.stderr}\n(make deb took {took:.0f} s)"
        assert result.returncode == 0, output[-6000:]
        for artefact in (tree / "out/deb").iterdir():
            shutil.copy(artefact, saved)
        # The host's build (Debian 12), checked by trixie's lintian here too.
        host_deb = build("build-deb", "deb/kdumpd_*_all.deb")
        shutil.copy(host_deb, root / "tmp/host.deb")
        host = chroot.run(root, ["lintian", "--pedantic", "/tmp/host.deb"], check=False)
        (saved / "host-lintian.txt").write_text(host.stdout + host.stderr)
    yield saved, output


@pytest.fixture(scope="module")
def runtime() -> Path:
    """The cached trixie chroot with the .deb's runtime dependencies."""
    return chroot.base_chroot(suite=SUITE)


def the_deb(directory: Path) -> Path:
    found = sorted(directory.glob("kdumpd_*_all.deb"))
    assert len(found) == 1, found
    return found[0]


def test_make_deb_installs_the_build_dependencies_and_builds(built: tuple[Path, str]) -> None:
    directory, output = built
    assert "build-deps: installing the build dependencies" in output, output[-3000:]
    assert the_deb(directory).name == f"kdumpd_{__version__}_all.deb"
    log = (directory / "build.log").read_text()
    # The unit tests ran in the build (not a nocheck build).
    assert re.search(r"^\d+ passed", log, flags=re.MULTILINE), log[-3000:]


def test_trixie_lintian_reports_no_errors(built: tuple[Path, str]) -> None:
    directory, _ = built
    report = (directory / "lintian.txt").read_text()
    assert "aliased-location" not in report
    assert not re.findall(r"^E: .*", report, flags=re.MULTILINE), report


def test_trixie_lintian_warnings_are_documented(built: tuple[Path, str]) -> None:
    directory, _ = built
    report = (directory / "lintian.txt").read_text()
    docs = (REPO / "docs/packaging.md").read_text()
    tags = set(re.findall(r"^W: \S+: (\S+)", report, flags=re.MULTILINE))
    assert {tag for tag in tags if tag not in docs} == set(), report


def test_the_host_build_passes_trixie_lintian(built: tuple[Path, str]) -> None:
    """One build for both releases: the .deb built on Debian 12 is what trixie accepts."""
    directory, _ = built
    report = (directory / "host-lintian.txt").read_text()
    assert not re.findall(r"^E: .*", report, flags=re.MULTILINE), report


def test_nothing_under_an_aliased_directory(built: tuple[Path, str]) -> None:
    directory, _ = built
    listing = subprocess.run(["dpkg-deb", "-c", str(the_deb(directory))], capture_output=True,
                             text=True, check=True, timeout=60).stdout
    paths = [line.split()[5] for line in listing.splitlines()]
    assert f"./{UNIT}" in paths
    assert [p for p in paths if p.split("/")[1] in ALIASED] == []


@pytest.mark.parametrize("which", ["trixie", "host"])
def test_installs_with_dpkg_in_trixie(built: tuple[Path, str], runtime: Path,
                                      which: str) -> None:
    directory, _ = built
    deb = the_deb(directory) if which == "trixie" else build("build-deb",
                                                             "deb/kdumpd_*_all.deb")
    with chroot.instance(runtime) as root:
        shutil.copy(deb, root / "tmp/kdumpd.deb")
        chroot.run(root, ["dpkg", "-i", "/tmp/kdumpd.deb"])
        status = chroot.run(root, ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "kdumpd"])
        assert status.stdout.strip() == "ii"
        version = chroot.run(root, ["kdumpd", "--version"]).stdout.strip()
        assert version == f"kdumpd {__version__}"
        assert chroot.run(root, ["dpkg", "-S", f"/{UNIT}"]).stdout.startswith("kdumpd:")
        assert (root / "etc/systemd/system/multi-user.target.wants/kdumpd.service").is_symlink()
        assert "OK" in chroot.run(root, ["kdumpd", "config", "check"]).stdout
        # trixie's systemd (257) accepts the unit without a word (see test_deb.py).
        verify = chroot.run(root, ["systemd-analyze", "verify", f"/{UNIT}"], check=False)
        assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
        chroot.run(root, ["dpkg", "--purge", "kdumpd"])
        assert not (root / UNIT).exists()


def test_upgrade_from_a_build_with_the_unit_under_lib(built: tuple[Path, str], runtime: Path,
                                                      tmp_path: Path) -> None:
    """dpkg keeps a file that moves from /lib to /usr/lib within a package (the old path
    is the same inode as a new one), so an upgrade from an earlier build, made on Debian
    12 before the unit moved, keeps the unit and its enablement."""
    directory, _ = built
    tree = tmp_path / "old"
    subprocess.run(["dpkg-deb", "-R", str(the_deb(directory)), str(tree)], check=True,
                   timeout=60)
    (tree / "lib/systemd").mkdir(parents=True)
    (tree / "usr/lib/systemd/system").rename(tree / "lib/systemd/system")
    control = tree / "DEBIAN/control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {__version__}~lib",
                              control.read_text(), flags=re.MULTILINE))
    (tree / "DEBIAN/md5sums").write_text(
        (tree / "DEBIAN/md5sums").read_text().replace(f" {UNIT}\n",
                                                      " lib/systemd/system/kdumpd.service\n"))
    old = tmp_path / "old.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(old)], check=True,
                   capture_output=True, timeout=60)
    with chroot.instance(runtime) as root:
        shutil.copy(old, root / "tmp/old.deb")
        shutil.copy(the_deb(directory), root / "tmp/new.deb")
        chroot.run(root, ["dpkg", "-i", "/tmp/old.deb"])
        assert chroot.run(root, ["dpkg", "-S", "/lib/systemd/system/kdumpd.service"])
        chroot.run(root, ["dpkg", "-i", "/tmp/new.deb"])
        assert (root / UNIT).is_file()
        assert chroot.run(root, ["dpkg", "-S", f"/{UNIT}"]).stdout.startswith("kdumpd:")
        assert (root / "etc/systemd/system/multi-user.target.wants/kdumpd.service").is_symlink()
