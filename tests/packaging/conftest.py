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

import pytest

from .helpers import in_ci


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "packaging: builds the .deb/.rpm (KDUMPD_PACKAGING=1 or CI=true)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if in_ci() or os.environ.get("KDUMPD_PACKAGING") == "1":
        return
    skip = pytest.mark.skip(reason="builds packages: set KDUMPD_PACKAGING=1 (CI=true runs it)")
    for item in items:
        if item.get_closest_marker("packaging") is not None:
            item.add_marker(skip)

