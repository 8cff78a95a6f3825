"""The atomic writer: faults injected at every step leave the old bytes and no temp file."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from kdumpd import atomic
from kdumpd.atomic import OsHooks, WriteError, write_file
from kdumpd.rules.udev import ValidationError

from .conftest import leftovers

OLD = b"# old\nRUN+=\"/bin/true\"\n"
NEW = b"# new\n" * 1000


def failing(real: Callable[..., Any], code: int, *, when: Callable[..., bool] = lambda *a: True,
            ) -> Callable[..., Any]:
    def hook(*args: Any) -> Any:
        if when(*args):
            raise OSError(code, os.strerror(code))
        return real(*args)
    return hook


def is_temp(path: str, *_rest: Any) -> bool:
    return ".kdumpd-" in path


def temp_fd(opened: set[int]) -> Callable[..., bool]:
    return lambda fd, *_rest: fd in opened


def recording_open(opened: set[int]) -> Callable[[str, int, int], int]:
    def hook(path: str, flags: int, mode: int) -> int:
        fd = os.open(path, flags, mode)
        if is_temp(path):
            opened.add(fd)
        return fd
    return hook


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "rules.d" / "50-kdump-tools.rules"
    path.parent.mkdir()
    path.write_bytes(OLD)
    return path


def faults() -> dict[str, Callable[[set[int]], OsHooks]]:
    base = OsHooks()
    return {
        "create EACCES": lambda o: dataclasses.replace(
            base, open=failing(os.open, errno.EACCES, when=is_temp)),
        "create read-only dir": lambda o: dataclasses.replace(
            base, open=failing(os.open, errno.EROFS, when=is_temp)),
        "write ENOSPC": lambda o: dataclasses.replace(
            base, open=recording_open(o), write=failing(os.write, errno.ENOSPC,
                                                        when=temp_fd(o))),
        "short write then ENOSPC": lambda o: dataclasses.replace(
            base, open=recording_open(o), write=_short_then_enospc()),
        "chown EPERM": lambda o: dataclasses.replace(
            base, fchown=failing(os.fchown, errno.EPERM)),
        "chmod EPERM": lambda o: dataclasses.replace(
            base, fchmod=failing(os.fchmod, errno.EPERM)),
        "fsync EIO": lambda o: dataclasses.replace(
            base, open=recording_open(o), fsync=failing(os.fsync, errno.EIO, when=temp_fd(o))),
        "close EIO": lambda o: dataclasses.replace(
            base, open=recording_open(o), close=_close_then_fail(o)),
        "selinux EACCES": lambda o: dataclasses.replace(
            base, selinux=failing(lambda *a: None, errno.EACCES)),
        "rename EXDEV": lambda o: dataclasses.replace(
            base, replace=failing(os.replace, errno.EXDEV)),
        "rename EACCES": lambda o: dataclasses.replace(
            base, replace=failing(os.replace, errno.EACCES)),
        "rename read-only fs": lambda o: dataclasses.replace(
            base, replace=failing(os.replace, errno.EROFS)),
    }


EXPECTED = {
    "create EACCES": "EACCES", "create read-only dir": "EROFS", "write ENOSPC": "ENOSPC",
    "short write then ENOSPC": "ENOSPC", "chown EPERM": "EPERM", "chmod EPERM": "EPERM",
    "fsync EIO": "EIO", "close EIO": "EIO", "selinux EACCES": "EACCES",
    "rename EXDEV": "EXDEV", "rename EACCES": "EACCES", "rename read-only fs": "EROFS",
}


def _short_then_enospc() -> Callable[[int, bytes], int]:
    calls = {"n": 0}

    def hook(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return os.write(fd, data[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return hook


def _close_then_fail(opened: set[int]) -> Callable[[int], None]:
    def hook(fd: int) -> None:
        os.close(fd)
        if fd in opened:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    return hook


@pytest.mark.parametrize("fault", sorted(faults()))
@pytest.mark.parametrize("backup", [False, True])
def test_failure_at_any_step_keeps_old_bytes_and_leaves_no_temp(
        fault: str, backup: bool, target: Path) -> None:
    hooks = faults()[fault](set())
    before = os.stat(target)
    with pytest.raises(WriteError) as caught:
        write_file(target, NEW, hooks=hooks, backup=backup)
    message = str(caught.value)
    assert message.startswith(f"cannot write {target}: ")
    assert "\n" not in message
    assert f"({EXPECTED[fault]})" in message  # e.g. "No space left on device (ENOSPC)"
    assert target.read_bytes() == OLD
    assert os.stat(target).st_ino == before.st_ino
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    assert leftovers(target.parent) == []


@pytest.mark.parametrize(("fault", "step"), [
    ("create EACCES", "create temp file"), ("write ENOSPC", "write"), ("fsync EIO", "fsync"),
    ("rename EXDEV", "rename"), ("chown EPERM", "set owner"), ("close EIO", "close"),
])
def test_error_names_the_failing_step(fault: str, step: str, target: Path) -> None:
    with pytest.raises(WriteError, match=f": {step}: "):
        write_file(target, NEW, hooks=faults()[fault](set()))


def test_validation_failure_keeps_old_bytes(target: Path) -> None:
    seen: list[bytes] = []

    def validate(temp: Path) -> None:
        seen.append(temp.read_bytes())
        raise ValidationError("line 3: nonsense")

    with pytest.raises(ValidationError):
        write_file(target, NEW, validate=validate, backup=True)
    assert seen == [NEW]  # the validator saw the complete new text
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_success_replaces_content_atomically(target: Path) -> None:
    old_inode = os.stat(target).st_ino
    result = write_file(target, NEW)
    assert target.read_bytes() == NEW
    assert os.stat(target).st_ino != old_inode  # a rename, not an in-place rewrite
    assert result.backup is None and result.warnings == ()
    assert leftovers(target.parent) == []


def test_owner_and_mode_of_the_replaced_file_are_kept(target: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    os.chown(target, 1234, 5678)
    os.chmod(target, 0o640)
    write_file(target, NEW)
    info = os.stat(target)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 5678, 0o640)


def test_new_file_takes_owner_and_mode_from_like(tmp_path: Path) -> None:
    vendor = tmp_path / "vendor.rules"
    vendor.write_bytes(OLD)
    os.chmod(vendor, 0o604)
    if os.geteuid() == 0:
        os.chown(vendor, 4321, 8765)
    target = tmp_path / "etc.rules"
    write_file(target, NEW, like=vendor)
    info = os.stat(target)
    assert stat.S_IMODE(info.st_mode) == 0o604
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (4321, 8765)


def test_new_file_without_reference_is_0644(tmp_path: Path) -> None:
    target = tmp_path / "new.rules"
    write_file(target, NEW)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_backup_keeps_the_old_bytes_under_a_name_udev_ignores(target: Path) -> None:
    hooks = dataclasses.replace(OsHooks(), now=lambda: 1_700_000_000.0)
    result = write_file(target, NEW, backup=True, hooks=hooks)
    assert result.backup is not None
    assert result.backup.read_bytes() == OLD
    assert result.backup.name.endswith("~") and not result.backup.name.endswith(".rules")
    assert result.backup.name.startswith(f"{target.name}.{os.getpid()}.")
    again = write_file(target, NEW + b"x", backup=True, hooks=hooks)
    assert again.backup != result.backup  # same second: a distinct name


def test_selinux_context_is_copied_from_the_file_it_replaces(target: Path) -> None:
    calls: list[tuple[str | None, str, str]] = []
    hooks = dataclasses.replace(OsHooks(), selinux=lambda ref, temp, final: calls.append(
        (ref, temp, final)))
    write_file(target, NEW, hooks=hooks)
    [(reference, temp, final)] = calls
    assert reference == str(target) and final == str(target) and is_temp(temp)


def test_symlink_target_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(OLD)
    link = tmp_path / "link.rules"
    link.symlink_to(real)
    with pytest.raises(WriteError, match="symlink"):
        write_file(link, NEW)
    assert real.read_bytes() == OLD and link.is_symlink()


def test_failing_directory_fsync_after_rename_is_a_warning(target: Path) -> None:
    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)

    result = write_file(target, NEW, hooks=dataclasses.replace(OsHooks(), fsync=fsync))
    assert target.read_bytes() == NEW
    assert len(result.warnings) == 1 and "fsync of" in result.warnings[0]


def test_delete_with_backup_renames(target: Path) -> None:
    result = atomic.delete_file(target, backup=True)
    assert not target.exists()
    assert result.backup is not None and result.backup.read_bytes() == OLD


def test_failing_delete_keeps_the_file(target: Path) -> None:
    hooks = dataclasses.replace(OsHooks(), unlink=failing(os.unlink, errno.EROFS))
    with pytest.raises(WriteError, match="cannot delete .*Read-only file system"):
        atomic.delete_file(target, hooks=hooks)
    assert target.read_bytes() == OLD


class FakeSelinux:
    """Stands in for the libselinux bindings: records the calls, answers like them."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.set: list[tuple[str, str]] = []

    def is_selinux_enabled(self) -> int:
        return int(self.enabled)

    def lgetfilecon(self, path: str) -> list[object]:
        return [30, "system_u:object_r:udev_rules_t:s0"]

    def matchpathcon(self, path: str, mode: int) -> list[object]:
        return [30, "system_u:object_r:etc_t:s0"]

    def lsetfilecon(self, path: str, context: str) -> int:
        self.set.append((path, context))
        return 0


