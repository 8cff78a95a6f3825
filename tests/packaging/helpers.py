"""Preconditions of the packaging tests: skip outside CI, fail in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
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
