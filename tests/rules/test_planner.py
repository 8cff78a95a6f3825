"""The pure planner on realistic copies of the three distributions' kdump rules."""

from __future__ import annotations

import pytest

from kdumpd.rules import planner, syntax
from kdumpd.rules.planner import PlanError, plan

from .conftest import distro_text

HANDOVER = "/run/kdumpd/handles-reload"
HANDOVER_LINE = f'SUBSYSTEM=="cpu|memory", TEST=="{HANDOVER}", GOTO='


def install(text: str, template: str) -> planner.Plan:
    return plan(text, state="present", snippet=template, handover=HANDOVER)


def remove(text: str, template: str) -> planner.Plan:
    return plan(text, state="absent", snippet=template, handover=HANDOVER)


@pytest.mark.parametrize("distro", ["fedora", "debian", "opensuse"])
def test_install_then_second_install_is_unchanged(distro: str, template: str) -> None:
    first = install(distro_text(distro), template)
    assert first.changed
    second = install(first.after, template)
    assert not second.changed
    assert second.after == first.after
    assert "nothing to do" in second.msg


@pytest.mark.parametrize("distro", ["fedora", "debian", "opensuse"])
def test_remove_returns_the_original_bytes_exactly(distro: str, template: str) -> None:
    original = distro_text(distro)
    removed = remove(install(original, template).after, template)
    assert removed.changed
    assert removed.after == original
    assert not remove(removed.after, template).changed


@pytest.mark.parametrize("distro", ["fedora", "debian", "opensuse"])
def test_block_is_at_the_top_and_every_goto_resolves(distro: str, template: str) -> None:
    after = install(distro_text(distro), template).after
    assert after.startswith(planner.BLOCK_BEGIN + "\n")
    syntax.check_lines(after, set(install(distro_text(distro), template).written))


def test_debian_without_labels_gets_a_managed_end_label(template: str) -> None:
    result = install(distro_text("debian"), template)
    assert result.label == "kdumpd_end" and result.managed_label
    assert result.after.endswith(
        f'{planner.LABEL_BEGIN}\nLABEL="kdumpd_end"\n{planner.LABEL_END}\n')
    assert 'SUBSYSTEM=="cpu", ATTRS{crash_hotplug}=="1", GOTO="kdumpd_end"' in result.after
    assert HANDOVER_LINE + '"kdumpd_end"' in result.after
    assert "LABEL=\"kdumpd_end\" at the end" in result.msg


def test_opensuse_reuses_kdump_end_and_adds_only_the_handover(template: str) -> None:
    result = install(distro_text("opensuse"), template)
    assert result.label == "kdump_end" and not result.managed_label
    assert HANDOVER_LINE + '"kdump_end"' in result.after
    # Its own crash_hotplug lines are equivalent: not repeated in the block.
    assert not any("crash_hotplug" in line for line in result.block if not line.startswith("#"))
    assert len(result.covered) == 2
    assert "LABEL" not in "".join(result.block)


def test_fedora_skip_lines_are_recognised_outside_a_block(template: str) -> None:
    result = install(distro_text("fedora"), template)
    assert result.label == "kdump_reload_end"
    assert [line for line in result.block if syntax.LogicalLine(1, line).is_rule] == [
        HANDOVER_LINE + '"kdump_reload_end"']
    assert "2 snippet line(s) already in the file were left out" in result.msg


def test_file_holding_every_snippet_line_needs_nothing(template: str) -> None:
    text = distro_text("fedora").replace(
        "\nSUBSYSTEM==\"cpu\", ACTION==\"add\"",
        f'\n{HANDOVER_LINE}"kdump_reload_end"\nSUBSYSTEM=="cpu", ACTION=="add"', 1)
    result = install(text, template)
    assert not result.changed and result.after == text
    assert "equivalent lines" in result.msg and "nothing to do" in result.msg


