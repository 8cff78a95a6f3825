"""The binary RPM built by packaging/build-rpm (on Debian, with rpm's rpmbuild): its
file list, config flags, requirements and scriptlets."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .helpers import REPO, build, need_root, need_tool

pytestmark = pytest.mark.packaging



@pytest.fixture(scope="module")
def rpm() -> Path:
    need_root()  # build-rpm may have to install build dependencies
    need_tool("rpmbuild", "rpm")
    return build("build-rpm", "rpm/kdumpd-*.noarch.rpm")


def query(rpm: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_files(rpm: Path) -> None:
    files = set(query(rpm, "--list").split())
    for path in ("/usr/bin/kdumpd",
                 "/usr/lib/systemd/system/kdumpd.service",
                 "/usr/lib/tmpfiles.d/kdumpd.conf",
                 "/usr/share/bash-completion/completions/kdumpd",
                 "/usr/share/kdumpd/kdumpd-crash-hotplug.rules",
                 "/etc/kdumpd/kdumpd.toml",
                 "/usr/share/man/man8/kdumpd.8.gz",
                 "/usr/share/man/man5/kdumpd.toml.5.gz"):
        assert path in files
    # Every module of the package, and the template as package data.
    modules = [p.relative_to(REPO).as_posix() for p in (REPO / "kdumpd").rglob("*.py")]
    modules.append("kdumpd/rules/data/kdumpd-crash-hotplug.rules")
    missing = [m for m in modules if not any(f.endswith("/" + m) for f in files)]
    assert missing == []
    assert not [f for f in files if "/udev/rules.d/" in f]


def test_config_is_noreplace(rpm: Path) -> None:
    lines = query(rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\\n]").splitlines()
    flags = dict(line.rsplit(" ", 1) for line in lines)
    assert "c" in flags["/etc/kdumpd/kdumpd.toml"]
    assert "n" in flags["/etc/kdumpd/kdumpd.toml"]


def test_requires(rpm: Path) -> None:
    """kexec-tools by hand; the Python ones generated from the wheel's metadata (rpm's
    pythondistdeps on site-packages/*.dist-info), as on Fedora, none written by hand."""
    requires = query(rpm, "--requires").split("\n")
    assert "kexec-tools" in requires
    assert any(r.startswith("python3.") and "dist(pyudev)" in r for r in requires), requires
    assert any("dist(systemd-python)" in r for r in requires), requires
    assert "python3-pyudev" not in requires and "python3-systemd" not in requires
    assert not any("tomli" in r for r in requires)  # only for Python < 3.11


def test_modules_are_in_fedoras_layout(rpm: Path) -> None:
    files = query(rpm, "--list").split()
    assert any(re.search(r"^/usr/lib/python3\.\d+/site-packages/kdumpd/__init__\.py$", f)
               for f in files)
    assert not [f for f in files if "dist-packages" in f]


def test_scriptlets_handle_the_unit(rpm: Path) -> None:
    scripts = query(rpm, "--scripts")
    for section in ("postinstall", "preuninstall", "postuninstall"):
        assert f"{section} scriptlet" in scripts
    assert scripts.count("kdumpd.service") >= 3


def test_file_trigger_on_kdump_udev_rules(rpm: Path) -> None:
    triggers = query(rpm, "--filetriggers")
    assert "filetriggerin" in triggers
    assert "/udev/rules.d" in triggers
    assert "try-reload-or-restart kdumpd.service" in triggers


def test_payload_matches_the_sources(rpm: Path, tmp_path: Path) -> None:
    need_tool("rpm2cpio", "rpm")
    need_tool("cpio", "cpio")
    payload = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=payload, cwd=tmp_path, check=True)
    for installed, source in (("usr/lib/systemd/system/kdumpd.service", "units/kdumpd.service"),
                              ("etc/kdumpd/kdumpd.toml", "packaging/kdumpd.toml"),
                              ("usr/share/kdumpd/kdumpd-crash-hotplug.rules",
                               "rules.d/kdumpd-crash-hotplug.rules"),
                              ("usr/share/kdumpd/kexec-load.conf", "units/kexec-load.conf"),
                              ("usr/share/kdumpd/distro-tools.conf", "units/distro-tools.conf"),
                              ("usr/lib/tmpfiles.d/kdumpd.conf", "units/kdumpd.tmpfiles")):
        assert (tmp_path / installed).read_bytes() == (REPO / source).read_bytes(), installed
