"""The fake kernel models what the real one does (kdumpd/fakes/fakekernel.py): the fakes are only
worth the behaviours they share with the kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpd.fakes import fakesysfs
from kdumpd.fakes.fakekernel import SKIP_LINE, Call, FakeKernel, KexecBusy
from kdumpd.hardware import read_hardware
from kdumpd.sysfs import Sysfs


def kernel(root: Path, *, crash_hotplug: str = "0", arch: str = "x86_64") -> FakeKernel:
    fakesysfs.build(root, crash_hotplug=crash_hotplug)
    return FakeKernel(Sysfs(root), arch=arch)


def reads(k: FakeKernel) -> tuple[str, str, str]:
    sysfs = k.sysfs
    return (sysfs.crash_loaded().text, sysfs.read("devices/system/cpu/crash_hotplug").text,
            sysfs.read("devices/system/memory/crash_hotplug").text)


def test_it_takes_up_the_loaded_image_and_writes_nothing_until_asked(root: Path) -> None:
    k = kernel(root, crash_hotplug="1")
    assert k.kind == "file" and k.image_current() and reads(k) == ("1", "1", "1")
    assert not k.log and k.loads == 0


@pytest.mark.parametrize(("kind", "hotplug"), [("file", "1"), ("hotplug", "1"),
                                               ("plain", "0")])
def test_each_load_kind_reads_as_the_kernel_says_and_0_inside_the_load(
    root: Path, kind: str, hotplug: str
) -> None:
    k = kernel(root)
    inside: list[tuple[str, str, str]] = []
    k.load(kind, during=lambda: inside.append(reads(k)))
    assert inside == [("0", "0", "0")]  # the old image is freed, the lock held
    assert reads(k) == ("1", hotplug, hotplug)
    assert k.loads == 1 and not k.lock_held


def test_a_second_loader_gets_ebusy_and_a_failed_load_leaves_nothing(root: Path) -> None:
    k = kernel(root)
    with pytest.raises(KexecBusy):
        k.load("file", during=lambda: k.load("plain"))
    assert not k.lock_held and k.kind == "file"
    k.load("file", ok=False)
    assert k.kind is None and reads(k)[0] == "0" and not k.image_current()


def test_the_kernel_updates_a_hotplug_capable_image_and_not_a_plain_one(root: Path) -> None:
    k = kernel(root, crash_hotplug="1")
    k.hotplug("memory", "add", "memory9")
    k.hotplug("memory", "online", "memory9")
    assert k.image_current() and not k.log
    assert "00000000-07ffffff" not in (root / "proc/iomem").read_text()
    assert "48000000-4fffffff : System RAM" in (root / "proc/iomem").read_text()
    before = read_hardware(root).fingerprint
    k.hotplug("cpu", "online", "cpu1")
    assert read_hardware(root).fingerprint != before  # the fingerprint sees the model
    plain = kernel(root / "plain")
    plain.hotplug("memory", "add", "memory9")
    assert not plain.image_current()


def test_a_hotplug_while_the_lock_is_held_is_skipped_and_logged(root: Path) -> None:
    k = kernel(root, crash_hotplug="1")

    def dimm() -> None:
        k.hotplug("memory", "add", "memory9")
        k.hotplug("memory", "online", "memory9")

    k.load("file", during=dimm)  # someone's load: its header was built at its start
    assert k.log == [SKIP_LINE]
    assert reads(k) == ("1", "1", "1") and not k.image_current()  # reads 1, yet stale
    k.load("file")
    assert k.image_current() and k.log == [SKIP_LINE]


def test_reading_kexec_crash_size_fails_while_a_load_holds_the_lock(root: Path) -> None:
    k = kernel(root)
    seen: list[bool] = []
    k.load("file", during=lambda: seen.append(k.read_crash_size()))
    assert seen == [False] and k.read_crash_size()


def test_on_x86_a_removed_block_stays_in_the_kernel_updated_header(root: Path) -> None:
    k = kernel(root, crash_hotplug="1")
    for action in ("add", "online"):
        k.hotplug("memory", action, "memory9")
    for action in ("offline", "remove"):
        k.hotplug("memory", action, "memory9")
    assert not k.image_current()  # the header still lists memory9
    k.load("file")
    assert k.image_current()
    ppc = kernel(root / "ppc", crash_hotplug="1", arch="ppc64le")
    for action in ("add", "online", "offline", "remove"):
        ppc.hotplug("memory", action, "memory9")
    assert ppc.image_current()


def test_the_x86_update_can_be_caught_with_the_image_null(root: Path) -> None:
    k = kernel(root, crash_hotplug="1")
    k.hotplug("memory", "online", "memory8", leave_null=True)
    assert reads(k)[0] == "0" and k.kind == "file"  # a good image reads 0 for an instant
    k.publish()
    assert reads(k)[0] == "1"


def test_a_handler_answers_for_the_kernel(root: Path) -> None:
    calls: list[Call] = []

    def refuse_loads(k: FakeKernel, call: Call) -> bool | None:
        calls.append(call)
        return True if call.op == "load" else None

    k = kernel(root)
    k.handler = refuse_loads
    k.load("file")
    assert calls[0] == Call("load", kind="file") and k.loads == 0 and k.kind == "plain"
    k.hotplug("cpu", "online", "cpu1")
    assert calls[-1] == Call("hotplug", subsystem="cpu", action="online", name="cpu1")


def test_a_read_of_crash_hotplug_during_a_load_logs_the_skip_line_and_skips_nothing(
    root: Path,
) -> None:
    k = kernel(root, crash_hotplug="1")
    assert k.read_crash_hotplug("memory") == "1" and k.log == []  # no load: no line
    inside: list[str] = []
    k.load("file", during=lambda: inside.extend(
        k.read_crash_hotplug(s) for s in ("cpu", "memory")))
    assert inside == ["0", "0"] and k.log == [SKIP_LINE, SKIP_LINE]
    assert k.image_current() and k.read_crash_hotplug("cpu") == "1"
    k.load("plain")
    assert k.read_crash_hotplug("memory") == "0" and len(k.log) == 2
    with pytest.raises(ValueError, match="unknown subsystem"):
        k.read_crash_hotplug("disk")
