"""The udev line parser and the strict check of the lines kdumpd writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpd.rules import syntax
from kdumpd.rules.syntax import RuleSyntaxError


def test_tokens_of_a_rule_line() -> None:
    items = syntax.tokenize('SUBSYSTEM=="cpu", ATTRS{crash_hotplug}=="1", GOTO="end"')
    assert [(i.key, i.attr, i.op, i.value) for i in items] == [
        ("SUBSYSTEM", None, "==", "cpu"), ("ATTRS", "crash_hotplug", "==", "1"),
        ("GOTO", None, "=", "end")]


def test_escaped_quotes_and_e_prefix() -> None:
    items = syntax.tokenize(r'ENV{X}=="a\"b", RUN+=e"/bin/echo \n"')
    assert items[0].value == r'a\"b' and items[1].key == "RUN"


@pytest.mark.parametrize(("line", "problem"), [
    ('SUBSYSTEM="cpu", GOTO="x"', "SUBSYSTEM only matches"),
    ('TEST="/run/x", GOTO="x"', "TEST only matches"),
    ('GOTO=="x"', "GOTO cannot be matched"),
    ('FOO=="x", GOTO="x"', "unknown key FOO"),
    ('ATTRS=="1", GOTO="x"', "ATTRS needs an {attribute}"),
    ('SUBSYSTEM{x}=="cpu", GOTO="x"', "SUBSYSTEM takes no {attribute}"),
    ('SUBSYSTEM=="cpu" GOTO="x"', "expected ','"),
    ('SUBSYSTEM=="cpu, GOTO="x"', "expected ',' at column 24"),
    ('SUBSYSTEM==cpu, GOTO="x"', "cannot parse at column 1"),
    ('SUBSYSTEM=="cpu"', "matches only"),
    ('GOTO=""', "non-empty"),
])
def test_strict_check_names_the_problem(line: str, problem: str) -> None:
    with pytest.raises(RuleSyntaxError, match=problem):
        syntax.check_rule_line(line)


@pytest.mark.parametrize("line", [
    'SUBSYSTEM=="cpu|memory", TEST=="/run/kdumpd/handles-reload", GOTO="kdump_end"',
    'LABEL="kdumpd_end"',
    'PROGRAM="/bin/cat /sys/kernel/kexec_crash_loaded", RESULT!="0", RUN+="/bin/true"',
    'SUBSYSTEM=="cpu", ACTION=="add", RUN+="/bin/true",',
    # Debian's kdump-tools reloads with PROGRAM= alone; IMPORT{program} runs one too.
    'SUBSYSTEM=="memory", ACTION=="online", PROGRAM="/usr/sbin/kdump-config try-reload"',
    'SUBSYSTEM=="cpu", IMPORT{program}="/bin/true"',
])
def test_valid_lines_pass(line: str) -> None:
    syntax.check_rule_line(line)


def test_goto_needs_a_later_label() -> None:
    syntax.check_lines('GOTO="end"\nLABEL="end"\n')
    with pytest.raises(RuleSyntaxError, match='line 2: GOTO="end" has no LABEL after it'):
        syntax.check_lines('LABEL="end"\nGOTO="end"\n')


def test_only_the_given_lines_are_checked_strictly() -> None:
    text = 'garbage ===\nSUBSYSTEM=="cpu", GOTO="end"\nLABEL="end"\n'
    syntax.check_lines(text, {2, 3})
    with pytest.raises(RuleSyntaxError, match="line 1: cannot parse"):
        syntax.check_lines(text)


def test_continuation_lines_are_joined_and_round_trip() -> None:
    text = 'SUBSYSTEM=="cpu", \\\n  GOTO="end"\n# c \\\nLABEL="end"'
    lines = syntax.logical_lines(syntax.physical_lines(text))
    assert [ln.number for ln in lines] == [1, 3, 4]
    assert lines[0].content == 'SUBSYSTEM=="cpu",   GOTO="end"'
    assert "".join(ln.raw for ln in lines) == text
    syntax.check_lines(text)


def test_physical_lines_split_on_newline_only() -> None:
    text = "a\x0bb\x0c\u2028c\r\nd"
    assert "".join(syntax.physical_lines(text)) == text
    assert syntax.physical_lines(text) == ["a\x0bb\x0c\u2028c\r\n", "d"]


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parent / "fixtures/real")
                                        .glob("*") if p.suffix != ".md"))
def test_every_real_distribution_file_passes_the_own_check(name: str) -> None:
    syntax.check_lines((Path(__file__).parent / "fixtures/real" / name).read_text())