@pytest.mark.parametrize(("reference", "expected"), [
    ("/etc/udev/rules.d/98-kexec.rules", "system_u:object_r:udev_rules_t:s0"),
    (None, "system_u:object_r:etc_t:s0"),
])
def test_selinux_context_uses_the_bindings_when_importable(
        monkeypatch: pytest.MonkeyPatch, reference: str | None, expected: str) -> None:
    fake = FakeSelinux(enabled=True)
    monkeypatch.setitem(sys.modules, "selinux", fake)
    atomic.copy_selinux_context(reference, "/tmp/.x.tmp", "/etc/udev/rules.d/98-kexec.rules")
    assert fake.set == [("/tmp/.x.tmp", expected)]


def test_selinux_disabled_or_missing_leaves_the_context_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSelinux(enabled=False)
    monkeypatch.setitem(sys.modules, "selinux", fake)
    atomic.copy_selinux_context("/a", "/b", "/c")
    assert fake.set == []
    monkeypatch.setitem(sys.modules, "selinux", None)  # import fails
    atomic.copy_selinux_context("/a", "/b", "/c")


def test_the_rules_lock_makes_a_second_writer_wait_then_give_up(tmp_path: Path) -> None:
    waits: list[float] = []
    with atomic.directory_lock(tmp_path), pytest.raises(
            atomic.LockBusy, match="held by another process") as busy, \
            atomic.directory_lock(tmp_path, wait_s=0.2, sleep=waits.append):
        pass
    assert "another kdumpd" not in str(busy.value)
    assert 3 <= len(waits) <= 6
    with atomic.directory_lock(tmp_path, wait_s=0.0):  # released: free again
        pass


