"""knowledge.py: the one read model behind STATUS=, `kdumpd status` and the metrics."""

from __future__ import annotations

from kdumpd.decision_log import Stats
from kdumpd.exposure import Exposure
from kdumpd.knowledge import Knowledge
from kdumpd.loaded_header import CURRENT, HeaderCheck
from kdumpd.state import State


def knowledge(*, loaded: str = "1", hotplug: dict[str, str] | None = None,
              header: HeaderCheck | None = None, stats: Stats | None = None,
              exposure: Exposure | None = None) -> Knowledge:
    return Knowledge(
        kexec_crash_loaded=loaded,
        crash_hotplug={"cpu": "1", "memory": "0"} if hotplug is None else hotplug,
        crash_hotplug_read_at=1_700_000_000.5,
        header=header,
        header_read_at=42.0,
        header_verification="off: not x86_64",
        stats=stats or Stats(events=7, skipped=3, reloads=1, failed_reads=2),
        state=State("boot-1", exposure=exposure or Exposure()),
        capacity=None,
    )


def test_the_kernel_keeps_current_only_the_subsystems_whose_crash_hotplug_read_1() -> None:
    assert knowledge().kernel_keeps_current() == {"cpu": True, "memory": False}
    assert knowledge(hotplug={"memory": "1"}).kernel_keeps_current() == {
        "cpu": False, "memory": True}


def test_no_crash_kernel_loaded_means_the_kernel_keeps_nothing_current() -> None:
    both = {"cpu": "1", "memory": "1"}
    assert knowledge(loaded="0", hotplug=both).kernel_keeps_current() == {
        "cpu": False, "memory": False}
    assert knowledge(loaded="", hotplug=both).kernel_keeps_current() == {
        "cpu": False, "memory": False}
    assert knowledge(loaded="1", hotplug=both).kernel_keeps_current() == {
        "cpu": True, "memory": True}


def test_status_answers_every_key_with_the_values_read() -> None:
    assert knowledge().as_dict() == {
        "kexec_crash_loaded": "1",
        "crash_hotplug": {"cpu": "1", "memory": "0"},
        "crash_hotplug_read_at": 1_700_000_000.5,
        "header": None,
        "header_verification": "off: not x86_64",
        "failed_reads": 2,
        "state_file": {"problem": None, "write_failures": 0},
        "status_line": "events 7, skipped 3, reloads 1, refused crash_hotplug reads 2",
    }


def test_a_state_file_that_cannot_be_written_is_answered() -> None:
    import dataclasses

    known = dataclasses.replace(knowledge(), state_problem="EROFS", state_write_failures=3)
    assert known.as_dict()["state_file"] == {"problem": "EROFS", "write_failures": 3}


def test_a_value_never_read_is_answered_as_null() -> None:
    assert knowledge(loaded="").as_dict()["kexec_crash_loaded"] is None
    assert knowledge(loaded="0").as_dict()["kexec_crash_loaded"] == "0"


def test_the_header_read_back_is_answered_with_when_it_was_read() -> None:
    check = HeaderCheck(CURRENT, "the header matches", header_address=0x1000,
                        cpus_missing=(3,), read_s=0.25)
    answered = knowledge(header=check).as_dict()["header"]
    assert answered == {
        "verdict": CURRENT, "why": "the header matches", "header_address": 0x1000,
        "ranges_missing": [], "ranges_extra": [], "cpus_missing": [3],
        "loaded_cmdline": None, "read_s": 0.25, "header_loads": [], "read_at": 42.0,
        "unfixable": None,
    }


def test_the_answer_is_a_copy_not_the_knowledge_itself() -> None:
    known = knowledge()
    answered = known.as_dict()
    answered["crash_hotplug"]["cpu"] = "0"
    assert known.crash_hotplug == {"cpu": "1", "memory": "0"}


def test_the_status_line_adds_this_boots_exposure_once_there_is_any() -> None:
    stats = Stats(events=2, skipped=2)
    assert knowledge(stats=stats).status_line() == "events 2, skipped 2, reloads 0"
    exposed = knowledge(stats=stats, exposure=Exposure(stale_s=1.5, no_crash_kernel_s=0.25))
    assert exposed.status_line() == ("events 2, skipped 2, reloads 0; this boot: stale "
                                     "1.50 s, no crash kernel 0.25 s")
