"""The watchdog drivers kdumpctl names on the dump kernel's command line, resolved from
the kernel's modules.alias as ``modprobe -R`` would."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from pathlib import Path

from kdumpd.backends.distro.files import SMALL_FILE_LIMIT
from kdumpd.backends.distro.image import DistroError
from kdumpd.smallfile import read_regular

ALIAS_FILE_LIMIT = 16 << 20  # modules.alias: 1.3 MiB on Fedora 42


def watchdog_drivers(root: Path, version: str) -> list[str]:
    """kdumpctl's get_watchdog_drvs: the modules ``modprobe --set-version <version> -R``
    names for each /sys/class/watchdog/*/device/modalias, each once, in order.

    Like modprobe, this matches the alias against the shell patterns of that kernel's
    modules.alias and, only when none matches, the aliases of its built-in drivers
    (modules.builtin.modinfo), with "-" and "_" alike. A watchdog without a device
    (softdog) has no modalias and adds nothing, as in kdumpctl.
    """
    aliases = []
    for modalias in sorted((root / "sys/class/watchdog").glob("*/device/modalias")):
        try:
            aliases.append(read_regular(modalias, SMALL_FILE_LIMIT).decode("ascii", "replace"))
        except OSError:
            continue
    drivers: list[str] = []
    if not aliases:
        return drivers
    directory = _modules_dir(root, version)
    modules, builtin = _module_aliases(directory), None
    for alias in (_normalize(a.strip()) for a in aliases):
        found = _matches(alias, modules)
        if not found:
            builtin = _builtin_aliases(directory) if builtin is None else builtin
            found = _matches(alias, builtin)
        drivers.extend(m for m in dict.fromkeys(found) if m not in drivers)
    return drivers


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


def _modules_dir(root: Path, version: str) -> Path:
    usr = root / "usr/lib/modules" / version
    return usr if usr.is_dir() else root / "lib/modules" / version


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