def test_the_daemon_never_waits_for_a_busy_rules_lock(tmp_path: Path) -> None:
    waits: list[float] = []
    with atomic.directory_lock(tmp_path), pytest.raises(atomic.LockBusy, match="try again"), \
            atomic.directory_lock(tmp_path, wait_s=0.0, sleep=waits.append):
        pass
    assert waits == []


def test_a_missing_directory_needs_no_lock(tmp_path: Path) -> None:
    with atomic.directory_lock(tmp_path / "absent"):
        pass


def test_the_lock_is_a_0600_file_of_its_own_not_the_directory(tmp_path: Path) -> None:
    import fcntl
    holder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # someone holds the directory
        with atomic.directory_lock(tmp_path, wait_s=0.0):
            info = os.lstat(tmp_path / atomic.LOCK_NAME)
    finally:
        os.close(holder)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert list(tmp_path.iterdir()) == []  # removed as the lock is let go


def test_a_taker_whose_file_was_removed_meanwhile_takes_the_new_one(tmp_path: Path) -> None:
    import fcntl
    # A waiter opened the file, then its holder let go (and removed it).
    stale = os.open(tmp_path / atomic.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(tmp_path / atomic.LOCK_NAME)
    try:
        with atomic.directory_lock(tmp_path, wait_s=0.0):
            fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # not the lock any more
            held = os.open(tmp_path / atomic.LOCK_NAME, os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(held)
    finally:
        os.close(stale)


def test_an_older_wider_lock_file_is_made_0600(tmp_path: Path) -> None:
    lock = tmp_path / atomic.LOCK_NAME
    lock.write_bytes(b"")
    lock.chmod(0o644)
    with atomic.directory_lock(tmp_path, wait_s=0.0):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "directory", "fifo"])
