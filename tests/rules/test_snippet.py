"""The template is one file, rules.d/kdumpd-crash-hotplug.rules, read as package data."""

from __future__ import annotations

from pathlib import Path

import pytest

import kdumpd.rules
from kdumpd.rules import planner, snippet
from kdumpd.rules.snippet import SnippetError

REPO = Path(__file__).resolve().parents[2]


def test_package_data_is_a_symlink_to_the_one_template() -> None:
    data = Path(kdumpd.rules.__file__).parent / "data" / snippet.NAME
    if not data.is_symlink():
        pytest.skip("installed copy, not the source tree")
    assert data.resolve() == (REPO / "rules.d" / snippet.NAME).resolve()


def test_template_has_both_placeholders_and_three_rule_lines() -> None:
    text = snippet.template()
    assert planner.END_LABEL_PLACEHOLDER in text and planner.HANDOVER_PLACEHOLDER in text
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(rules) == 3
    assert all(line.endswith('GOTO="@END_LABEL@"') for line in rules)


def test_the_hand_over_test_comes_before_any_crash_hotplug_read() -> None:
    # Reading crash_hotplug takes the kexec lock; while kdumpd runs udev must not read it.
    rules = [line for line in snippet.template().splitlines()
             if line and not line.startswith("#")]
    assert "TEST==" in rules[0] and all("ATTRS{crash_hotplug}" in line for line in rules[1:])


def test_a_template_without_placeholders_is_a_clear_error() -> None:
    with pytest.raises(SnippetError, match="lacks the placeholder @HANDOVER@"):
        snippet.check('GOTO="@END_LABEL@"\n')
