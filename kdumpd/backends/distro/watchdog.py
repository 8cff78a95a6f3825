"""The watchdog drivers kdumpctl names on the dump kernel's command line, resolved from
the kernel's modules.alias as ``modprobe -R`` would."""

from __future__ import annotations

import fnmatch
import re
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


def _matches(alias: str, table: AliasTable) -> list[str]:
    return [module for prefix, pattern, module in table
            if alias.startswith(prefix) and fnmatch.fnmatchcase(alias, pattern)]


def _modules_dir(root: Path, version: str) -> Path:
    usr = root / "usr/lib/modules" / version
    return usr if usr.is_dir() else root / "lib/modules" / version


def _module_aliases(directory: Path) -> AliasTable:
    """The ``alias <pattern> <module>`` lines of modules.alias."""
    try:
        text = _read_whole(directory / "modules.alias").decode("utf-8", "replace")
    except OSError:
        return []
    words = (line.split() for line in text.splitlines())
    return [_alias_entry(w[1], w[2]) for w in words if len(w) == 3 and w[0] == "alias"]


def _builtin_aliases(directory: Path) -> AliasTable:
    """The ``<module>.alias=<pattern>`` entries of modules.builtin.modinfo (NUL-separated);
    depmod writes the built-in aliases only in binary form otherwise."""
    try:
        data = _read_whole(directory / "modules.builtin.modinfo")
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
