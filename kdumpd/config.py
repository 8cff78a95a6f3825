"""Configuration: TOML at /etc/kdumpd/kdumpd.toml, validated into frozen dataclasses.

A missing file means defaults. Every problem is a :class:`ConfigError` naming the key
(``reload.timeout_s``) and what was expected, so the CLI can print one line and exit 78.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Union

from kdumpd.smallfile import NotRegularFile, Refused, read_regular
from kdumpd.udev_value import unsafe_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

DEFAULT_PATH = Path("/etc/kdumpd/kdumpd.toml")

EVENT_SOURCES = ("auto", "udev", "kernel")
BACKENDS = ("auto", "kexec", "kdumpctl", "kdump-config", "fake")
LOAD_MODES = ("auto", "file", "hotplug", "plain")
RULE_STATES = ("runtime", "present", "absent", "ignore")
MAX_TIMEOUT_S = 300


class ConfigError(Exception):
    """A configuration value is missing, unknown, mistyped or out of range.

    ``str(error)`` is one line that names the file (when known) and the key, and how many
    more problems the file has (``more``: each of them; `kdumpd config check` lists all).
    """

    def __init__(self, key: str, problem: str, path: Path | None = None,
                 more: tuple[ConfigError, ...] = ()) -> None:
        self.key = key
        self.problem = problem
        self.path = path
        self.more = more
        where = f"{path}: " if path else ""
        what = f"{key}: " if key else ""
        also = (f" (and {len(more)} more problem(s): `kdumpd config check` lists them)"
                if more else "")
        super().__init__(f"{where}{what}{problem}{also}")

    def each(self) -> list[ConfigError]:
        """This problem and every other one found with it, each alone (one line)."""
        return [ConfigError(self.key, self.problem, self.path),
                *(ConfigError(e.key, e.problem, self.path or e.path) for e in self.more)]


@dataclass(frozen=True)
class SysfsConfig:
    root: Path = Path("/")


@dataclass(frozen=True)
class EventsConfig:
    source: str = "auto"
    quiet_ms: int = 50
    max_delay_ms: int = 3000
    receive_buffer_bytes: int = 128 * 1024 * 1024
    # Where the kernel's messages are read: "journal" (this boot's, _TRANSPORT=kernel), or
    # the absolute path of a file of kernel messages, one per line, followed as it grows
    # (lines already there are this boot's earlier ones): demos, tests, fake roots.
    kernel_log: str = "journal"


@dataclass(frozen=True)
class FakeConfig:
    log: Path = Path("/run/kdumpd/fake-kexec.log")
    delay_ms: int = 0
    fail: int = 0
    hotplug_after_load: bool = False


@dataclass(frozen=True)
class ReloadConfig:
    backend: str = "auto"
    kernel: str = ""
    initrd: str = ""
    append: str = ""
    load: str = "auto"
    timeout_s: int = 120
    retries: int = 3
    # On x86 with ACPI memory slots, kdumpd's own load adds acpi_no_memhotplug and drops
    # the first kernel's memory-hotplug options (backends/distro/hazard.py).
    growth_safe: bool = True
    # Read the loaded crash image's header back through /proc/kcore (x86_64, ppc64le) and decide
    # from it where it can be read (loaded_header.py); false: crash_hotplug and the
    # hardware fingerprint alone, as before.
    verify_header: bool = True
    fake: FakeConfig = field(default_factory=FakeConfig)


@dataclass(frozen=True)
class RuleConfig:
    state: str = "runtime"
    path: str = "auto"
    root: Path = Path("/")
    handover: Path = Path("/run/kdumpd/handles-reload")


@dataclass(frozen=True)
class StateConfig:
    dir: Path = Path("/var/lib/kdumpd")
    control: Path = Path("/run/kdumpd/control")  # `kdumpd reload` asks the daemon here


@dataclass(frozen=True)
class MetricsConfig:
    # The node exporter's textfile directory for kdumpd.prom: "auto" (the distribution's,
    # when it exists), a directory, or "" (off). See metrics.py.
    textfile_dir: str = "auto"


@dataclass(frozen=True)
class Config:
    sysfs: SysfsConfig = field(default_factory=SysfsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    reload: ReloadConfig = field(default_factory=ReloadConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


Check = Callable[[Any], Union[str, None]]


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return "expected one of " + ", ".join(f'"{c}"' for c in choices)

    return check


def _between(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if low <= value <= high:
            return None
        return f"expected an integer from {low} to {high}"

    return check


def _absolute(value: Any) -> str | None:
    return None if Path(value).is_absolute() else "expected an absolute path"


def _absolute_or_empty(value: Any) -> str | None:
    return None if value == "" else _absolute(value)


def _udev_safe(value: Any) -> str | None:
    """The hand-over path goes inside a quoted udev value: TEST=="<handover>"."""
    problem = unsafe_value(str(value))
    return f"{problem} (it is used in a udev rule)" if problem else None


def _no_nul(value: Any) -> str | None:
    return "must not contain NUL characters" if "\0" in value else None


# key -> extra check beyond the type; types come from the dataclasses themselves.
_CHECKS: dict[str, Check] = {
    "sysfs.root": _absolute,
    "state.dir": _absolute,
    "state.control": _absolute,
    "events.source": _one_of(EVENT_SOURCES),
    "events.quiet_ms": _between(0, 600_000),
    "events.max_delay_ms": _between(1, 3_600_000),
    "events.receive_buffer_bytes": _between(4096, 1024**3),
    "events.kernel_log": lambda v: None if v == "journal" else _absolute(v),
    "reload.backend": _one_of(BACKENDS),
    "reload.kernel": _absolute_or_empty,
    "reload.initrd": _absolute_or_empty,
    "reload.append": _no_nul,
    "reload.load": _one_of(LOAD_MODES),
    # Bounded so that the unit's TimeoutStopSec covers what a stop may wait for: the
    # attempt in flight and one last restore attempt (see stop_wait_s in app.py).
    "reload.timeout_s": _between(1, MAX_TIMEOUT_S),
    "reload.retries": _between(0, 100),
    "reload.fake.log": _absolute,
    "reload.fake.delay_ms": _between(0, 600_000),
    "reload.fake.fail": _between(0, 1_000_000),
    "rule.state": _one_of(RULE_STATES),
    "rule.path": lambda v: None if v == "auto" else _absolute(v),
    "rule.root": _absolute,
    "metrics.textfile_dir": lambda v: None if v in ("", "auto") else _absolute(v),
    "rule.handover": lambda v: _absolute(v) or _udev_safe(v),
}

_TYPE_NAMES = {int: "an integer", str: "a string", bool: "a boolean", Path: "a path string"}


def _convert(key: str, expected: Any, value: Any) -> Any:
    # bool is a subclass of int: "quiet_ms = true" must not pass as 1.
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(key, f"expected an integer, got {_describe(value)}")
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(key, f"expected a boolean, got {_describe(value)}")
    if expected in (str, Path):
        if not isinstance(value, str):
            raise ConfigError(key, f"expected {_TYPE_NAMES[expected]}, got {_describe(value)}")
        if "\0" in value:
            raise ConfigError(key, "must not contain NUL characters")
    check = _CHECKS.get(key)
    problem = check(value) if check else None
    if problem:
        raise ConfigError(key, f"{problem}, got {value!r}")
    return Path(value) if expected is Path else value


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return kinds.get(type(value), type(value).__name__)


def _key_name(prefix: str, key: str) -> str:
    """A dotted key as TOML would write it: bare where possible, else quoted."""
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return f"{prefix}{key}" if bare else f"{prefix}{json.dumps(key)}"


def _build(cls: Any, table: Mapping[str, Any], prefix: str,
           problems: list[ConfigError]) -> Any:
    """The settings of ``table``; every problem is appended to ``problems`` (its key then
    keeps its default) so that all of them can be said at once."""
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            problems.append(ConfigError(
                _key_name(prefix, key), f"unknown key (known: {', '.join(sorted(known))})"
            ))
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in table:
            continue
        key = f"{prefix}{name}"
        value = table[name]
        default = f.default_factory() if callable(f.default_factory) else f.default
        try:
            if is_dataclass(default):
                if not isinstance(value, dict):
                    raise ConfigError(key, f"expected a table, got {_describe(value)}")
                values[name] = _build(type(default), value, f"{key}.", problems)
            else:
                expected = Path if isinstance(default, Path) else type(default)
                values[name] = _convert(key, expected, value)
        except ConfigError as error:
            problems.append(error)
    return cls(**values)


def parse(text: str, path: Path | None = None) -> Config:
    """Parse and validate TOML text. Raises :class:`ConfigError`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("", f"not valid TOML: {error}", path) from None
    except RecursionError:
        raise ConfigError("", "not valid TOML: nested too deeply", path) from None
    problems: list[ConfigError] = []
    config: Config = _build(Config, document, "", problems)
    if config.events.quiet_ms > config.events.max_delay_ms:
        problems.append(ConfigError(
            "events.quiet_ms",
            f"must not exceed events.max_delay_ms ({config.events.max_delay_ms}), "
            f"got {config.events.quiet_ms}",
        ))
    if problems:
        first = problems[0]
        raise ConfigError(first.key, first.problem, path, more=tuple(problems[1:]))
    return config