def test_a_planted_lock_file_is_refused_never_followed(tmp_path: Path, plant: str) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's\n")
    victim.chmod(0o644)
    lock = tmp_path / atomic.LOCK_NAME
    if plant == "symlink":
        lock.symlink_to(victim)
    elif plant == "hardlink":
        os.link(victim, lock)
    elif plant == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(WriteError, match="rules lock") as refused, \
            atomic.directory_lock(tmp_path, wait_s=0.0):
        pass
    assert not isinstance(refused.value, atomic.LockBusy)
    assert victim.read_bytes() == b"root's\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_check_mode_needs_no_lock_file_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / atomic.LOCK_NAME).mkdir()  # unusable: a check run writes nothing anyway
    with atomic.directory_lock(tmp_path, wait_s=0.0, required=False):
        pass


ANOTHER_UID = 65534  # nobody
# An interpreter that uid may run (the venv's and pyenv's live under root's home).
SYSTEM_PYTHON = Path("/usr/bin/python3")


def as_nobody(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SYSTEM_PYTHON), "-c", code, *args], cwd="/", user=ANOTHER_UID,
                            group=ANOTHER_UID, extra_groups=[], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
sys.stdin.read()
"""

TRY_OPEN = """
import os, sys
try:
    os.open(sys.argv[1], os.O_RDONLY)
    print("opened")
except OSError as error:
    print(type(error).__name__)
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another uid can read (tmp_path is root's 0700 under pytest)."""
    directory = Path(tempfile.mkdtemp(prefix="kdumpd-lock-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.mark.skipif(os.geteuid() != 0 or not SYSTEM_PYTHON.exists(),
                    reason="needs root (and /usr/bin/python3) to run a process as another uid")
def test_another_uid_can_neither_open_the_lock_nor_stop_the_rules_by_the_directory(
        shared_dir: Path) -> None:
    holder = as_nobody(HOLD, str(shared_dir))  # the attack of issue 30, item 3
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with atomic.directory_lock(shared_dir, wait_s=0.0):  # not held up by it
            pass
    finally:
        holder.communicate("")
    with atomic.directory_lock(shared_dir, wait_s=0.0):
        opener = as_nobody(TRY_OPEN, str(shared_dir / atomic.LOCK_NAME))
        out, _ = opener.communicate()
    assert out == "PermissionError\n"  # so it can never hold kdumpd's lock either


def test_stale_temp_files_of_that_file_only_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "50-kdump-tools.rules"
    stale = atomic.temp_name(target, "dead0001")
    other = atomic.temp_name(tmp_path / "98-kexec.rules", "dead0002")
    for path in (stale, other):
        path.write_bytes(b"x" * 4096)
    assert atomic.remove_stale_temps(target, atomic.OsHooks()) == [stale]
    assert not stale.exists() and other.exists()


def test_a_group_that_cannot_be_kept_is_explained(tmp_path: Path) -> None:
    def no_chown(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    path = tmp_path / "x.rules"
    path.write_text("old\n")
    hooks = dataclasses.replace(atomic.OsHooks(), fchown=no_chown)
    with pytest.raises(atomic.WriteError, match="no CAP_CHOWN.*root:root"):
        atomic.write_file(path, b"new\n", hooks=hooks)
    assert path.read_text() == "old\n"
    assert not [p for p in tmp_path.iterdir() if ".kdumpd-" in p.name]
