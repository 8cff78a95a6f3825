"""Decisions from the loaded header read back (header_proof.py), end to end on the fake
kernel whose /proc/kcore holds the image as its loader lays it out (fakekernel kcore)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kdumpd.backends.distro import loaded_lacks_growth_safety
from kdumpd.backends.fake import FakeBackend
from kdumpd.controller import Controller
from kdumpd.decision_log import REASON_UNPROTECTED
from kdumpd.events import Event
from kdumpd.fakes import fakesysfs
from kdumpd.fakes.clock import MockTime
from kdumpd.fakes.fakekernel import Call, FakeKernel
from kdumpd.hardware import read_hardware
from kdumpd.header_proof import HeaderProof
from kdumpd.loaded_header import CURRENT, STALE, UNKNOWN, HeaderCheck, verify
from kdumpd.policy import Decision
from kdumpd.reloader import Reloader
from kdumpd.scheduler import ReloadScheduler
from kdumpd.state import MemoryStore
from kdumpd.sysfs import Sysfs

SKIP = "crash hp: kexec_trylock() failed, kdump image may be inaccurate"


class Proven:
    """The controller over the fake kernel with a faithful kcore, verifying on x86_64."""

    def __init__(self, root: Path, clock: MockTime, *, loaded: str = "plain",
                 store: MemoryStore | None = None, verifying: bool = True) -> None:
        fakesysfs.build(root, crash_hotplug="1" if loaded == "file" else "0")
        self.clock = clock
        self.sysfs = Sysfs(root)
        self.kernel = FakeKernel(self.sysfs, kcore=True)
        self.kernel.kind = loaded
        self.kernel.publish()
        self.log = root / "fake.log"
        self.backend = FakeBackend(self.log, self.sysfs, hotplug_after_load=loaded == "file",
                                   sleep=clock.advance, wall=clock, kernel=self.kernel)
        self.reads: list[str] = []
        self.store = store or MemoryStore()
        self.controller = Controller(
            ReloadScheduler(0.25, 3.0), self.sysfs.snapshot, store=self.store,
            hardware=lambda: read_hardware(root), backend=self.backend, wall=clock,
            verify=self.verify if verifying else None)
        self.reloader = Reloader(self.backend, self.sysfs, retries=0, sleep=clock.advance,
                                 clock=clock)

    def verify(self) -> HeaderCheck:
        check = verify(self.sysfs.root, arch="x86_64")
        self.reads.append(check.verdict)
        return check

    def script(self, verdicts: list[str], stale: HeaderCheck) -> None:
        """Read the header from a script instead: the next verdict at each read, as
        ``stale`` or a current "ok"."""
        left = iter(verdicts)

        def scripted() -> HeaderCheck:
            verdict = next(left)
            self.reads.append(verdict)
            return stale if verdict == STALE else HeaderCheck(CURRENT, "ok")

        self.controller.header = HeaderProof(scripted, self.clock)

    def hotplug(self, subsystem: str, name: str, *actions: str) -> None:
        for action in actions:
            self.kernel.hotplug(subsystem, action, name)
            self.controller.on_event(Event(subsystem, action,
                                           f"/devices/system/{subsystem}/{name}"), self.clock())

    def settle(self) -> None:
        while (deadline := self.controller.deadline()) is not None:
            self.clock.advance_to(deadline)
            burst = self.controller.poll(self.clock())
            if burst is not None:
                self.controller.reload_finished(burst, self.reloader.reload(), self.clock())

    def loads(self) -> int:
        return self.kernel.loads


def test_a_plain_image_missing_a_dimm_is_stale_reloaded_and_then_current(
    root: Path, clock: MockTime
) -> None:
    rig = Proven(root, clock)
    rig.controller.start(clock())
    rig.hotplug("memory", "memory9", "add", "online")
    assert verify(root, arch="x86_64").verdict == STALE
    rig.settle()
    assert rig.loads() == 1 and rig.kernel.image_current()
    assert rig.reads == [CURRENT, STALE, CURRENT]  # start, the decision, the post-condition
    assert verify(root, arch="x86_64").verdict == CURRENT


def test_a_cpu_going_offline_and_online_on_a_plain_image_needs_no_reload(
    root: Path, clock: MockTime
) -> None:
    # crash_hotplug=0 says reload; the header has a note for every present CPU, and an
    # offlined CPU stays present: the header read back is current.
    rig = Proven(root, clock)
    rig.kernel.hotplug("cpu", "add", "cpu1")
    rig.kernel.load("plain")
    rig.controller.start(clock())
    rig.hotplug("cpu", "cpu1", "online", "offline", "online")
    rig.settle()
    assert rig.loads() == 1  # only the test's own load
    decision = rig.controller.last_decision
    assert decision is not None and not decision.reload
    assert decision.reason.startswith("the loaded header, read back, is current: ")
    assert decision.reason.endswith("(without it: cpu: crash_hotplug=0: the elfcorehdr is "
                                    "stale)")
    # Proven current, so recorded as describing the hardware of now: a restart owes no
    # reload for the CPU that is online again (the fingerprint counts online CPUs).
    rig.hotplug("cpu", "cpu1", "offline")
    rig.settle()
    stored = rig.store.load()
    assert stored is not None and rig.loads() == 1
    assert stored.fingerprint == read_hardware(root).fingerprint


def test_a_cpu_hot_added_after_a_plain_load_is_stale_and_reloaded(
    root: Path, clock: MockTime
) -> None:
    rig = Proven(root, clock)
    rig.controller.start(clock())
    rig.hotplug("cpu", "cpu1", "add")
    rig.settle()
    assert rig.loads() == 1 and rig.kernel.image_current()


def test_a_skip_nobody_logged_is_caught_by_the_header_read_back(
    root: Path, clock: MockTime
) -> None:
    # A DIMM comes online during someone else's load with the journal unreadable: the
    # inference sees crash_hotplug=1 and would keep the image; the header says stale.
    rig = Proven(root, clock, loaded="file")
    rig.controller.start(clock())
    rig.kernel.load("file", during=lambda: rig.hotplug("memory", "memory9", "add", "online"))
    assert not rig.kernel.image_current()
    rig.settle()
    assert rig.loads() == 2 and rig.kernel.image_current()
    decision = rig.controller.last_decision
    assert decision is not None and decision.reason.startswith(
        "the loaded header, read back, is STALE: RAM missing 0x48000000-0x4fffffff")


def test_an_x86_removal_is_decided_by_the_header(root: Path, clock: MockTime) -> None:
    rig = Proven(root, clock, loaded="file")
    rig.controller.start(clock())
    rig.hotplug("memory", "memory9", "add", "online")
    rig.settle()
    assert rig.loads() == 0  # the kernel's update made it current
    rig.hotplug("memory", "memory9", "offline", "remove")
    rig.settle()
    assert rig.loads() == 1 and rig.kernel.image_current()
    decision = rig.controller.last_decision
    assert decision is not None and "ranges that are not RAM 0x48000000-0x4fffffff" in \
        decision.reason


def test_a_reader_storm_on_a_current_header_reloads_nothing_at_start_or_after(
    root: Path, clock: MockTime
) -> None:
    rig = Proven(root, clock, loaded="file")
    rig.controller.start(clock(), kernel_skips=76)
    rig.settle()
    rig.hotplug("memory", "memory9", "add", "online")
    rig.controller.on_kernel_skip(clock(), SKIP)  # a paired line: the inference reloads...
    rig.settle()
    assert rig.loads() == 0  # ...the header read back says current
    assert rig.reads == [CURRENT, CURRENT]


def test_a_stale_header_at_start_is_reloaded(root: Path, clock: MockTime) -> None:
    rig = Proven(root, clock)
    rig.kernel.hotplug("memory", "add", "memory9")  # before kdumpd: the -c image lacks it
    rig.controller.start(clock())
    rig.settle()
    assert rig.loads() == 1 and rig.kernel.image_current()


def test_without_verification_the_inference_decides_as_before(
    root: Path, clock: MockTime
) -> None:
    rig = Proven(root, clock, verifying=False)
    rig.kernel.hotplug("cpu", "add", "cpu1")
    rig.kernel.load("plain")
    rig.controller.start(clock())
    rig.hotplug("cpu", "cpu1", "online")
    rig.settle()
    assert rig.loads() == 2 and rig.reads == []


def test_a_load_that_leaves_a_stale_header_fails_and_twice_turns_verification_off(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Proven(root, clock)
    # A kernel whose header the reader misreads.
    rig.script([CURRENT, STALE, STALE, STALE, STALE], HeaderCheck(STALE, "RAM missing 0x1-0x2"))
    rig.controller.start(clock())
    rig.controller.request(clock(), ["memory"], "kdumpd reload", due_now=True)
    with caplog.at_level(logging.ERROR, logger="kdumpd"):
        # The decision (stale: reload), the post-condition (stale: a failed load), its
        # retry (stale: reload), the post-condition again (stale: verification off), and
        # the next retry decided by the inference alone (crash_hotplug=0: reload), which
        # no post-condition fails.
        rig.settle()
    assert rig.loads() == 3 and rig.controller.stats.failed == 2
    assert rig.reads == [CURRENT, STALE, STALE, STALE, STALE]
    assert not rig.controller.header.enabled
    assert "the load left a STALE header, read back: RAM missing 0x1-0x2" in caplog.messages
    assert any("verification is off until kdumpd restarts" in m for m in caplog.messages)
    clock.advance(3600)
    rig.settle()
    assert rig.loads() == 3 and rig.controller.deadline() is None  # no loop


@pytest.mark.parametrize(("verdict", "reload", "becomes"), [
    (CURRENT, True, False), (STALE, False, True), (UNKNOWN, True, True),
    (UNKNOWN, False, False), (CURRENT, False, False), (STALE, True, True)])
def test_the_header_overrules_the_inference_only_where_it_can_be_read(
    clock: MockTime, verdict: str, reload: bool, becomes: bool
) -> None:
    proof = HeaderProof(lambda: HeaderCheck(verdict, "why"), clock)
    judged = proof.judge(Decision(reload, "inferred"))
    assert judged.reload is becomes
    assert ("inferred" in judged.reason) and (proof.last is not None)
    assert (judged.reason == "inferred") is (verdict == UNKNOWN)


def test_a_step_of_the_inference_is_not_verified(clock: MockTime) -> None:
    proof = HeaderProof(lambda: HeaderCheck(STALE, "why"), clock)
    for step in (Decision(False, "confirm", confirm=True),
                 Decision(False, "wait", wait_for_load=True)):
        assert proof.judge(step) is step
    assert proof.last is None


DAY_ONE = ("root=/dev/vda rw reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 "
           "irqpoll usbcore.nousb memhp_default_state=online_movable")


def protection(line: str) -> str | None:
    return loaded_lacks_growth_safety(line, "x86_64", True)


def test_an_image_that_would_not_survive_growth_is_replaced_once_when_quiet(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    # Day-one Debian: kdump-tools' own -s image, kept current by the kernel (crash_hotplug
    # 1/1), lacks acpi_no_memhotplug; its dump kernel died after 5.5 GiB of growth.
    rig = Proven(root, clock, loaded="file")
    rig.kernel.cmdline = DAY_ONE
    rig.kernel.publish()
    rig.controller.header = HeaderProof(rig.verify, clock, protection=protection)

    def kdumpds_image(kernel: FakeKernel, call: Call) -> None:
        kernel.cmdline = DAY_ONE.replace("memhp_default_state=online_movable",
                                         "acpi_no_memhotplug")
    rig.kernel.handler = kdumpds_image
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        rig.controller.start(clock())
        assert rig.controller.deadline() == pytest.approx(clock() + 0.25)  # when quiet
        rig.settle()
    assert rig.loads() == 1 and rig.kernel.image_current()
    assert ("the loaded dump kernel's command line lacks acpi_no_memhotplug and carries "
            "memhp_default_state=online_movable: after memory grows it may take the new "
            "memory as its own and die before the dump: replacing the loaded image once "
            "with kdumpd's, whose dump kernel survives memory growth ([reload] growth_safe "
            "= false turns this off)") in caplog.messages
    assert "acpi_no_memhotplug" in (rig.controller.header.last.loaded_cmdline or "")
    rig.hotplug("memory", "memory9", "add", "online")
    rig.settle()
    assert rig.loads() == 1  # current and protected: nothing more


def test_an_image_kdumpd_cannot_protect_is_replaced_only_once(
    root: Path, clock: MockTime
) -> None:
    rig = Proven(root, clock, loaded="file")
    rig.kernel.cmdline = DAY_ONE  # and kdumpd's own load keeps it (a backend that cannot)
    rig.kernel.publish()
    rig.controller.header = HeaderProof(rig.verify, clock, protection=protection)
    rig.controller.start(clock())
    rig.settle()
    rig.hotplug("memory", "memory9", "add", "online")
    rig.settle()
    clock.advance(3600)
    rig.settle()
    assert rig.loads() == 1


def test_the_loaded_command_line_is_checked_for_growth_safety_on_x86_with_slots() -> None:
    assert protection("a acpi_no_memhotplug b") is None
    assert loaded_lacks_growth_safety(DAY_ONE, "x86_64", False) is None  # no ACPI slots
    assert loaded_lacks_growth_safety(DAY_ONE, "ppc64le", True) is None
    assert protection("root=/dev/vda memory_hotplug.online_policy=auto-movable") == (
        "the loaded dump kernel's command line lacks acpi_no_memhotplug and carries "
        "memory_hotplug.online_policy=auto-movable: after memory grows it may take the new "
        "memory as its own and die before the dump")


def test_a_current_header_after_a_load_resets_the_count_of_disagreements(
    clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    verdicts = iter([STALE, CURRENT, STALE, STALE])
    proof = HeaderProof(lambda: HeaderCheck(next(verdicts), "RAM missing 0x1-0x2"), clock)
    with caplog.at_level(logging.CRITICAL, logger="kdumpd"):
        assert proof.after_load() is not None and proof.enabled  # stale once
        assert proof.after_load() is None and proof.enabled  # current: the count restarts
        assert proof.after_load() is not None and proof.enabled  # stale once again
        assert proof.after_load() is not None and not proof.enabled  # twice in a row
    assert proof.off_why == ("the header read back was stale right after 2 loads of "
                             "kdumpd's in a row (RAM missing 0x1-0x2)")
    assert caplog.messages == [
        f"{proof.off_why}: reading the loaded header back and the kernel disagree; "
        "verification is off until kdumpd restarts, crash_hotplug and the hardware decide"]
    assert proof.read() is None and proof.after_load() is None  # off: nothing is read
    assert proof.last is None  # and nothing read before is shown as the truth


def test_a_verifier_that_raises_is_a_verdict_that_cannot_tell(clock: MockTime) -> None:
    def broken() -> HeaderCheck:
        raise OverflowError("offset too large")

    proof = HeaderProof(broken, clock)
    assert proof.read() == HeaderCheck(
        UNKNOWN, "reading the loaded header failed (OverflowError: offset too large)")
    assert proof.judge(Decision(True, "inferred")) == Decision(True, "inferred")


def test_skip_lines_count_every_skip() -> None:
    from kdumpd.skip_lines import SkipLines

    lines = SkipLines()
    lines.event(0.0)
    assert [lines.line(t) for t in (0.5, 1.0, 1.5)] == [True, True, True]
    assert (lines.skips, lines.reads) == (3, 0)


def test_a_proof_knows_why_it_is_off_and_when_it_last_read(clock: MockTime) -> None:
    off = HeaderProof(None, clock)
    assert not off.enabled and off.off_why == "[reload] verify_header = false"
    on = HeaderProof(lambda: HeaderCheck(CURRENT, "fine"), clock)
    assert on.enabled and on.off_why == "" and on.last_at is None
    on.read()
    assert on.last_at == clock()


def test_an_unprotected_command_line_is_judged_without_its_elfcorehdr_and_once(
    clock: MockTime,
) -> None:
    seen: list[str] = []

    def protection(line: str) -> str | None:
        seen.append(line)
        return "lacks acpi_no_memhotplug"

    checks = iter([HeaderCheck(UNKNOWN, "no kcore"),  # no command line: nothing to judge
                   HeaderCheck(CURRENT, "x", loaded_cmdline="elfcorehdr=0x1000 ro quiet"),
                   HeaderCheck(CURRENT, "x", loaded_cmdline="ro quiet elfcorehdr=4K")])
    proof = HeaderProof(lambda: next(checks), clock, protection=protection)
    proof.read()
    assert proof.unprotected() is None and seen == []
    proof.read()
    assert proof.unprotected(peek=True) == "lacks acpi_no_memhotplug"
    assert proof.unprotected() == "lacks acpi_no_memhotplug" and seen[-1] == "ro quiet"
    proof.read()  # the same command line, loaded again by a -c load: once is enough
    assert proof.unprotected() is None


UNFIXABLE = ("kexec-tools leaves all RAM at or above the device tree's linux,memory-limit "
             "(0x80000000, set at boot) out of a kexec_load header")


def test_a_stale_header_no_load_can_mend_is_said_once_per_load_not_retried_nor_counted(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    """powerpc after a DIMM: kexec-tools' header lacks the RAM above linux,memory-limit;
    loading again cannot add it, so the load is not failed, retried or held against the
    reader, and the next decision is not turned into a reload."""
    rig = Proven(root, clock)
    rig.script([CURRENT, STALE, STALE, STALE, STALE],
               HeaderCheck(STALE, "RAM missing 0x80000000-0x9fffffff", unfixable=UNFIXABLE))
    rig.controller.start(clock())
    rig.controller.request(clock(), ["memory"], "kdumpd reload", due_now=True)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.settle()
    # At start, the decision, the post-condition: one load, not failed, no retry.
    assert rig.loads() == 1 and rig.controller.stats.failed == 0
    assert rig.reads == [CURRENT, STALE, STALE]
    assert rig.controller.header.enabled and rig.controller.deadline() is None
    said = [r for r in caplog.records if getattr(r, "MESSAGE_ID", "") ==
            "b7c2e49a1f0d4e6c9a35d8f1e2c7b604"]
    assert [r.levelno for r in said] == [logging.ERROR]
    assert said[0].getMessage() == ("the crash kernel loaded now lacks RAM missing "
                                    "0x80000000-0x9fffffff: a dump would miss it; "
                                    + UNFIXABLE)
    # The next burst is decided by the inference (this plain image: crash_hotplug=0),
    # told what the header read back says; its load is not failed either.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        rig.hotplug("cpu", "cpu1", "offline", "online")
        rig.settle()
    assert rig.loads() == 2 and rig.controller.stats.failed == 0
    assert rig.reads == [CURRENT, STALE, STALE, STALE, STALE]
    assert any(m.endswith("which no kexec_load can mend: " + UNFIXABLE) for m in caplog.messages), \
        caplog.messages
    assert rig.controller.header.enabled and rig.controller.deadline() is None


@pytest.mark.parametrize("reload", [True, False])
def test_judge_keeps_the_inference_for_a_stale_header_no_load_can_mend(
    clock: MockTime, reload: bool
) -> None:
    proof = HeaderProof(lambda: HeaderCheck(STALE, "RAM missing x", unfixable="why not"),
                        clock)
    judged = proof.judge(Decision(reload, "inferred"))
    assert judged.reload is reload
    assert judged.reason == ("inferred; read back, the loaded header is STALE: RAM missing "
                             "x, which no kexec_load can mend: why not")


def test_a_current_header_does_not_cancel_a_reload_for_what_it_cannot_show(
    clock: MockTime,
) -> None:
    """powerpc: a plain image after a CPU event; its header (notes for every possible
    CPU) reads current, but its dump kernel's device tree lacks the new CPU."""
    proof = HeaderProof(lambda: HeaderCheck(CURRENT, "2 memory ranges"), clock)
    judged = proof.judge(Decision(True, "cpu: crash_hotplug=0", beyond_header=True))
    assert judged.reload and judged.beyond_header
    assert judged.reason == ("cpu: crash_hotplug=0; read back, the loaded header is current "
                             "(2 memory ranges), which does not cancel this reload")


