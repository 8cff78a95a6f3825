"""One version everywhere: pyproject.toml, kdumpd.__version__, debian/changelog and the
RPM spec; and the runtime requirements the packages declare."""

from __future__ import annotations

import re
import sys

from kdumpd import __version__

from .helpers import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SPEC = (REPO / "packaging" / "rpm" / "kdumpd.spec").read_text()


def test_versions_agree() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    changelog = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    debian = re.match(r"kdumpd \(([^)]+)\)", changelog)
    spec = re.search(r"^Version:\s*(\S+)", SPEC, flags=re.MULTILINE)
    assert debian and spec
    upstream = debian.group(1).split(":")[-1].rsplit("-", 1)[0]
    assert {pyproject, upstream, spec.group(1)} == {__version__}


def test_spec_changelog_names_the_version() -> None:
    top = SPEC.split("%changelog", 1)[1].strip().splitlines()[0]
    assert f"- {__version__}-" in top


def test_runtime_requirements() -> None:
    # Written by hand only what is not a Python distribution; Fedora's generator derives
    # python3dist(pyudev) and python3dist(systemd-python) from pyproject.toml.
    requires = set(re.findall(r"^Requires:\s*(\S+)", SPEC, flags=re.MULTILINE))
    assert requires == {"kexec-tools"}
    pyproject = (REPO / "pyproject.toml").read_text()
    for dist in ("pyudev", "systemd-python"):
        assert f'"{dist}>=' in pyproject
    control = (REPO / "debian" / "control").read_text()
    depends = control.split("\nDepends:", 1)[1].split("\nSuggests:", 1)[0]
    for package in ("kexec-tools", "python3-pyudev", "python3-systemd"):
        assert package in depends
