"""packaging/kdumpd.toml, installed as /etc/kdumpd/kdumpd.toml, must never drift from
kdumpd.config: every key is there, commented out, with exactly its built-in default."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from kdumpd import config
from kdumpd.config import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED = Path(__file__).resolve().parents[2] / "packaging" / "kdumpd.toml"
# A commented-out setting or table header: "#key = value" or "#[table]" (prose is "# ...").
SETTING = re.compile(r"^#(?=\[|[A-Za-z_])")


def uncommented(text: str) -> str:
    return "\n".join(SETTING.sub("", line) for line in text.splitlines()) + "\n"


def dotted_keys(table: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in table.items():
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def config_keys(cls: type, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            keys |= config_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.add(f"{prefix}{f.name}")
    return keys


def test_shipped_file_as_is_means_defaults() -> None:
    assert config.parse(SHIPPED.read_text("utf-8"), SHIPPED) == Config()


def test_uncommented_defaults_parse_into_exactly_config() -> None:
    assert config.parse(uncommented(SHIPPED.read_text("utf-8")), SHIPPED) == Config()


def test_every_key_is_listed_once() -> None:
    text = uncommented(SHIPPED.read_text("utf-8"))
    # tomllib rejects duplicate keys and tables, so parsing also proves "once".
    assert dotted_keys(tomllib.loads(text)) == config_keys(Config)


def test_nothing_is_active_in_the_shipped_file() -> None:
    active = [line for line in SHIPPED.read_text("utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    assert active == []


def test_uncommenting_is_meaningful() -> None:
    """The check above would pass vacuously if uncommenting did nothing."""
    changed = uncommented('#[events]\n#quiet_ms = 5\n# prose = "x"\n')
    assert config.parse(changed).events.quiet_ms == 5