def test_proven_says_current_only_for_a_current_header_read_for_this_decision(
    clock: MockTime,
) -> None:
    verdicts = iter([CURRENT, STALE, UNKNOWN])
    proof = HeaderProof(lambda: HeaderCheck(next(verdicts), "why"), clock)
    assert proof.proven(Decision(False, "kept")) == (Decision(False, "kept; read back, the "
                                                              "loaded header agrees: current "
                                                              "(why)"), True)
    stale, current = proof.proven(Decision(False, "kept"))
    assert stale.reload and not current
    assert proof.proven(Decision(False, "kept")) == (Decision(False, "kept"), False)
    # A step is not read back: nothing new was proven, even after a current read.
    off = HeaderProof(None, clock)
    assert off.proven(Decision(True, "inferred")) == (Decision(True, "inferred"), False)


def test_a_kept_image_whose_command_line_would_not_survive_growth_is_replaced_once(
    clock: MockTime,
) -> None:
    check = HeaderCheck(CURRENT, "why", loaded_cmdline="root=/dev/vda elfcorehdr=16K")
    proof = HeaderProof(lambda: check, clock, protection=lambda line: f"{line}: no option")
    replaced, current = proof.proven(Decision(False, "kept", ("w",)))
    assert current
    assert replaced == Decision(True, f"root=/dev/vda: no option: {REASON_UNPROTECTED}",
                                ("w",))
    assert proof.proven(Decision(False, "kept"))[0].reload is False  # once per line
    for step in (Decision(False, "c", confirm=True), Decision(False, "w", wait_for_load=True)):
        fresh = HeaderProof(lambda: check, clock, protection=lambda line: "no option")
        fresh.read()
        assert fresh._keep_alive(step) is step


def test_capacity_is_checked_once_for_the_image_a_memory_reload_leaves(
    root: Path, clock: MockTime,
) -> None:
    from kdumpd.capacity import Capacity
    from kdumpd.capacity_watch import CapacityWatch

    rig = Proven(root, clock)
    seen: list[tuple[int, str | None]] = []

    def capacity(hardware: object, cmdline: str | None) -> Capacity:
        seen.append((rig.loads(), cmdline))
        return Capacity(0, 0, "none")

    rig.controller.capacity = CapacityWatch(capacity)
    rig.controller.start(clock())
    rig.hotplug("memory", "memory9", "add", "online")
    rig.settle()
    assert rig.loads() == 1
    assert [loads for loads, _ in seen] == [1]  # after the load, not before it
    assert seen[0][1] == rig.controller.header.last.loaded_cmdline  # type: ignore[union-attr]
