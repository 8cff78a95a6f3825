"""Shared fixtures: fake sysfs trees, a fake clock, and turns at the host's udev."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd.fakes import fakesysfs
from kdumpd.fakes.clock import MockTime


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake sysfs tree: crash kernel loaded, crash_hotplug=0 for both subsystems."""
    return fakesysfs.build(tmp_path / "root")


@pytest.fixture
def clock() -> MockTime:
    return MockTime()


@pytest.fixture(autouse=True)
def kdumpd_logger_as_it_was() -> Iterator[None]:
    """A test that runs the CLI in-process sets up kdumpd's logging (a level, a handler on
    the stderr pytest captured and then closes): put the logger back after each test, so
    the next one neither sees INFO records it did not ask for nor writes to a closed
    stream."""
    import logging

    logger = logging.getLogger("kdumpd")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate


HOST_UDEV_LOCK = Path("/run/lock/kdumpd-tests-real-uevents.lock")
HOST_UDEV_WAIT_S = 20 * 60  # the longest real-uevent module takes about 40 s


@pytest.fixture(scope="module", autouse=True)
def host_udev_turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """Modules marked real_uevents take turns at the host's udev, across pytest runs.

    .ci/run runs the other Pythons' unit tests beside the main run; two such modules at
    once would count each other's synthetic uevents and fight over the one udevd.
    """
    if (request.node.get_closest_marker("real_uevents") is None
            or os.environ.get("KDUMPD_REAL_UEVENTS") != "1"):
        yield
        return
    with open(HOST_UDEV_LOCK, "a", encoding="utf-8") as lock:
        deadline = time.monotonic() + HOST_UDEV_WAIT_S
        while True:  # the lock goes with the file: when it is closed, or its run dies
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{HOST_UDEV_LOCK}: another pytest run has held the host's "
                                f"udev for {HOST_UDEV_WAIT_S // 60} min (fuser -v names it)")
                time.sleep(1.0)
        yield
