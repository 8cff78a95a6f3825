"""The one-owner lock file: only root can open it, so nobody else can hold it."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd import lock

NOBODY = 65534
# An interpreter another uid may run (the test's own may live under root's 0700 home).
SYSTEM_PYTHON = Path("/usr/bin/python3")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_lock_file_is_0600(tmp_path: Path) -> None:
    fd = lock.acquire(tmp_path / "state")
    try:
        assert mode(tmp_path / "state" / "lock") == 0o600
    finally:
        lock.release(fd)


def test_an_older_0644_lock_file_becomes_0600(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("123 run\n")
    path.chmod(0o644)
    lock.release(lock.acquire(tmp_path))
    assert mode(path) == 0o600


def test_the_mode_is_fixed_even_when_another_owner_holds_it(tmp_path: Path) -> None:
    fd = lock.acquire(tmp_path)
    (tmp_path / "lock").chmod(0o644)
    try:
        with pytest.raises(lock.LockHeld):
            lock.acquire(tmp_path)
        assert mode(tmp_path / "lock") == 0o600
    finally:
        lock.release(fd)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user can enter (pytest's tmp_path is 0700 all the way)."""
    directory = Path(tempfile.mkdtemp(prefix="kdumpd-lock-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()


HOLD = """
import fcntl, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
except PermissionError:
    sys.exit(3)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
sys.exit(0)
"""


def as_nobody(path: Path) -> int:
    """Exit status of another uid opening ``path`` read-only and flocking it: 0 it could,
    3 it may not open the file."""
    return subprocess.run([str(SYSTEM_PYTHON), "-c", HOLD, str(path)], user=NOBODY,
                          timeout=30, check=False).returncode


@pytest.mark.skipif(os.geteuid() != 0 or not SYSTEM_PYTHON.exists(),
                    reason="running as another uid needs root and /usr/bin/python3")
def test_another_user_cannot_open_the_lock_file_to_hold_it(open_dir: Path) -> None:
    older = open_dir / "older"
    older.write_text("")
    older.chmod(0o644)
    assert as_nobody(older) == 0  # what a 0644 lock file allowed: the attack itself
    lock.release(lock.acquire(open_dir))
    assert as_nobody(open_dir / "lock") == 3
