"""Property tests: any text gives a plan or a clear PlanError; install+remove round-trips."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kdumpd.command import Completed
from kdumpd.rules import manage, planner, snippet, syntax, udev
from kdumpd.rules.planner import PlanError, plan

TEMPLATE = snippet.template()
MARKERS = [planner.BLOCK_BEGIN, planner.BLOCK_END, planner.LABEL_BEGIN, planner.LABEL_END]

rule_lines = st.sampled_from([
    'SUBSYSTEM=="cpu", ACTION=="add", RUN+="/bin/true"',
    'SUBSYSTEM=="memory", ATTRS{crash_hotplug}=="1", GOTO="kdump_end"',
    'SUBSYSTEM=="cpu", ATTRS{crash_hotplug}=="1", GOTO="kdump_reload_end"',
    'SUBSYSTEM=="cpu|memory", TEST=="/run/kdumpd/handles-reload", GOTO="kdump_end"',
    'GOTO="kdump_end"', 'LABEL="kdump_end"', 'LABEL="kdump_reload_end"', 'LABEL="kdumpd_end"',
    'LABEL="x"', 'LABEL=""', 'LABEL="%k"', 'LABEL="a\\"b"', "# a comment", "", "   ",
    'SUBSYSTEM=="cpu", \\', '  ACTION=="add", RUN+="/bin/true"', "garbage ===",
])
any_line = st.one_of(rule_lines, st.sampled_from(MARKERS),
                     st.sampled_from([" " + m + "  " for m in MARKERS]),
                     st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
endings = st.sampled_from(["\n", "\r\n", "\n\n", ""])


@st.composite
def rules_text(draw: st.DrawFn, markers: bool = True) -> str:
    lines = draw(st.lists(any_line if markers else st.one_of(
        rule_lines, st.text(max_size=40)), max_size=12))
    body = "".join(line + draw(endings) for line in lines)
    if draw(st.booleans()) and body.endswith("\n"):
        body = body[:-1]
    return body


def has_marker(text: str) -> bool:
    return any(line.strip() in MARKERS for line in text.split("\n"))


@settings(max_examples=400, deadline=None)
@given(text=rules_text(), state=st.sampled_from(["present", "absent"]))
@example(text=planner.BLOCK_BEGIN, state="present")
@example(text="\x0b\x0c\u2028", state="present")
def test_any_text_gives_a_plan_or_a_one_line_plan_error(text: str, state: str) -> None:
    try:
        result = plan(text, state=state, snippet=TEMPLATE)
    except PlanError as error:
        message = str(error)
        assert message and "\n" not in message
        return
    assert result.before == text
    assert result.changed == (result.after != text)


@settings(max_examples=400, deadline=None)
@given(text=rules_text(markers=False))
@example(text="")
@example(text='RUN+="/bin/true"')
@example(text='LABEL="end"\r')
def test_install_then_remove_gives_the_original_bytes(text: str) -> None:
    if has_marker(text):
        return
    try:
        installed = plan(text, state="present", snippet=TEMPLATE)
    except PlanError:
        return  # e.g. LABEL="kdumpd_end" in the middle: refused, nothing written
    assert plan(installed.after, state="present", snippet=TEMPLATE).after == installed.after
    removed = plan(installed.after, state="absent", snippet=TEMPLATE)
    assert removed.after == text
    assert plan(text, state="absent", snippet=TEMPLATE).after == text


@settings(max_examples=300, deadline=None)
@given(text=rules_text(markers=False))
def test_the_lines_kdumpd_writes_pass_its_own_check(text: str) -> None:
    if has_marker(text):
        return
    try:
        installed = plan(text, state="present", snippet=TEMPLATE)
    except PlanError:
        return
    if installed.changed:
        syntax.check_lines(installed.after, set(installed.written))


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=200),
                      rules_text().map(lambda t: t.encode("utf-8", "surrogatepass"))),
       state=st.sampled_from(["present", "absent"]))
def test_any_file_bytes_give_a_result_dict_never_an_exception(data: bytes, state: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "kdump.rules"
        path.write_bytes(data)
        env = manage.Env(udev=udev.Udev(_NoUdevadm(), control_socket=Path(directory) / "none"))
        result = manage.run(state=state, path=str(path), env=env)
        assert isinstance(result["msg"], str) and "\n" not in result["msg"]
        if result.get("failed"):
            assert path.read_bytes() == data
        elif state == "present" and result["changed"] and not has_marker(
                data.decode("utf-8", "surrogateescape")):
            undone = manage.run(state="absent", path=str(path), env=env)
            assert undone["changed"] is True and path.read_bytes() == data
        assert [p.name for p in Path(directory).iterdir()] == ["kdump.rules"]


class _NoUdevadm:
    def __call__(self, argv: Sequence[str], timeout: float) -> Completed:
        return Completed(1, "", "udevadm: not here")
