"""Helpers for the packaging tests.

Fast tests (default config, man page, versions) always run. The slow ones build the
packages (``packaging/build-deb``, ``packaging/build-rpm``: incremental, so repeated runs
reuse ``out/`` while the sources are unchanged) and are marked ``packaging``; they run
when ``KDUMPD_PACKAGING=1`` or ``CI=true``. Outside CI they skip with a reason when a
precondition (root, a tool) is missing; in CI (``CI=true``) a missing precondition is a
failure, and missing Debian tools are installed with ``tools/ensure-apt`` first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "packaging: builds the .deb/.rpm (KDUMPD_PACKAGING=1 or CI=true)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if in_ci() or os.environ.get("KDUMPD_PACKAGING") == "1":
        return
    skip = pytest.mark.skip(reason="builds packages: set KDUMPD_PACKAGING=1 (CI=true runs it)")
    for item in items:
        if "packaging" in item.keywords:
            item.add_marker(skip)


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
