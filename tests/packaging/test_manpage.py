"""kdumpd(8) is generated from kdumpd.cli.build_parser(): everything the parser defines is
in it, and groff renders it without a warning."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
from types import ModuleType

import pytest

from kdumpd import __version__
from kdumpd.cli import EXIT_STATUS_HELP, build_parser

from .helpers import REPO, need_tool


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_manpage", REPO / "packaging" / "gen-manpage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def page(generator: ModuleType) -> str:
    text: str = generator.render()
    return text


def roff_name(text: str) -> str:
    return text.replace("-", "\\-")


def walk(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
         ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(words, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(walk(sub, (*words, name)))
    return found


def test_every_command_and_option_is_documented(page: str) -> None:
    for words, parser in walk(build_parser()):
        if words and not any(isinstance(a, argparse._SubParsersAction)
                             for a in parser._actions):
            assert '.SS "' + roff_name(" ".join(("kdumpd", *words))) + '"' in page
        for action in parser._actions:
            for option in action.option_strings:
                assert "\\fB" + roff_name(option) + "\\fR" in page, (words, option)


def test_title_exit_statuses_and_config(page: str) -> None:
    assert f'"kdumpd {__version__}"' in page.splitlines()[1]
    for line in EXIT_STATUS_HELP.splitlines()[1:]:
        code = line.split()[0]
        assert f".TP\n\\fB{code}\\fR\n" in page
    assert 'handover = "/run/kdumpd/handles\\-reload"' in page or \
        'handover = "/run/kdumpd/handles-reload"' in page


def test_date_is_reproducible(generator: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert '"1970-01-01"' in generator.render().splitlines()[1]


def test_groff_renders_without_warnings(page: str) -> None:
    need_tool("groff", "groff-base")
    result = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8"], input=page,
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, "")


def test_signals_environment_files_json_and_examples(page: str) -> None:
    for section in ("SIGNALS", "ENVIRONMENT", "FILES", "JSON OUTPUT", "EXAMPLES"):
        assert f"\n.SH {section}\n" in page, section
    for needle in ("SIGHUP", "SIGUSR1", "WATCHDOG_USEC", "/run/udev/rules.d/",
                   "/etc/udev/rules.d/", "/var/lib/kdumpd/", "schema_version"):
        assert needle in page, needle


def test_json_output_names_every_key_status_prints(page: str) -> None:
    from kdumpd.hardware import Reservation
    from kdumpd.status import Status
    from kdumpd.sysfs import Value

    blank = Value("0")
    keys = Status(blank, Reservation(False, None), blank, {"cpu": blank, "memory": blank},
                  "x", "y").as_dict()
    section = page.split("\n.SH JSON OUTPUT\n")[1].split("\n.SH ", maxsplit=1)[0]
    assert [key for key in keys if key not in section] == []


def test_the_config_page_names_every_key_its_type_default_and_what_it_changes(
    generator: ModuleType,
) -> None:
    from kdumpd import config as configmod

    page = generator.render_toml()
    _, described = generator.described_keys(generator.SHIPPED_CONFIG.read_text())
    for key, value in generator.config_keys(configmod.Config()):
        name = key.rsplit(".", 1)[1]
        entry = f"\\fB{name}\\fR ("
        assert entry in page, key
        assert described[key], f"{key} has no comment in packaging/kdumpd.toml"
        assert generator.roff(generator.toml_value(value)) in page, key
    assert ".TH KDUMPD.TOML 5" in page and "\\fBkdumpd\\fR(8)" in page


def test_the_config_page_renders_without_warnings(generator: ModuleType) -> None:
    need_tool("groff", "groff-base")
    result = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8"],
                            input=generator.render_toml(), capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, "")


def config_page_entries(page: str) -> tuple[list[str], dict[str, str]]:
    """The table headings (.SH/.SS) of kdumpd.toml(5), and each key's paragraph by
    ``table.key``."""
    headings: list[str] = []
    entries: dict[str, str] = {}
    lines = page.splitlines()
    for i, line in enumerate(lines):
        heading = re.fullmatch(r"\.S[HS] \[(.*)\]", line)
        if heading:
            headings.append(f"[{heading.group(1)}]")
        elif line == ".TP":
            name = re.match(r"\\fB([a-z_]+)\\fR \(", lines[i + 1])
            assert name and headings, lines[i + 1]
            entries[f"{headings[-1][1:-1]}.{name.group(1)}"] = lines[i + 2]
    return headings, entries


def test_the_config_page_writes_table_names_as_the_file_must(generator: ModuleType) -> None:
    from kdumpd import config as configmod

    headings, _ = config_page_entries(generator.render_toml())

    # kdumpd refuses [SYSFS] (exit 78): the page shows what a user can copy.
    tables = [f"[{name}]" for name, _ in generator.config_tables(configmod.Config())]
    assert headings == tables
    assert all(heading == heading.lower() for heading in headings)


def test_every_config_key_has_a_description_of_its_own(generator: ModuleType) -> None:
    from kdumpd import config as configmod

    _, entries = config_page_entries(generator.render_toml())
    keys = [key for key, _ in generator.config_keys(configmod.Config())]

    assert sorted(entries) == sorted(keys)
    texts = list(entries.values())
    assert len(set(texts)) == len(texts), "two keys share one paragraph"
    assert "retries" not in entries["reload.timeout_s"]
    assert "tried again" in entries["reload.retries"]
    assert "kernel" in entries["reload.kernel"]
    assert "initrd" in entries["reload.initrd"]
    assert "command line" in entries["reload.append"]


def test_the_config_page_has_no_markdown_backticks(generator: ModuleType) -> None:
    page = generator.render_toml()

    assert "`" not in page
    assert "\\fBkdumpd status\\fR" in page  # `kdumpd status` in the shipped comments
