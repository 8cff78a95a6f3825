"""The watchdog drivers kdumpctl names on the dump kernel's command line: the module
sysfs says each watchdog's driver is (``device/driver/module``, visible inside the unit's
sandbox), else resolved from the kernel's modules.alias as ``modprobe -R`` would.

The unit's ``ProtectKernelModules=yes`` hides /usr/lib/modules: reading modules.alias
there fails with EACCES. A driver that cannot be derived costs that driver's option (said
in `kdumpd status`), never the whole image."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kdumpd.backends.distro.files import SMALL_FILE_LIMIT
from kdumpd.backends.distro.image import DistroError
from kdumpd.smallfile import read_regular

ALIAS_FILE_LIMIT = 16 << 20  # modules.alias: 1.3 MiB on Fedora 42


@dataclass(frozen=True)
class Watchdogs:
    drivers: list[str]
    unknown: list[str] = field(default_factory=list)  # one line per driver not derived


def watchdog_drivers(root: Path, version: str) -> list[str]:
    """The drivers :func:`find_watchdogs` derives (those it cannot are left out)."""
    return find_watchdogs(root, version).drivers


def find_watchdogs(root: Path, version: str, *,
                   is_dir: Callable[[Path], bool] = Path.is_dir) -> Watchdogs:
    """kdumpctl's get_watchdog_drvs: the module of each /sys/class/watchdog/*/device that
    has a modalias, each once, in order.

    The module is the one sysfs names as the device's driver's (what the running kernel
    bound); without that link, the one ``modprobe --set-version <version> -R`` names for
    the modalias: that kernel's modules.alias shell patterns and, only when none matches,
    the aliases of its built-in drivers (modules.builtin.modinfo), with "-" and "_" alike.
    A watchdog without a device (softdog) has no modalias and adds nothing, as in
    kdumpctl. ``is_dir``: the real check, or a test's.
    """
    drivers: list[str] = []
    unknown: list[str] = []
    modprobe = _Modprobe(root, version, is_dir)
    for modalias in sorted((root / "sys/class/watchdog").glob("*/device/modalias")):
        try:
            alias = read_regular(modalias, SMALL_FILE_LIMIT).decode("ascii", "replace")
        except OSError:
            continue
        found = _bound_module(modalias.parent)
        if not found:
            try:
                found = modprobe.resolve(_normalize(alias.strip()))
            except OSError as error:
                unknown.append(f"{modalias.parent.parent.name}: its driver cannot be derived "
                               f"({error.strerror or error}: {error.filename or 'modules'})")
                continue
        drivers.extend(m for m in dict.fromkeys(found) if m not in drivers)
    return Watchdogs(drivers, unknown)


def _bound_module(device: Path) -> list[str]:
    """The module of the driver bound to ``device``, as sysfs links it; [] when none."""
    try:
        return [os.path.basename(os.readlink(device / "driver" / "module"))]
    except OSError:
        return []


class _Modprobe:
    """``modprobe --set-version <version> -R`` for one kernel: its tables are read on
    first use; the first look at its module directory raises OSError when the unit hides
    it."""

    def __init__(self, root: Path, version: str, is_dir: Callable[[Path], bool]) -> None:
        self._root, self._version, self._is_dir = root, version, is_dir
        self._directory: Path | None = None
        self._modules: AliasTable | None = None
        self._builtin: AliasTable | None = None

    def resolve(self, alias: str) -> list[str]:
        if self._directory is None:
            usr = self._root / "usr/lib/modules" / self._version
            self._directory = usr if self._is_dir(usr) else \
                self._root / "lib/modules" / self._version
        if self._modules is None:
            self._modules = _module_aliases(self._directory)
        found = _matches(alias, self._modules)
        if not found:
            if self._builtin is None:
                self._builtin = _builtin_aliases(self._directory)
            found = _matches(alias, self._builtin)
        return found


AliasTable = list[tuple[str, str, str]]  # (literal prefix, pattern, module), normalised


# A kernel's modules.alias has a few patterns per literal prefix; a file where thousands
# of patterns would each be compiled for one alias is not one (a crafted 12.8 MiB file
# took 143 s per read): refused instead of read for minutes on the event loop.
MAX_CANDIDATES = 4096


def _matches(alias: str, table: AliasTable) -> list[str]:
    candidates = [(pattern, module) for prefix, pattern, module in table
                  if alias.startswith(prefix)]
    if len(candidates) > MAX_CANDIDATES:
        raise DistroError(f"modules.alias: {len(candidates)} patterns could match {alias!r} "
                          f"(more than {MAX_CANDIDATES}): not a kernel's alias table")
    return [module for pattern, module in candidates if fnmatch.fnmatchcase(alias, pattern)]


_TABLES: dict[tuple[Path, int, int], AliasTable] = {}  # parsed once per file version


def _cached(path: Path, parse: Callable[[Path], AliasTable]) -> AliasTable:
    """``parse(path)``, parsed again only when the file's mtime or size changed."""
    try:
        info = path.stat()
    except OSError:
        return parse(path)
    key = (path, info.st_mtime_ns, info.st_size)
    if key not in _TABLES:
        if len(_TABLES) >= 8:
            _TABLES.clear()
        _TABLES[key] = parse(path)
    return _TABLES[key]


def _module_aliases(directory: Path) -> AliasTable:
    return _cached(directory / "modules.alias", _parse_module_aliases)


def _builtin_aliases(directory: Path) -> AliasTable:
    return _cached(directory / "modules.builtin.modinfo", _parse_builtin_aliases)


def _parse_module_aliases(path: Path) -> AliasTable:
    """The ``alias <pattern> <module>`` lines of modules.alias."""
    try:
        text = _read_whole(path).decode("utf-8", "replace")
    except OSError:
        return []
    words = (line.split() for line in text.splitlines())
    return [_alias_entry(w[1], w[2]) for w in words if len(w) == 3 and w[0] == "alias"]


def _parse_builtin_aliases(path: Path) -> AliasTable:
    """The ``<module>.alias=<pattern>`` entries of modules.builtin.modinfo (NUL-separated);
    depmod writes the built-in aliases only in binary form otherwise."""
    try:
        data = _read_whole(path)
    except OSError:
        return []
    table = []
    for entry in data.decode("utf-8", "replace").split("\0"):
        module, _, field = entry.partition(".")
        key, equals, pattern = field.partition("=")
        if key == "alias" and equals and pattern:
            table.append(_alias_entry(pattern, module))
    return table


def _read_whole(path: Path) -> bytes:
    data = read_regular(path, ALIAS_FILE_LIMIT + 1)
    if len(data) > ALIAS_FILE_LIMIT:  # a cut last line could name the wrong module
        raise DistroError(f"{path}: larger than {ALIAS_FILE_LIMIT >> 20} MiB")
    return data


def _alias_entry(pattern: str, module: str) -> tuple[str, str, str]:
    pattern = _normalize(pattern)
    return re.split(r"[*?\[]", pattern, maxsplit=1)[0], pattern, module


def _normalize(alias: str) -> str:
    """kmod's alias_normalize: "-" is "_" outside bracket expressions."""
    if "[" not in alias:
        return alias.replace("-", "_")
    out, in_brackets = [], False
    for char in alias:
        if char == "[":
            in_brackets = True
        elif char == "]":
            in_brackets = False
        out.append("_" if char == "-" and not in_brackets else char)
    return "".join(out)
