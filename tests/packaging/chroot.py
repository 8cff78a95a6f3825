"""A Debian chroot (debootstrap, minbase) with the distribution's own Python and libraries,
cached between runs outside the repository, and throwaway copies of it to install into.

The cache is ``$KDUMPD_TEST_CACHE`` or ``/var/cache/kdumpd-test``; each base chroot lives
in ``chroot-<name>-<key>`` where the key hashes every input (suite, packages, mirror,
:data:`SCRIPT_VERSION`), so changing any of them builds a new one. The name is the suite
(``bookworm``, the default, with :data:`PACKAGES`: the .deb's runtime dependencies), or
the suite and a flavour for another package list (``trixie-minimal``: debootstrap's
minbase and ``make`` only, to build in, :data:`MINIMAL`). A finished chroot has a
``.kdumpd-complete`` marker; a half-built one is never used (it is built under a temporary
name and renamed). Commands run in a private mount namespace (``unshare --mount``) with
``/proc`` and the host's ``/sys`` mounted, so nothing leaks when they end. Needs root.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SUITE = "bookworm"  # the default; Debian 13 is "trixie"
MIRROR = os.environ.get("KDUMPD_TEST_MIRROR", "http://deb.debian.org/debian")
# Runtime dependencies of the .deb (so dpkg -i needs no network: anything the package
# needs beyond these makes dpkg -i fail), systemd for systemd-analyze, and man-db, with
# which systemd-analyze verify checks that Documentation=man:kdumpd(8) resolves; pytest
# and hypothesis, which debian/tests/control names for the autopkgtest.
PACKAGES = ("python3", "python3-pyudev", "python3-systemd", "kexec-tools", "procps",
            "systemd", "man-db", "python3-pytest", "python3-hypothesis")
# A fresh machine with nothing but what `make deb` is run with: make (build-deb installs
# its own tools and packaging/build-deps the build dependencies, from the network).
MINIMAL = ("make",)
# Bump when the steps below change in a way that changes the result.
SCRIPT_VERSION = "1"
MARKER = ".kdumpd-complete"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LC_ALL": "C.UTF-8", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}


def cache_dir() -> Path:
    return Path(os.environ.get("KDUMPD_TEST_CACHE", "/var/cache/kdumpd-test"))


def cache_key(suite: str = SUITE, packages: Sequence[str] = PACKAGES) -> str:
    inputs = json.dumps([SCRIPT_VERSION, suite, MIRROR, sorted(packages)])
    return hashlib.sha256(inputs.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def base_chroot(debootstrap: str = "debootstrap", *, suite: str = SUITE,
                packages: Sequence[str] = PACKAGES, flavour: str = "") -> Path:
    """The cached base chroot of ``suite`` with ``packages`` (and what debootstrap's
    minbase holds), built with debootstrap on first use (1-2 minutes). ``flavour`` names
    a package list other than a suite's usual one, so that the two are cached side by
    side (each replaces only older chroots of its own name)."""
    cache = cache_dir()
    name = f"{suite}-{flavour}" if flavour else suite
    target = cache / f"chroot-{name}-{cache_key(suite, packages)}"
    if (target / MARKER).exists():
        return target
    with _locked(cache / ".lock"):
        if (target / MARKER).exists():
            return target
        building = cache / f"{target.name}.building"
        if building.exists():
            shutil.rmtree(building)
        started = time.monotonic()
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(packages)}",
             suite, str(building), MIRROR],
            capture_output=True, text=True, timeout=1200, env=ENV, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({result.returncode}):\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        # Smaller copies: no downloaded .debs.
        for leftover in (building / "var/cache/apt/archives").glob("*.deb"):
            leftover.unlink()
        (building / MARKER).write_text(json.dumps({
            "suite": suite, "mirror": MIRROR, "packages": sorted(packages),
            "script_version": SCRIPT_VERSION,
            "debootstrap_s": round(time.monotonic() - started, 1),
        }) + "\n")
        building.rename(target)
        # Older chroots of this name (other package lists or script versions) are stale;
        # those of another flavour ("trixie-minimal" beside "trixie") are not.
        stale_name = re.compile(rf"chroot-{re.escape(name)}-[0-9a-f]{{12}}")
        for stale in cache.iterdir():
            if (stale != target and stale_name.fullmatch(stale.name)
                    and (stale / MARKER).exists()):
                shutil.rmtree(stale, ignore_errors=True)
    return target


def run(root: Path, argv: Sequence[str], *, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` chrooted into ``root`` with /proc and /sys mounted (privately)."""
    script = ('mount -t proc proc "$0/proc" && mount --rbind /sys "$0/sys" && '
              'exec chroot "$0" "$@"')
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--fork", "--",
         "/bin/sh", "-c", script, str(root), *argv],
        capture_output=True, text=True, timeout=timeout, env=ENV, check=False,
    )
    if "cannot change root filesystem propagation" in result.stderr:
        # "/" is not a mount point: these tests run inside a chroot themselves.
        raise RuntimeError("needs a private mount namespace (unshare --mount --propagation "
                           f"private), which fails here: {result.stderr.strip()}")
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode} in {root}:\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@contextlib.contextmanager
def instance(base: Path) -> Iterator[Path]:
    """A throwaway copy of ``base`` (next to the cache, for a fast same-disk copy)."""
    parent = cache_dir() / "instances"
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
    root = work / "root"
    try:
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)],
                       check=True, timeout=600)
        # As in a container: maintainer scripts must not start services.
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(work, ignore_errors=True)
