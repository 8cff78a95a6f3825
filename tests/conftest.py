"""Shared fixtures: fake sysfs trees and a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpd import fakesysfs
from kdumpd.fakesysfs import FakeClock


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake sysfs tree: crash kernel loaded, crash_hotplug=0 for both subsystems."""
    return fakesysfs.build(tmp_path / "root")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
