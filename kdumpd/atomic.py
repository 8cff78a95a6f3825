"""Atomic replacement of a file: temp file in the same directory, fsync, rename, fsync dir.

Readers (udevd) see either the old file or the new one, never a torn one, and a crash at
any point leaves one of the two. Every OS call goes through :class:`OsHooks`, so tests can
make each step fail (ENOSPC on write, EACCES on create, EROFS, a failing rename) without
``mock.patch``: the target keeps its old bytes and no temp file is left behind.

Owner, group and mode of the file being replaced are kept (for a new file they are taken
from ``like``, e.g. the vendor file an override shadows); the SELinux context too, through
the ``selinux`` bindings when they can be imported, otherwise the context is left to the
rename (the new inode gets the directory's default).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

LOCK_WAIT_S = 10.0  # how long a run waits for another kdumpd writing the same directory

Validate = Callable[[Path], None]


class WriteError(Exception):
    """Writing failed; the target is unchanged. ``str()``: ``cannot write P: step: reason``."""


def copy_selinux_context(reference: Optional[str], temp: str, final: str) -> None:
    """Give ``temp`` the context of ``reference`` (or the policy's for ``final``).

    A no-op when the ``selinux`` bindings are missing or SELinux is disabled. Raises OSError.
    """
    try:
        import selinux
    except ImportError:
        return
    if not selinux.is_selinux_enabled():
        return
    if reference is not None:
        _rc, context = selinux.lgetfilecon(reference)
    else:
        _rc, context = selinux.matchpathcon(final, stat.S_IFREG | 0o644)
    selinux.lsetfilecon(temp, context)


@dataclass(frozen=True)
class OsHooks:
    """The OS calls the writer makes; replace one to inject a fault."""

    open: Callable[[str, int, int], int] = os.open
    write: Callable[[int, bytes], int] = os.write
    fsync: Callable[[int], None] = os.fsync
    close: Callable[[int], None] = os.close
    fchown: Callable[[int, int, int], None] = os.fchown
    fchmod: Callable[[int, int], None] = os.fchmod
    lstat: Callable[[str], os.stat_result] = os.lstat
    replace: Callable[[str, str], None] = os.replace
    link: Callable[[str, str], None] = os.link
    unlink: Callable[[str], None] = os.unlink
    selinux: Callable[[Optional[str], str, str], None] = copy_selinux_context
    now: Callable[[], float] = time.time
    token: Callable[[], str] = field(default=lambda: secrets.token_hex(4))


@dataclass(frozen=True)
class WriteResult:
    backup: Path | None = None
    warnings: tuple[str, ...] = ()


def temp_name(path: Path, token: str) -> Path:
    # A leading dot and no ".rules" suffix: udevd ignores the file while it exists.
    return path.with_name(f".{path.name}.kdumpd-{token}.tmp")


LOCK_NAME = ".kdumpd.lock"  # a leading dot and no ".rules": udevd ignores it


class LockBusy(WriteError):
    """Another process holds the rules lock (a ``kdumpd rule`` run, the Ansible module,
    the daemon): nothing was changed; try again later."""


@contextlib.contextmanager
def directory_lock(directory: Path, wait_s: float = LOCK_WAIT_S,
                   sleep: Callable[[float], None] = time.sleep, *,
                   required: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on the lock file ``directory/.kdumpd.lock``: runs
    that write files in ``directory`` (two ``kdumpd rule install``, the daemon and the
    CLI) take turns, so none loses the other's change. A missing directory needs no lock.

    Only the lock file's owner (root) may open it: it is created ``O_NOFOLLOW`` mode
    0600 through a descriptor of the directory, and a file found there is used only when
    it is a regular file of this process's user with one link (set to 0600 again). The
    holder removes it before it lets go, and a taker checks that the file it locked is
    still the one of that name, so no file is left in the rules directory. The directory
    itself is never locked: flock needs no write access, so anyone who can read the
    directory could hold that (issue 30, item 3).

    ``wait_s`` 0 never waits (the daemon's loop: it retries later on its timers). Raises
    :class:`LockBusy` when another holder keeps the lock longer than ``wait_s``, and
    :class:`WriteError` when the lock file cannot be used; with ``required=False`` (a
    check-mode run, which writes nothing) a lock file that cannot be created is no error.
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield
        return
    except OSError as error:
        raise WriteError(f"cannot lock {directory}: {_reason(error)}") from None
    try:
        try:
            fd = _take_lock_file(dir_fd, directory, wait_s, sleep)
        except WriteError as error:
            if required or isinstance(error, LockBusy):
                raise
            fd = None
        if fd is None:
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # gone already: nothing of ours left
                os.unlink(LOCK_NAME, dir_fd=dir_fd)
            os.close(fd)  # releases the lock
    finally:
        os.close(dir_fd)


def _take_lock_file(dir_fd: int, directory: Path, wait_s: float,
                    sleep: Callable[[float], None]) -> int:
    """The lock file, flocked, and still the file of that name; raises WriteError."""
    lock_path = directory / LOCK_NAME
    waited = 0.0
    while True:
        fd = _open_lock_file(dir_fd, lock_path)
        if fd is None:
            continue
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if waited >= wait_s:
                        raise LockBusy(
                            f"the rules lock {lock_path} is held by another process (a "
                            f"`kdumpd rule` run or the Ansible module writing {directory})"
                            + (f": waited {wait_s:.0f} s" if wait_s else "")
                            + "; try again") from None
                    sleep(0.05)
                    waited += 0.05
            if _still_named(fd, dir_fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder removed it as it let go: take the new one


def _still_named(fd: int, dir_fd: int) -> bool:
    try:
        named = os.stat(LOCK_NAME, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def _open_lock_file(dir_fd: int, shown: Path) -> int | None:
    """The lock file, opened read-write (None: removed as it was opened, try again);
    raises WriteError when it is not one to trust."""
    try:
        fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_NOCTTY | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as error:
        raise WriteError(f"cannot open the rules lock {shown}: {_reason(error)}") from None
    try:
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "not a regular file"
        elif info.st_uid != os.geteuid():
            problem = f"owned by uid {info.st_uid}, not {os.geteuid()}"
        elif info.st_nlink == 0:  # its holder let go and removed it as we opened it
            os.close(fd)
            return None
        elif info.st_nlink != 1:
            problem = f"linked {info.st_nlink} times"
        if problem:
            raise WriteError(f"the rules lock {shown} is {problem}: refusing it; remove it")
        if stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)  # an older or planted mode: nobody else may open it
    except OSError as error:
        os.close(fd)
        raise WriteError(f"cannot use the rules lock {shown}: {_reason(error)}") from None
    except WriteError:
        os.close(fd)
        raise
    return fd


def remove_stale_temps(path: Path, hooks: OsHooks) -> list[Path]:
    """Delete temp files an earlier run left for ``path`` (killed between create and
    rename). Call only under :func:`directory_lock`: then no run is writing one."""
    removed = []
    with contextlib.suppress(OSError):
        for stale in path.parent.glob(f".{path.name}.kdumpd-*.tmp"):
            with contextlib.suppress(OSError):
                hooks.unlink(str(stale))
                removed.append(stale)
    return removed


def backup_name(path: Path, hooks: OsHooks) -> Path:
    """``NAME.PID.YYYY-MM-DD@HH:MM:SS~`` like Ansible; never ends in ``.rules``."""
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S", time.localtime(hooks.now()))
    candidate = path.with_name(f"{path.name}.{os.getpid()}.{stamp}~")
    counter = 1
    while _exists(candidate, hooks):
        candidate = path.with_name(f"{path.name}.{os.getpid()}.{stamp}.{counter}~")
        counter += 1
    return candidate


def _exists(path: Path, hooks: OsHooks) -> bool:
    try:
        hooks.lstat(str(path))
    except FileNotFoundError:
        return False
    return True


def _reason(error: OSError) -> str:
    if error.errno is not None and error.strerror:
        return f"{error.strerror} ({errno.errorcode.get(error.errno, error.errno)})"
    return str(error) or type(error).__name__


def _stat(path: Path, hooks: OsHooks) -> os.stat_result | None:
    try:
        return hooks.lstat(str(path))
    except FileNotFoundError:
        return None


def write_file(
    path: Path,
    data: bytes,
    *,
    like: Path | None = None,
    validate: Validate | None = None,
    backup: bool = False,
    hooks: OsHooks = OsHooks(),  # noqa: B008 - frozen, immutable default
) -> WriteResult:
    """Replace ``path`` with ``data`` atomically.

    ``validate(temp_path)`` runs on the complete temp file before the rename; whatever it
    raises is passed on after the temp file is removed. ``backup`` keeps the old file as a
    hard link named by :func:`backup_name`. Raises :class:`WriteError` (target unchanged);
    a failing fsync of the directory after the rename is only a warning (the new file is
    in place, its directory entry may not be durable yet).
    """
    try:
        old = _stat(path, hooks)
        reference = old if old is not None else (_stat(like, hooks) if like else None)
        if reference is not None and not stat.S_ISREG(reference.st_mode):
            reference = old if old is not None and stat.S_ISREG(old.st_mode) else None
    except OSError as error:
        raise WriteError(f"cannot write {path}: stat: {_reason(error)}") from None
    if old is not None and stat.S_ISLNK(old.st_mode):
        raise WriteError(f"cannot write {path}: it is a symlink; kdumpd does not write "
                         "through symlinks")
    temp = temp_name(path, hooks.token())
    backup_path: Path | None = None
    created = False
    step = "create temp file"
    try:
        fd = hooks.open(str(temp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                        | os.O_NOFOLLOW, 0o600)
        created = True
        try:
            _fill(fd, data, reference, hooks)
        finally:
            step = "close"
            hooks.close(fd)
        step = "SELinux context"
        hooks.selinux(str(path) if old is not None else (str(like) if like else None),
                      str(temp), str(path))
        if validate is not None:
            step = "validate"
            validate(temp)
        if backup and old is not None:
            step = "backup"
            backup_path = backup_name(path, hooks)
            hooks.link(str(path), str(backup_path))
        step = "rename"
        hooks.replace(str(temp), str(path))
        created = False
    except _StepFailed as error:
        raise WriteError(f"cannot write {path}: {error.strerror}") from None
    except OSError as error:
        raise WriteError(f"cannot write {path}: {step}: {_reason(error)}") from None
    finally:
        if created:
            _remove_quietly(temp, hooks)
            if backup_path is not None:
                _remove_quietly(backup_path, hooks)
    return WriteResult(backup_path, _sync_directory(path.parent, hooks))


class _StepFailed(OSError):
    pass


def _fill(fd: int, data: bytes, reference: os.stat_result | None, hooks: OsHooks) -> None:
    """Write, chown, chmod, fsync ``fd``. Raises :class:`_StepFailed` naming the step."""
    step = "write"
    try:
        view = memoryview(data)
        while view:
            written = hooks.write(fd, view.tobytes())
            if written <= 0:
                raise OSError(errno.EIO, "short write")
            view = view[written:]
        if reference is not None:
            step = "set owner"
            try:
                hooks.fchown(fd, reference.st_uid, reference.st_gid)
            except PermissionError as error:
                raise OSError(error.errno, (
                    f"{error.strerror}: the file belongs to {reference.st_uid}:"
                    f"{reference.st_gid} and this process may not give a file away (no "
                    "CAP_CHOWN, as under kdumpd.service); make it root:root, or run "
                    "`kdumpd rule install` as root outside the unit")) from None
        step = "set mode"
        hooks.fchmod(fd, stat.S_IMODE(reference.st_mode) if reference else 0o644)
        step = "fsync"
        hooks.fsync(fd)
    except OSError as error:
        raise _StepFailed(error.errno, f"{step}: {_reason(error)}") from None


def replace_at(dir_fd: int, name: str, data: bytes, *, label: str,
               token: Callable[[], str] = lambda: secrets.token_hex(4)) -> None:
    """Replace ``name`` inside the open directory ``dir_fd`` with ``data`` (mode 0644).

    Every step is relative to the descriptor, so nothing on the way to the directory can
    be re-pointed meanwhile: the temp file is created ``O_EXCL|O_NOFOLLOW`` (a name
    someone planted, a symlink included, makes the write fail instead of following it),
    fsynced and renamed over ``name`` in the same directory, then the directory is fsynced.
    ``label`` names the file in messages. Raises :class:`WriteError` (``name`` unchanged,
    no temp file left).
    """
    temp = f".{name}.kdumpd-{token()}.tmp"
    step = "create temp file"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as error:
        raise WriteError(f"cannot write {label}: {step}: {_reason(error)}") from None
    try:
        try:
            _fill(fd, data, None, OsHooks())
        finally:
            os.close(fd)
        step = "rename"
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except _StepFailed as error:
        _unlink_at(temp, dir_fd)
        raise WriteError(f"cannot write {label}: {error.strerror}") from None
    except OSError as error:
        _unlink_at(temp, dir_fd)
        raise WriteError(f"cannot write {label}: {step}: {_reason(error)}") from None
    with contextlib.suppress(OSError):  # the new file is in place; durability is a bonus
        os.fsync(dir_fd)


def _unlink_at(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def delete_file(path: Path, *, backup: bool = False,
                hooks: OsHooks = OsHooks()) -> WriteResult:  # noqa: B008
    """Delete ``path`` (renamed to a backup name instead when ``backup``).

    Raises :class:`WriteError`; the file is still there when it does.
    """
    try:
        if backup:
            backup_path: Path | None = backup_name(path, hooks)
            hooks.replace(str(path), str(backup_path))
        else:
            backup_path = None
            hooks.unlink(str(path))
    except OSError as error:
        raise WriteError(f"cannot delete {path}: {_reason(error)}") from None
    return WriteResult(backup_path, _sync_directory(path.parent, hooks))


def _remove_quietly(path: Path, hooks: OsHooks) -> None:
    with contextlib.suppress(OSError):  # best effort: the original error is what matters
        hooks.unlink(str(path))


def _sync_directory(directory: Path, hooks: OsHooks) -> tuple[str, ...]:
    try:
        fd = hooks.open(str(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0)
        try:
            hooks.fsync(fd)
        finally:
            hooks.close(fd)
    except OSError as error:
        return (f"the change is in place but fsync of {directory} failed: {_reason(error)}",)
    return ()
