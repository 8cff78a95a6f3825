"""Finding the distribution's kdump udev rules file under an injected root.

Known files: Fedora/RHEL ``98-kexec.rules``, Debian/Ubuntu ``50-kdump-tools.rules``,
SUSE ``70-kdump.rules``, looked up in ``/etc/udev/rules.d`` and the vendor directories
``/usr/lib/udev/rules.d`` and ``/lib/udev/rules.d``, all under ``root`` (tests pass a
``tmp_path``). A vendor file is never the file kdumpd writes: the target is the file of the
same name in ``/etc/udev/rules.d``, which overrides it (udev reads only one of the two).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KNOWN: tuple[tuple[str, str], ...] = (
    ("98-kexec.rules", "Fedora/RHEL kdump-utils"),
    ("50-kdump-tools.rules", "Debian/Ubuntu kdump-tools"),
    ("70-kdump.rules", "SUSE kdump"),
)
ETC_DIR = "etc/udev/rules.d"
VENDOR_DIRS = ("usr/lib/udev/rules.d", "lib/udev/rules.d")


class DiscoverError(Exception):
    """An explicitly given rules file cannot be used; ``str()`` is one line."""


@dataclass(frozen=True)
class Target:
    """A rules file to manage.

    ``path`` is the file kdumpd reads and writes (it may not exist yet: an override to
    create); ``vendor`` the packaged file it overrides, when there is one; ``shown`` the path
    as the admin knows it (without the root prefix).
    """

    path: Path
    vendor: Path | None
    shown: str
    vendor_shown: str | None = None

    @property
    def masked(self) -> bool:
        """The admin masked the rules with a symlink to /dev/null."""
        try:
            return self.path.is_symlink() and os.readlink(self.path) == "/dev/null"
        except OSError:
            return False


def _inside(root: Path, path: Path) -> str:
    """``path`` as seen from inside ``root`` (``/etc/udev/...``)."""
    try:
        return "/" + str(path.relative_to(root)).lstrip("/") if root != Path("/") else str(path)
    except ValueError:
        return str(path)


def _vendor(root: Path, name: str) -> Path | None:
    for directory in VENDOR_DIRS:
        candidate = root / directory / name
        if candidate.is_file():
            return candidate
    return None


def _target(root: Path, name: str) -> Target:
    path = root / ETC_DIR / name
    vendor = _vendor(root, name)
    return Target(path, vendor, _inside(root, path), _inside(root, vendor) if vendor else None)


def discover(root: Path) -> list[Target]:
    """The known kdump rules files present under ``root`` (none: an empty list)."""
    found: list[Target] = []
    for name, _distro in KNOWN:
        target = _target(root, name)
        if target.vendor is not None or os.path.lexists(target.path):
            found.append(target)
    return found


def explicit(root: Path, given: str) -> Target:
    """The target for a path the admin named (inside ``root``). Raises :class:`DiscoverError`.

    A path in a vendor directory becomes its override in ``/etc/udev/rules.d``.
    """
    if not given.startswith("/"):
        raise DiscoverError(f"{given}: expected an absolute path")
    if "\0" in given:
        raise DiscoverError("the path must not contain NUL characters")
    # udev reads only *.rules files; anything else named here is a typo that would put
    # a udev block at the top of an unrelated file as root.
    if not given.endswith(".rules"):
        raise DiscoverError(f"{given}: not a udev rules file (the name must end in .rules)")
    if ".." in Path(given).parts:
        raise DiscoverError(f"{given}: must not contain '..'")
    full = root / given.lstrip("/")
    parent = full.parent
    vendor_dirs = {root / d for d in VENDOR_DIRS}
    if parent in vendor_dirs:
        if not full.is_file():
            raise DiscoverError(f"{given}: no such file")
        override = root / ETC_DIR / full.name
        return Target(override, full, _inside(root, override), given)
    if parent == root / ETC_DIR:
        target = _target(root, full.name)
        if target.vendor is None and not os.path.lexists(full):
            raise DiscoverError(f"{given}: no such file (and no vendor file of that name)")
        return target
    if not os.path.lexists(full):
        raise DiscoverError(f"{given}: no such file")
    if full.is_dir():
        raise DiscoverError(f"{given}: is a directory")
    return Target(full, None, given)


def looked_for(root: Path) -> str:
    """Where :func:`discover` looked, for the "nothing found" message."""
    names = ", ".join(name for name, _ in KNOWN)
    dirs = ", ".join("/" + d for d in (ETC_DIR, *VENDOR_DIRS))
    where = f" under {root}" if root != Path("/") else ""
    return f"{names} in {dirs}{where}"