MAX_BYTES = 1024 * 1024  # a configuration is a few hundred bytes; refuse what is not one


def load(path: Path = DEFAULT_PATH, *, must_exist: bool = False,
         vet: Callable[[int], str | None] | None = None) -> Config:
    """Read the config file; a missing file gives the defaults unless ``must_exist``.

    Never blocks and never reads without bound: a FIFO, a device or a directory is
    refused before reading, and so is a file over MAX_BYTES. ``vet(fd)`` checks the
    opened file (ownership, mode) before it is read.
    Raises :class:`ConfigError` for unreadable, refused or invalid files.
    """
    try:
        raw = read_regular(path, MAX_BYTES + 1, vet)
    except FileNotFoundError:
        if must_exist:
            raise ConfigError("", "no such file", path) from None
        return Config()
    except NotRegularFile:
        raise ConfigError("", "not a regular file", path) from None
    except Refused as error:
        raise ConfigError("", f"config file is {error.strerror}: refusing it", path) from None
    except OSError as error:
        raise ConfigError("", f"cannot read: {error.strerror}", path) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError("", f"larger than {MAX_BYTES} bytes: not a kdumpd configuration", path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError("", f"not UTF-8 at byte {error.start}", path) from None
    return parse(text, path)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every setting as ``{"events.quiet_ms": 250, ...}`` (to say what a reload changed)."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """The settings that differ: ``{key: (old, new)}``."""
    before, after = flatten(old), flatten(new)
    return {key: (before[key], after[key]) for key in before if before[key] != after[key]}
