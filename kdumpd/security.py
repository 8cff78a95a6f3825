"""Refusing files a root daemon must not trust: config and crash kernel images that
someone other than root could have written, and directories where others could plant or
hold what kdumpd keeps (its state, its lock, its control socket)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kdumpd.config import Config, ConfigError


def check_trusted_file(path: Path, label: str, *, euid: int | None = None) -> None:
    """As root, refuse ``path`` unless it and every directory above it are root's and not
    writable by others (:func:`path_problem`). A missing file is fine here (the caller
    decides what absence means); read it with :func:`fd_problem` as its ``vet`` so the
    file that is read is checked too. Raises ConfigError naming the file."""
    if not os.path.lexists(path):
        return
    problem = path_problem(path, euid=euid)
    if problem:
        itself = f"{path.resolve()} "
        problem = (f"{label} {problem[len(itself):]}" if problem.startswith(itself)
                   else f"{label}: {problem}")
        raise ConfigError("", f"{problem}: refusing it", path)


def check_private_dir(path: Path, label: str, *, euid: int | None = None) -> None:
    """As root, refuse to keep state, locks or the control socket in ``path``
    (:func:`private_dir_problem`). Raises ConfigError naming ``label`` (exit 78)."""
    problem = private_dir_problem(path, euid=euid)
    if problem:
        raise ConfigError(label, f"{problem}: refusing it")


def private_dir_problem(path: Path, *, euid: int | None = None) -> str | None:
    """As root, why ``path`` must not hold what kdumpd owes and who owns reloads, or None.

    The directory, or where it does not exist yet the nearest directory above it (where
    kdumpd would create it), must be root's, writable by nobody else, sticky or not (in a
    sticky world-writable directory anyone can still create the lock or a ``state.json``
    symlink before kdumpd does), and every directory on the way must pass
    :func:`path_problem`'s rules.
    """
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    existing = Path(os.path.abspath(path))
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    where = str(existing) if existing == Path(os.path.abspath(path)) else \
        f"{existing} (where {path} would be created)"
    problem = path_problem(existing, euid=0)
    if problem:
        return problem if existing == Path(os.path.abspath(path)) else f"{where}: {problem}"
    info = existing.stat()
    if not stat.S_ISDIR(info.st_mode):
        return f"{where} is not a directory"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{where} is group- or world-writable (mode "
                f"{stat.S_IMODE(info.st_mode):04o}; the sticky bit does not help: others "
                "could create kdumpd's files there first)")
    return None


def check_image_files(cfg: Config, *, euid: int | None = None) -> None:
    """The configured kernel and initrd will be loaded as the crash kernel: vet them."""
    for key, value in (("reload.kernel", cfg.reload.kernel), ("reload.initrd", cfg.reload.initrd)):
        if value:
            try:
                check_trusted_file(Path(value), key, euid=euid)
            except ConfigError as error:
                raise ConfigError(key, error.problem, error.path) from None


def path_problem(path: Path, *, euid: int | None = None) -> str | None:
    """As root, why ``path`` must not be trusted to decide the crash kernel, or None.

    The file and every directory on the way to it (after resolving symlinks, so a
    root-owned link to a file someone else controls is caught) must be owned by root and
    not writable by group or others; a sticky directory owned by root (/tmp) is allowed,
    since nobody else can replace root's entries there.
    """
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    try:
        target = path.resolve(strict=True)
    except OSError as error:
        return f"{path}: {error.strerror or error}"
    problem = _as_configured_problem(path)
    if problem:
        return problem
    for current in (target, *target.parents):
        try:
            info = current.stat()
        except OSError as error:
            return f"cannot stat {current}: {error.strerror}"
        where = f"{current}" if current == target else f"{current} (on the way to {path})"
        if info.st_uid != 0:
            return f"{where} is owned by uid {info.st_uid}, not root"
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        sticky = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if writable and not sticky:
            return f"{where} is group- or world-writable (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _as_configured_problem(path: Path) -> str | None:
    """The path as configured, before its links are resolved: a symlink on the way that
    someone else owns could be re-pointed (in sticky /tmp, or in their directory) at
    another root-owned file, an old kernel; every link must be root's, in a directory
    only root can change."""
    absolute = Path(os.path.abspath(path))
    for current in (absolute, *absolute.parents):
        try:
            info = os.lstat(current)
        except OSError:
            continue  # the resolved check names what is missing
        if not stat.S_ISLNK(info.st_mode):
            continue
        if info.st_uid != 0:
            return f"{current} (on the way to {path}) is a symlink owned by uid {info.st_uid}"
        holder = current.parent.stat()
        sticky = holder.st_mode & stat.S_ISVTX  # others cannot replace root's link there
        if holder.st_uid != 0 or (holder.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                                  and not sticky):
            return (f"{current} (on the way to {path}) is a symlink in {current.parent}, "
                    "which others can change")
    return None


def fd_problem(fd: int, *, euid: int | None = None) -> str | None:
    """As root, why the open file ``fd`` must not be booted as the crash kernel, or None:
    the check on the file that is then passed on (not on a name someone could re-point)."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid != 0:
        return f"owned by uid {info.st_uid}, not root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"group- or world-writable (mode {stat.S_IMODE(info.st_mode):04o})"
    return None
