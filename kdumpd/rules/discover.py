"""Finding the distribution's kdump udev rules file under an injected root.

Known files: Fedora/RHEL ``98-kexec.rules``, Debian/Ubuntu ``50-kdump-tools.rules``,
SUSE ``70-kdump.rules``, looked up in ``/etc/udev/rules.d`` and the vendor directories
``/usr/lib/udev/rules.d`` and ``/lib/udev/rules.d`` (and, for openSUSE kdump >= 0.9.1,
``/usr/lib/kdump``, from which its ``load.sh`` copies the file to ``/run/udev/rules.d`` at
every load), all under ``root`` (tests pass a ``tmp_path``).

A vendor file is never the file kdumpd writes. udev reads one file per name, the first of
``/etc/udev/rules.d``, ``/run/udev/rules.d``, then the vendor directories, so kdumpd
writes an override of the same name in one of two layers:

- ``persistent`` (``kdumpd rule install``, ``[rule] state = "present"``):
  ``/etc/udev/rules.d``, kept across reboots;
- ``runtime`` (``kdumpd run`` with ``[rule] state = "runtime"``, the default):
  ``/run/udev/rules.d``, gone at the next boot and removed when kdumpd stops; an admin's
  file of that name in ``/etc`` shadows it (:attr:`Target.shadowed`), and SUSE's own
  runtime copy there is edited in place.
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
RUN_DIR = "run/udev/rules.d"
VENDOR_DIRS = ("usr/lib/udev/rules.d", "lib/udev/rules.d")
# Where a package keeps a rules file that it installs into /run itself (openSUSE kdump).
EXTRA_VENDOR: dict[str, tuple[str, ...]] = {"70-kdump.rules": ("usr/lib/kdump",)}
LAYERS = {"persistent": ETC_DIR, "runtime": RUN_DIR}


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
    shadowed: Path | None = None  # runtime layer: the /etc file udev reads instead
    shadowed_shown: str | None = None
    layer: str = "persistent"

    @property
    def copied_at_load(self) -> bool:
        """The vendor file is one the distribution copies into /run itself when it loads
        (openSUSE kdump >= 0.9.1): the runtime layer edits that copy, never creates it."""
        return self.vendor is not None and self.vendor.parent.name != "rules.d"

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
    for directory in (*VENDOR_DIRS, *EXTRA_VENDOR.get(name, ())):
        candidate: Path = root / directory / name
        if candidate.is_file():
            return candidate
    return None


def _target(root: Path, name: str, layer: str = "persistent") -> Target:
    path = root / LAYERS[layer] / name
    vendor = _vendor(root, name)
    shadowed = root / ETC_DIR / name if layer == "runtime" else None
    if shadowed is not None and not os.path.lexists(shadowed):
        shadowed = None
    return Target(path, vendor, _inside(root, path), _inside(root, vendor) if vendor else None,
                  shadowed, _inside(root, shadowed) if shadowed else None, layer)


def discover(root: Path, layer: str = "persistent") -> list[Target]:
    """The known kdump rules files present under ``root`` (none: an empty list)."""
    found: list[Target] = []
    for name, _distro in KNOWN:
        target = _target(root, name, layer)
        if (target.vendor is not None or target.shadowed is not None
                or os.path.lexists(target.path)):
            found.append(target)
    return found


def explicit(root: Path, given: str, layer: str = "persistent") -> Target:
    """The target for a path the admin named (inside ``root``). Raises :class:`DiscoverError`.

    A path in a vendor directory (or ``/usr/lib/kdump``) becomes its override in the
    layer's directory; a path in ``/etc`` or ``/run/udev/rules.d`` is that layer's file.
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
    vendor_dirs.update(root / d for d in EXTRA_VENDOR.get(full.name, ()))
    if parent in vendor_dirs:
        if not full.is_file():
            raise DiscoverError(f"{given}: no such file")
        target = _target(root, full.name, layer)
        return Target(target.path, full, target.shown, given, target.shadowed,
                      target.shadowed_shown, layer)
    if parent in (root / ETC_DIR, root / RUN_DIR):
        target = _target(root, full.name, "persistent" if parent == root / ETC_DIR
                         else "runtime")
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
    extra = {d for dirs in EXTRA_VENDOR.values() for d in dirs}
    dirs = ", ".join("/" + d for d in (ETC_DIR, RUN_DIR, *VENDOR_DIRS, *sorted(extra)))
    where = f" under {root}" if root != Path("/") else ""
    return f"{names} in {dirs}{where}"


def signature(root: Path) -> tuple[tuple[str, int, int, int] | None, ...]:
    """What changes when any known rules file is written, replaced or removed, in every
    directory udev or a distribution keeps it: ``(inode, size, mtime)`` per candidate."""
    found: list[tuple[str, int, int, int] | None] = []
    for name, _distro in KNOWN:
        dirs = (ETC_DIR, RUN_DIR, *VENDOR_DIRS, *EXTRA_VENDOR.get(name, ()))
        for directory in dirs:
            try:
                st = os.lstat(root / directory / name)
            except OSError:
                found.append(None)
                continue
            found.append((directory, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)