def test_whitespace_and_order_do_not_hide_equivalent_lines(template: str) -> None:
    text = ('ATTRS{crash_hotplug} == "1" ,SUBSYSTEM=="cpu", GOTO="end"\n'
            'SUBSYSTEM=="memory",ATTRS{crash_hotplug}=="1",GOTO="end"\n'
            f'SUBSYSTEM=="cpu|memory", TEST=="{HANDOVER}", GOTO="end"\n'
            'RUN+="/bin/true"\nLABEL="end"\n')
    assert not install(text, template).changed


def test_skip_lines_to_another_label_are_not_equivalent(template: str) -> None:
    text = ('SUBSYSTEM=="cpu", ATTRS{crash_hotplug}=="1", GOTO="elsewhere"\n'
            'LABEL="elsewhere"\nRUN+="/bin/true"\nLABEL="end"\n')
    result = install(text, template)
    assert result.changed and len(result.covered) == 0


def test_changed_template_updates_the_block_in_place(template: str) -> None:
    installed = install(distro_text("debian"), template).after
    newer = template.replace("no reload is needed.", "no reload is needed at all.")
    result = plan(installed, state="present", snippet=newer, handover=HANDOVER)
    assert result.changed and "updated" in result.msg
    assert result.after.count(planner.BLOCK_BEGIN) == 1
    assert "no reload is needed at all." in result.after


def test_changed_handover_path_updates_the_block(template: str) -> None:
    installed = install(distro_text("opensuse"), template).after
    result = plan(installed, state="present", snippet=template, handover="/run/other")
    assert result.changed and 'TEST=="/run/other"' in result.after
    assert HANDOVER not in result.after.split(planner.BLOCK_END)[0]


def test_a_moved_block_goes_back_to_the_top(template: str) -> None:
    installed = install(distro_text("debian"), template).after
    head, rest = installed.split(planner.BLOCK_END + "\n", 1)
    moved = rest.replace(planner.LABEL_BEGIN, head + planner.BLOCK_END + "\n" + planner.LABEL_BEGIN)
    assert install(moved, template).after == installed


def test_diff_text_is_a_unified_diff(template: str) -> None:
    result = install(distro_text("opensuse"), template)
    diff = planner.unified_diff(result, "before: 70-kdump.rules", "after: 70-kdump.rules")
    lines = diff.splitlines()
    assert lines[0] == "--- before: 70-kdump.rules"
    assert lines[1] == "+++ after: 70-kdump.rules"
    assert lines[2].startswith("@@ -1,")
    assert f"+{planner.BLOCK_BEGIN}" in lines
    assert all(not line.startswith("-") for line in lines[2:])
    assert planner.unified_diff(install(result.after, template), "a", "b") == ""


def test_missing_final_newline_survives_install_and_remove(template: str) -> None:
    original = distro_text("debian").rstrip("\n")
    installed = install(original, template).after
    assert not installed.endswith("\n")
    assert 'try-reload"\n' + planner.LABEL_BEGIN in installed
    assert remove(installed, template).after == original
    assert not install(installed, template).changed


def test_empty_file_round_trips(template: str) -> None:
    installed = install('RUN+="/bin/true"', template)
    assert installed.changed
    assert remove(installed.after, template).after == 'RUN+="/bin/true"'


@pytest.mark.parametrize("text", ["", "# comments only (SUSE's s390x file)\n",
                                  'SUBSYSTEM=="memory", GOTO="x"\nLABEL="x"\n'])
def test_a_file_that_runs_nothing_needs_nothing(text: str, template: str) -> None:
    result = install(text, template)
    assert not result.changed
    assert result.after == text
    assert "runs no program" in result.msg


def test_a_block_left_in_a_file_that_runs_nothing_any_more_goes(template: str) -> None:
    installed = install('RUN+="/bin/true"\n', template).after
    emptied = installed.replace('RUN+="/bin/true"\n', "")
    result = install(emptied, template)
    assert result.changed
    assert result.after == ""


