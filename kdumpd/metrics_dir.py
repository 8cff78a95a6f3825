"""The node exporter's textfile directory, opened so that nobody but root steers where
root writes: component by component from ``/`` without following a symlink, and only when
the directory itself is root's and not group- or world-writable.

Whoever owns the directory could plant a symlink at the name of the next temp file and
make root truncate or create any file (issue 30, item 1). Once the directory is open, its
parents no longer matter: every write is relative to the descriptor. A parent another user
can change (Debian's /var/lib/prometheus is the prometheus user's) can only swap the
directory for one of their own, which is then refused, so it is said but not refused.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path


class DirectoryRefused(Exception):
    """The directory is not one only root controls; ``str()`` is one line naming it."""


@dataclass(frozen=True)
class Opened:
    """An open directory (``fd``, to be closed by the caller) and who owns it."""

    fd: int
    owner_uid: int
    mode: int  # permission bits
    note: str  # "" or the first parent another user can change


def user_name(uid: int) -> str:
    """``root``, ``uid 1000 (alice)``, or ``uid 1000`` when the name is unknown."""
    if uid == 0:
        return "root"
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def open_directory(path: Path, *, owner: int = 0) -> Opened:
    """Open the absolute directory ``path`` without following links and vet it: it must be
    owned by ``owner`` (root; tests pass their own uid) and not writable by group or others.

    Raises DirectoryRefused (a symlink or a non-directory on the way, a ``..``, the wrong
    owner or mode) or OSError (a component missing or unreadable).
    """
    if not path.is_absolute() or ".." in path.parts:
        raise DirectoryRefused(f"{path}: not an absolute path without '..'")
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    note = ""
    try:
        here = Path("/")
        for part in path.parts[1:]:
            note = note or _changeable(fd, here)
            here = here / part
            child = _open_child(fd, part, here, path)
            os.close(fd)
            fd = child
        info = os.fstat(fd)
        if info.st_uid != owner:
            raise DirectoryRefused(
                f"{path} is owned by {user_name(info.st_uid)}, not {user_name(owner)}: its "
                "owner could make kdumpd write through their links; refusing it")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise DirectoryRefused(f"{path} is group- or world-writable (mode "
                                   f"{stat.S_IMODE(info.st_mode):04o}); refusing it")
    except BaseException:
        os.close(fd)
        raise
    return Opened(fd, info.st_uid, stat.S_IMODE(info.st_mode), note)


def _open_child(parent: int, name: str, here: Path, path: Path) -> int:
    """Open ``name`` under ``parent`` as a directory, never through a symlink."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=parent)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        what = ("a symlink" if _is_symlink(parent, name) else "not a directory")
        where = "" if here == path else f" (on the way to {path})"
        raise DirectoryRefused(f"{here}{where} is {what}; kdumpd follows no link to its "
                               "metrics directory: name the real directory") from None


def _is_symlink(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _changeable(fd: int, here: Path) -> str:
    """Why someone other than root can rename entries of the open directory, or ""."""
    info = os.fstat(fd)
    sticky = info.st_mode & stat.S_ISVTX
    if info.st_uid != 0:
        return f"its parent {here} is {user_name(info.st_uid)}'s (reached without links)"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        return (f"its parent {here} is group- or world-writable "
                f"(mode {stat.S_IMODE(info.st_mode):04o}; reached without links)")
    return ""
