"""Every outcome of the planner, to the field and the word: what the CLI prints, what the
Ansible module returns and what the daemon logs all come from these Plans."""

from __future__ import annotations

import pytest

from kdumpd.rules import planner
from kdumpd.rules.planner import PlanError, plan

from .conftest import distro_text

FEDORA_OWN = distro_text("fedora")


def present(text: str, template: str, **kwargs: object) -> planner.Plan:
    return plan(text, state="present", snippet=template, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("line", "runs"), [
    ('RUN+="/bin/true"', True),
    ('PROGRAM=="/bin/true"', True),
    ('IMPORT{program}="/bin/true"', True),
    ('IMPORT{file}="/etc/x"', False),
    ('IMPORT{cmdline}="x"', False),
    ('ENV{program}="/bin/true"', False),
    ('SUBSYSTEM=="cpu", GOTO="x"', False),
    ('this is not a udev rule at all', True),  # unreadable: may well run something
])
def test_what_counts_as_running_a_program(line: str, runs: bool) -> None:
    assert planner._runs_program(line) is runs  # noqa: SLF001


def test_a_file_that_runs_nothing_keeps_its_bytes_and_says_why(template: str) -> None:
    text = 'SUBSYSTEM=="cpu", GOTO="end"\nLABEL="end"\n'
    result = present(text, template)
    assert result == planner.Plan(False, text, text, "the file runs no program on any event "
                                  "(no reload to skip): nothing to do")


def test_a_block_left_where_nothing_runs_any_more_is_removed_exactly(template: str) -> None:
    installed = present('RUN+="/bin/true"\n', template).after
    emptied = installed.replace('RUN+="/bin/true"\n', "")
    result = present(emptied, template)
    assert result == planner.Plan(True, emptied, "", "the file runs no program on any event "
                                  "any more: removed the kdumpd managed block")


def test_absent_on_a_file_without_a_block(template: str) -> None:
    result = plan(FEDORA_OWN, state="absent", snippet=template)
    assert result == planner.Plan(False, FEDORA_OWN, FEDORA_OWN,
                                  "no kdumpd managed block: nothing to do")


def test_absent_removes_and_says_so(template: str) -> None:
    installed = present(FEDORA_OWN, template).after
    result = plan(installed, state="absent", snippet=template)
    assert result == planner.Plan(True, installed, FEDORA_OWN, "removed the kdumpd managed block")


def test_a_file_holding_every_line_itself_needs_nothing(template: str) -> None:
    text = ('SUBSYSTEM=="cpu", ATTRS{crash_hotplug}=="1", GOTO="end"\n'
            'SUBSYSTEM=="memory", ATTRS{crash_hotplug}=="1", GOTO="end"\n'
            'SUBSYSTEM=="cpu|memory", TEST=="/run/kdumpd/handles-reload", GOTO="end"\n'
            'RUN+="/bin/true"\nLABEL="end"\n')
    result = present(text, template)
    assert result.changed is False and result.after == text and result.before == text
    assert result.msg == ('the file already holds equivalent lines (GOTO="end") outside a '
                          "managed block: nothing to do")
    assert result.label == "end" and result.managed_label is False
    assert result.block == () and result.written == frozenset()
    assert len(result.covered) == 3


def test_a_block_made_redundant_by_the_files_own_lines_goes(template: str) -> None:
    own = ('SUBSYSTEM=="cpu", ATTRS{crash_hotplug}=="1", GOTO="end"\n'
           'SUBSYSTEM=="memory", ATTRS{crash_hotplug}=="1", GOTO="end"\n'
           'SUBSYSTEM=="cpu|memory", TEST=="/run/kdumpd/handles-reload", GOTO="end"\n'
           'RUN+="/bin/true"\nLABEL="end"\n')
    stale = (f"{planner.BLOCK_BEGIN}\n# an old block\n"
             'SUBSYSTEM=="cpu", TEST=="/run/x", GOTO="end"\n'
             f"{planner.BLOCK_END}\n") + own
    result = present(stale, template)
    assert result.changed is True and result.after == own and result.before == stale
    assert result.msg == ("the file's own lines now cover the snippet: removed the managed "
                          "block")


def test_the_default_handover_is_kdumpds_runtime_file(template: str) -> None:
    assert 'TEST=="/run/kdumpd/handles-reload"' in present(FEDORA_OWN, template).after


@pytest.mark.parametrize("header", ["not a comment", "# two\nlines", "# carriage\rreturn"])
def test_header_lines_must_be_single_comment_lines(header: str, template: str) -> None:
    with pytest.raises(PlanError, match="must be a single comment line"):
        present(FEDORA_OWN, template, header=(header,))


def test_an_unknown_state_names_the_valid_ones(template: str) -> None:
    with pytest.raises(PlanError) as error:
        plan(FEDORA_OWN, state="maybe", snippet=template)
    assert str(error.value) == "state must be one of present, absent, got 'maybe'"


def test_an_inserted_block_reports_its_parts(template: str) -> None:
    text = 'RUN+="/bin/true"\n'  # no end label: kdumpd adds its own
    result = present(text, template)
    assert result.changed is True and result.before == text
    assert result.label == planner.MANAGED_LABEL and result.managed_label is True
    assert result.msg == ('inserted the kdumpd managed block (GOTO="kdumpd_end") and '
                          'LABEL="kdumpd_end" at the end')
    assert result.covered == ()
    lines = result.after.split("\n")
    assert {lines[n - 1] for n in result.written} >= {'LABEL="kdumpd_end"'}
    assert all(lines[n - 1].startswith(("SUBSYSTEM", "LABEL")) for n in result.written)
    assert result.block and all(not line.startswith("# BEGIN") for line in result.block)
