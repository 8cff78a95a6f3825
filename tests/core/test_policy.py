from __future__ import annotations

import pytest

from kdumpd.policy import Decision, decide
from kdumpd.sysfs import ABSENT, OK, UNREADABLE, Snapshot, Value

LOADED = Value("1")


def snap(loaded: Value = LOADED, **hotplug: Value) -> Snapshot:
    return Snapshot(crash_loaded=loaded, crash_hotplug=dict(hotplug))


def test_crash_hotplug_1_means_the_kernel_updates_so_no_reload() -> None:
    d = decide({"memory"}, snap(memory=Value("1")))
    assert not d.reload
    assert "kernel updates" in d.reason
    assert d.warnings == ()


def test_crash_hotplug_0_needs_a_reload_once_confirmed() -> None:
    first = decide({"cpu"}, snap(cpu=Value("0")))
    assert (first.reload, first.confirm) == (False, True)
    assert "cpu: crash_hotplug=0: confirming" in first.reason
    d = decide({"cpu"}, snap(cpu=Value("0")), zero_seen=True)
    assert (d.reload, d.confirm) == (True, False)
    assert "cpu: crash_hotplug=0" in d.reason


def test_missed_updates_reload_even_when_crash_hotplug_reads_1() -> None:
    d = decide({"memory"}, snap(memory=Value("1")), missed="events arrived during our load")
    assert d.reload and d.reason == "events arrived during our load"
    assert not decide({"memory"}, snap(Value("0"), memory=Value("1")), missed="x").reload


def test_a_request_without_subsystems_only_asks_whether_a_kernel_is_loaded() -> None:
    assert not decide((), snap()).reload
    assert decide((), snap(Value("0")), owed=True).reload


def test_absent_crash_hotplug_needs_a_reload_without_warning() -> None:
    d = decide({"memory"}, snap(memory=Value("", ABSENT)))
    assert d.reload
    assert "absent" in d.reason
    assert d.warnings == ()


@pytest.mark.parametrize("value", [Value("2"), Value("yes"), Value(""), Value("EIO", UNREADABLE)])
def test_unexpected_or_unreadable_value_reloads_with_a_warning_naming_it(value: Value) -> None:
    d = decide({"cpu"}, snap(cpu=value))
    assert d.reload
    assert len(d.warnings) == 1
    assert "cpu/crash_hotplug" in d.warnings[0]
    shown = value.text if value.kind == OK else value.kind
    assert shown in d.warnings[0]


def test_no_crash_kernel_loaded_skips_once_read_again() -> None:
    snapshot = snap(Value("0"), cpu=Value("0"), memory=Value("0"))
    first = decide({"cpu", "memory"}, snapshot)
    # x86 sets the image to NULL for an instant while it swaps in an updated header.
    assert (first.reload, first.confirm) == (False, True)
    d = decide({"cpu", "memory"}, snapshot, zero_seen=True)
    assert not d.reload and not d.confirm
    assert "no crash kernel loaded" in d.reason
    # A request without events (kdumpd reload, a retry) needs no second read.
    assert decide((), snapshot).reason == d.reason


def test_a_crash_kernel_we_unloaded_is_owed_back() -> None:
    d = decide({"cpu"}, snap(Value("0"), cpu=Value("0")), owed=True)
    assert d.reload
    assert "still missing" in d.reason


def test_no_kexec_support_skips() -> None:
    d = decide({"cpu"}, snap(Value("", ABSENT), cpu=Value("0")))
    assert not d.reload
    assert "no crash kernel support" in d.reason


def test_unreadable_kexec_crash_loaded_fails_safe_towards_reloading() -> None:
    d = decide({"cpu"}, snap(Value("garbage"), cpu=Value("0")), zero_seen=True)
    assert d.reload
    assert "kexec_crash_loaded" in d.warnings[0]


def test_one_stale_subsystem_is_enough_to_reload() -> None:
    d = decide({"cpu", "memory"}, snap(cpu=Value("1"), memory=Value("0")), zero_seen=True)
    assert d.reload
    assert "memory" in d.reason
    assert "cpu" not in d.reason


def test_memory_removal_reloads_on_x86_although_the_kernel_updates_the_header() -> None:
    kernel_keeps = snap(cpu=Value("1"), memory=Value("1"))
    for action in ("remove", "*"):
        d = decide({"memory"}, kernel_keeps, actions={("memory", action)})
        assert d.reload and not d.confirm, action
    for arch in ("ppc64le", "aarch64"):  # powerpc's update takes the range out itself
        assert not decide({"memory"}, kernel_keeps, actions={("memory", "remove")},
                          arch=arch).reload
    for pair in (("memory", "add"), ("memory", "online"), ("memory", "offline"),
                 ("cpu", "remove")):
        assert not decide({"memory", "cpu"}, kernel_keeps, actions={pair}).reload, pair
    # A removal beside a transient 0 elsewhere: no confirmation, the removal alone reloads.
    d = decide({"memory", "cpu"}, snap(cpu=Value("0"), memory=Value("1")),
               actions={("memory", "remove")})
    assert d.reload and "cpu: crash_hotplug=0" in d.reason