def test_crlf_lines_round_trip(template: str) -> None:
    original = distro_text("opensuse").replace("\n", "\r\n")
    result = install(original, template)
    assert result.label == "kdump_end"
    assert remove(result.after, template).after == original


@pytest.mark.parametrize(("text", "needle"), [
    (f"{planner.BLOCK_BEGIN}\nRUN+=\"/bin/true\"\n", "line 1: '# BEGIN kdumpd managed block' "
     "without a matching END marker"),
    (f"RUN+=\"/bin/true\"\n{planner.BLOCK_END}\n", "line 2: '# END kdumpd managed block' "
     "without a matching BEGIN marker"),
    (f"{planner.BLOCK_BEGIN}\n{planner.BLOCK_END}\n{planner.BLOCK_BEGIN}\n{planner.BLOCK_END}\n",
     "line 3: a second kdumpd managed block (the first starts at line 1)"),
    (f"{planner.BLOCK_BEGIN}\n{planner.BLOCK_BEGIN}\n{planner.BLOCK_END}\n",
     "line 2: '# BEGIN kdumpd managed block' inside the region opened at line 1"),
    (f"{planner.LABEL_BEGIN}\nLABEL=\"kdumpd_end\"\n", "line 1: '# BEGIN kdumpd managed label'"),
])
def test_malformed_markers_are_an_error_naming_the_line(text: str, needle: str,
                                                        template: str) -> None:
    for state in ("present", "absent"):
        with pytest.raises(PlanError) as caught:
            plan(text, state=state, snippet=template)
        assert needle in str(caught.value)
        assert "\n" not in str(caught.value)


def test_foreign_kdumpd_end_label_is_refused(template: str) -> None:
    text = 'LABEL="kdumpd_end"\nRUN+="/bin/true"\n'
    with pytest.raises(PlanError, match=r"line 1: LABEL=\"kdumpd_end\" is already used"):
        install(text, template)


@pytest.mark.parametrize("bad", ['/run/x"y', "/run/%k", "/run/$env", "/run/a\nb"])
def test_unsafe_handover_is_refused(bad: str, template: str) -> None:
    with pytest.raises(PlanError, match="hand-over path"):
        plan("", state="present", snippet=template, handover=bad)


def test_unknown_state_is_refused(template: str) -> None:
    with pytest.raises(PlanError, match="state must be one of"):
        plan("", state="ignore", snippet=template)


def test_override_header_is_the_first_line_of_the_block(template: str) -> None:
    note = "# kdumpd override of /usr/lib/x.rules sha256 " + "0" * 64
    result = plan(distro_text("debian"), state="present", snippet=template, header=(note,))
    assert result.after.splitlines()[1] == note
    assert planner.parse(result.after).override_of == ("/usr/lib/x.rules", "0" * 64)


def test_template_notes_are_not_copied(template: str) -> None:
    result = install(distro_text("debian"), template)
    assert "#!" not in result.after
    assert "@END_LABEL@" not in result.after and "@HANDOVER@" not in result.after


def test_skip_lines_after_a_reload_rule_come_too_late(template: str) -> None:
    text = ('SUBSYSTEM=="cpu", ACTION=="add", RUN+="/bin/true"\n'
            'SUBSYSTEM=="cpu", ATTRS{crash_hotplug}=="1", GOTO="end"\n'
            'SUBSYSTEM=="memory", ATTRS{crash_hotplug}=="1", GOTO="end"\n'
            'LABEL="end"\n')
    result = install(text, template)
    assert result.covered == ()
    assert sum("crash_hotplug" in line for line in result.block if not line.startswith("#")) == 2


def test_diff_marks_a_missing_final_newline(template: str) -> None:
    original = distro_text("debian").rstrip("\n")
    diff = planner.unified_diff(install(original, template), "a", "b")
    assert "\n\\ No newline at end of file\n" in diff
    assert all(line[:1] in "-+ @\\" for line in diff.splitlines())
