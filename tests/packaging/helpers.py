"""Preconditions of the packaging tests: skip outside CI, fail in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """Skip, or fail in CI where every precondition must hold."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def need_root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root")


def need_tool(tool: str, apt_package: str) -> str:
    """The tool's path; in CI a missing tool is installed from Debian first."""
    found = shutil.which(tool)
    if found is None and in_ci() and os.geteuid() == 0:
        subprocess.run([str(REPO / "tools" / "ensure-apt"), apt_package], check=True,
                       timeout=900)
        found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} is missing (Debian package {apt_package})")
    assert found is not None
    return found


def build(script: str, pattern: str) -> Path:
    """Run packaging/<script> (up to date builds return at once); the one artefact
    in out/ matching ``pattern``."""
    subprocess.run([str(REPO / "packaging" / script)], check=True, timeout=1800,
                   stdout=sys.stderr)
    found = sorted((REPO / "out").glob(pattern))
    assert len(found) == 1, found
    return found[0]