def test_s390_never_reloads_for_the_header() -> None:
    stale = snap(cpu=Value("", ABSENT), memory=Value("", ABSENT))
    assert not decide({"cpu", "memory"}, stale, arch="s390x").reload
    assert not decide({"cpu", "memory"}, stale, arch="s390").reload
    assert decide({"cpu", "memory"}, stale, arch="s390x", owed=True).reload is False  # loaded
    assert decide({"cpu"}, snap(Value("0")), arch="s390x", owed=True).reload
    odd = decide({"cpu"}, snap(Value("2")), arch="s390x")
    assert not odd.reload and odd.warnings == (
        "kexec_crash_loaded reads '2'; assuming a crash kernel is loaded",)


def test_only_the_subsystems_of_the_burst_count() -> None:
    d = decide({"cpu"}, snap(cpu=Value("1"), memory=Value("0")))
    assert not d.reload


# Whole decisions, so the flag, the reason and the warnings are all pinned.
@pytest.mark.parametrize(("subsystems", "snapshot", "kwargs", "expected"), [
    ({"cpu"}, snap(Value("", ABSENT)), {},
     Decision(False, "kernel has no crash kernel support (kexec_crash_loaded absent)")),
    ({"cpu"}, snap(Value("0")), {"owed": True},
     Decision(True, "the crash kernel our failed reload unloaded is still missing")),
    ({"cpu"}, snap(Value("0")), {},
     Decision(False, "kexec_crash_loaded reads 0: confirming (a 0 can be transient)",
              confirm=True)),
    ({"cpu"}, snap(Value("0")), {"zero_seen": True},
     Decision(False, "no crash kernel loaded: nothing to keep current")),
    ({"memory"}, snap(memory=Value("1")), {"actions": {("memory", "remove")}},
     Decision(True, "memory: hot-remove, which the kernel's own update does not take out of "
              "the header on x86: the elfcorehdr is stale")),
    ({"memory"}, snap(memory=Value("1")),
     {"actions": {("memory", "remove")}, "arch": "s390x", "missed": "late events"},
     Decision(False, "the dump kernel builds its ELF core header itself on this architecture "
              "(s390, elfcorehdr_alloc()): no reload needed")),
    ({"cpu"}, snap(cpu=Value("1")), {"missed": "late events"}, Decision(True, "late events")),
    ({"cpu"}, snap(Value("0")), {"missed": "late events", "zero_seen": True},
     Decision(False, "no crash kernel is loaded now: waiting for the load under way to end "
              "(its image may predate the change)", wait_for_load=True)),
    ((), snap(Value("0")), {"missed": "late events", "owed": True},
     Decision(True, "the crash kernel our failed reload unloaded is still missing")),
    ((), snap(), {}, Decision(False, "a crash kernel is loaded")),
    ((), snap(Value("2")), {}, Decision(False, "a crash kernel is loaded", (
        "kexec_crash_loaded reads '2'; assuming a crash kernel is loaded",))),
    ({"cpu", "memory"}, snap(cpu=Value("1"), memory=Value("1")), {},
     Decision(False, "crash_hotplug=1: the kernel updates the elfcorehdr")),
    ({"memory"}, snap(), {},
     Decision(True, "memory: crash_hotplug absent: the elfcorehdr is stale")),
    ({"cpu", "memory"}, snap(cpu=Value("0"), memory=Value("0")), {},
     Decision(False, "cpu: crash_hotplug=0; memory: crash_hotplug=0: confirming (a 0 can be "
              "transient)", confirm=True)),
    ({"cpu", "memory"}, snap(cpu=Value("0"), memory=Value("", ABSENT)), {},
     Decision(True, "cpu: crash_hotplug=0; memory: crash_hotplug absent: the elfcorehdr is "
              "stale")),
    ({"cpu"}, snap(cpu=Value("EIO", UNREADABLE)), {},
     Decision(True, "cpu: crash_hotplug unreadable (EIO): the elfcorehdr is stale",
              ("cpu/crash_hotplug reads unreadable (EIO); reloading to be safe",))),
    ({"cpu"}, snap(Value("", UNREADABLE), cpu=Value("1")), {},
     Decision(False, "crash_hotplug=1: the kernel updates the elfcorehdr",
              ("kexec_crash_loaded reads unreadable; assuming a crash kernel is loaded",))),
])
def test_decisions_in_full(subsystems: set[str], snapshot: Snapshot, kwargs: dict[str, object],
                           expected: Decision) -> None:
    assert decide(subsystems, snapshot, **kwargs) == expected  # type: ignore[arg-type]
