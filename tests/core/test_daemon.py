"""The daemon loop on the real clock with a fake event source and the fake backend.

The loop runs in the main thread (it owns the signal handlers); a driver thread pushes
events and signals. Assertions are on counts and order, never on elapsed time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kdumpd import app
from kdumpd.backends import Backend, BackendError
from kdumpd.backends.fake import FakeBackend
from kdumpd.config import Config, EventsConfig, ReloadConfig, SysfsConfig, load
from kdumpd.control_socket import ControlServer
from kdumpd.controller import Controller
from kdumpd.daemon import Daemon, MetricsFile, Parts
from kdumpd.events import Event
from kdumpd.fakes import fakesysfs
from kdumpd.hardware import read_hardware
from kdumpd.kernel_log import FakeKernelLog
from kdumpd.looptime import RealTime
from kdumpd.metrics import TextFile, gather
from kdumpd.reloader import Reloader
from kdumpd.scheduler import ReloadScheduler
from kdumpd.source import FakeSource
from kdumpd.state import MemoryStore, State
from kdumpd.sysfs import Sysfs

QUIET_S = 0.05


def events(n: int, subsystem: str = "memory") -> list[Event]:
    return [Event(subsystem, "online", f"/devices/system/{subsystem}/{subsystem}{i}")
            for i in range(n)]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class CountingTime(RealTime):
    """The daemon's monotonic clock, counted: an idle loop must not spin."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return super().__call__()


class Harness:
    def __init__(self, root: Path, *, delay_ms: int = 0, fail: int = 0, retries: int = 0,
                 reconfigure: Callable[[], Parts | None] = lambda: None,
                 watchdog_s: float | None = None, backend: Backend | None = None,
                 udev_alive: Callable[[], bool] | None = None,
                 store: MemoryStore | None = None, udev_watch_s: float = 0.05,
                 source_kind: str = "kernel",
                 rules_watch: Callable[[], None] | None = None,
                 rules_watch_s: float = 0.05,
                 kernel_log: FakeKernelLog | None = None,
                 control: ControlServer | None = None,
                 restart_pending: Callable[[], bool] = lambda: False,
                 metrics: Callable[[Harness], MetricsFile] | None = None) -> None:
        self.root = root
        self.sysfs = Sysfs(root)
        self.log = root / "fake.log"
        self.handover = root / "run" / "handles-reload"
        self.source = FakeSource()
        self.source.kind = source_kind
        self.notes: list[str] = []
        self.clock = CountingTime()
        self.store = store or MemoryStore()
        backend = backend or FakeBackend(self.log, self.sysfs, delay_ms=delay_ms, fail=fail)
        parts = Parts(Reloader(backend, self.sysfs, retries), self.sysfs, QUIET_S, 1.0, 30.0,
                      hardware=lambda: read_hardware(root))
        self.controller = Controller(
            ReloadScheduler(QUIET_S, 1.0), self.sysfs.snapshot, store=self.store,
            hardware=parts.hardware, backend=backend, confirm_s=0.01, take_back_s=0.05,
        )
        self.daemon = Daemon(self.controller, self.source, parts, reconfigure=reconfigure,
                             notify=self.notes.append, handover=self.handover,
                             watchdog_s=watchdog_s, udev_alive=udev_alive,
                             udev_watch_s=udev_watch_s, clock=self.clock,
                             rules_watch=rules_watch, rules_watch_s=rules_watch_s,
                             kernel_log=kernel_log, control=control,
                             restart_pending=restart_pending,
                             metrics=None if metrics is None else metrics(self))

    def settled(self) -> bool:
        """Nothing pending, deciding or loading: without new input nothing more happens."""
        scheduler = self.controller.scheduler
        return not (scheduler.has_pending or scheduler.running or self.daemon._worker.busy)

    def ops(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line)["op"] for line in self.log.read_text().splitlines()]

    def run(self, script: Callable[[Harness], None]) -> int:
        failure: list[BaseException] = []

        def drive() -> None:
            try:
                wait_for(lambda: "READY=1" in "".join(self.notes))
                script(self)
            except BaseException as error:  # reported in the main thread
                failure.append(error)
            finally:
                self.daemon.request_stop()

        thread = threading.Thread(target=drive)
        thread.start()
        status = self.daemon.run()
        thread.join()
        if failure:
            raise failure[0]
        return status


def test_a_burst_reloads_once_and_the_unit_protocol_is_followed(root: Path) -> None:
    h = Harness(root)

    def script(h: Harness) -> None:
        assert h.handover.exists()
        h.source.push(events(64))
        wait_for(lambda: h.controller.stats.reloads == 1)
        wait_for(h.settled)

    assert h.run(script) == 0
    assert h.ops() == ["load"]
    assert h.notes[0].startswith("READY=1\nSTATUS=events 0")
    assert "STOPPING=1" in h.notes
    assert any(n.startswith("STATUS=events 64, skipped 0, reloads 1") for n in h.notes)
    assert not h.handover.exists()


def test_a_clean_stop_before_a_restart_leaves_the_handover_file(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd has a start queued (a restart, an upgrade): no event reaches the
    # distribution's rules between this kdumpd and the next.
    asked: list[bool] = []
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(root / "run"))  # as the unit sets it

    def pending() -> bool:
        asked.append(True)
        return True

    h = Harness(root, restart_pending=pending)
    assert h.run(lambda h: None) == 0
    assert h.handover.exists() and h.daemon.restarting and asked == [True]
    h = Harness(root, restart_pending=lambda: False)
    assert h.run(lambda h: None) == 0
    assert not h.handover.exists() and not h.daemon.restarting  # a stop: reloads go back


def test_a_final_stop_removes_the_metrics_file_and_a_restart_keeps_it(
        root: Path, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    directory = tmp_path / "textfile"
    directory.mkdir(mode=0o755)
    prom = directory / "kdumpd.prom"

    def harness(pending: bool) -> Harness:
        return Harness(root, restart_pending=lambda: pending, metrics=lambda h: TextFile(
            directory, lambda: gather(h.controller.knowledge(), h.sysfs, h.controller.hardware),
            owner=os.geteuid()))

    assert harness(pending=True).run(lambda h: None) == 0
    assert prom.exists()  # the next kdumpd writes it again at once
    h = harness(pending=False)
    assert h.run(lambda h: None) == 0
    assert not prom.exists()  # the node exporter serves nothing for a stopped kdumpd


def test_a_failed_exit_gives_reloads_back_even_before_a_restart(root: Path) -> None:
    store = MemoryStore()
    h = Harness(root, fail=99, store=store, restart_pending=lambda: True)

    def script(h: Harness) -> None:
        h.source.push(events(1))
        wait_for(lambda: h.controller.stats.failed >= 1)

    status = h.run(script)
    assert status != 0 and not h.handover.exists() and not h.daemon.restarting


def test_events_arriving_during_a_reload_give_exactly_one_follow_up(root: Path) -> None:
    h = Harness(root, delay_ms=200)

    def script(h: Harness) -> None:
        h.source.push(events(10))
        wait_for(lambda: h.controller.scheduler.running)
        for _ in range(5):
            h.source.push(events(20))
            time.sleep(0.02)
        wait_for(lambda: h.controller.stats.reloads == 2)
        wait_for(h.settled)

    h.run(script)
    assert h.ops() == ["load"] * 2


def test_sigterm_during_a_reload_lets_it_finish(root: Path) -> None:
    h = Harness(root, delay_ms=300)

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.controller.scheduler.running)
        os.kill(os.getpid(), signal.SIGTERM)

    assert h.run(script) == 0
    assert h.ops() == ["load"]
    assert h.controller.stats.reloads == 1
    assert not h.handover.exists()


def test_a_reload_that_lost_the_crash_kernel_is_owed_on_the_next_burst(root: Path) -> None:
    h = Harness(root, fail=1)

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.controller.stats.failed == 1)
        wait_for(lambda: not h.handover.exists())  # handed back (the loop syncs it next)
        assert h.controller.owing.owed
        h.source.push(events(3))
        wait_for(lambda: h.controller.stats.reloads == 1)
        wait_for(h.handover.exists)  # taken back after its own reload worked

    h.run(script)
    assert not h.controller.owing.owed
    assert not h.handover.exists()


def test_socket_overflow_recreates_the_source_and_resyncs(root: Path) -> None:
    h = Harness(root)

    def script(h: Harness) -> None:
        h.source.overflow()
        wait_for(lambda: h.controller.stats.reloads == 1)

    h.run(script)
    assert h.source.reopened == 1
    assert h.controller.stats.lost == 1
    assert h.ops() == ["load"]


def test_any_socket_error_recreates_the_source_instead_of_ending_the_daemon(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(root)

    def script(h: Harness) -> None:
        h.source.overflow(OSError("Error while polling fd: 3"))
        wait_for(lambda: h.controller.stats.reloads == 1)
        h.source.push(events(2))
        wait_for(lambda: h.controller.stats.events == 2)

    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert h.run(script) == 0
    assert h.source.reopened == 1
    assert any("event socket failed (Error while polling fd: 3)" in r.getMessage()
               for r in caplog.records)


def test_watchdog_is_petted(root: Path) -> None:
    h = Harness(root, watchdog_s=0.05)
    h.run(lambda h: wait_for(lambda: h.notes.count("WATCHDOG=1") >= 3))
    assert h.notes.count("WATCHDOG=1") >= 3


def test_sighup_with_a_broken_config_keeps_the_old_one(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_text("[events]\nquiet_ms = 10\n")
    h = Harness(root, reconfigure=app.reloading_config(path, lambda cfg: None, load, Config()))

    def script(h: Harness) -> None:
        path.write_text("[events]\nquiet_ms = 'soon'\n")
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: any("not reloaded" in r.getMessage() for r in caplog.records))
        h.source.push(events(5))
        wait_for(lambda: h.controller.stats.reloads == 1)

    with caplog.at_level(logging.INFO, logger="kdumpd"):
        h.run(script)
    assert h.controller.scheduler.quiet_s == QUIET_S
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "events.quiet_ms: expected an integer, got a string" in error.getMessage()


def test_sighup_applies_a_valid_new_config(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "kdumpd.toml"
    cfg = Config(events=EventsConfig(quiet_ms=20, max_delay_ms=500),
                 reload=ReloadConfig(backend="fake"))
    path.write_text(
        f'[sysfs]\nroot = "{root}"\n[events]\nquiet_ms = 20\nmax_delay_ms = 500\n'
        f'[reload]\nbackend = "fake"\n[reload.fake]\nlog = "{root}/fake.log"\n'
    )
    h = Harness(root, reconfigure=app.reloading_config(path, lambda cfg: None, load,
                                                          Config(sysfs=SysfsConfig(root))))

    def script(h: Harness) -> None:
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: h.controller.scheduler.quiet_s == 0.02)

    h.run(script)
    assert h.controller.scheduler.max_delay_s == cfg.events.max_delay_ms / 1000


def test_skipped_burst_writes_nothing(root: Path) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    h = Harness(root)

    def script(h: Harness) -> None:
        h.source.push(events(64) + events(2, "cpu"))
        wait_for(lambda: h.controller.stats.skipped == 66)

    h.run(script)
    assert h.ops() == []
    decision = h.controller.last_decision
    assert decision is not None
    assert "kernel updates the elfcorehdr" in decision.reason


class BrokenBackend:
    """A backend that fails before touching the image and whose probe says so."""

    name = "broken"

    def __init__(self) -> None:
        self.reloads = 0
        self.problem: str | None = "kexec: command not found"
        self.raise_error: Exception | None = None

    def reload(self) -> None:
        self.reloads += 1
        if self.raise_error is not None:
            raise self.raise_error
        if self.problem:
            raise BackendError(self.problem)

    def probe(self) -> str | None:
        return self.problem

    last_command = ""


    def describe(self) -> str:
        return "broken"


def test_handed_back_reloads_stop_until_the_backend_works_again(root: Path) -> None:
    backend = BrokenBackend()
    h = Harness(root, backend=backend)
    seen: list[tuple[bool, int]] = []

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.controller.stats.failed == 1)
        wait_for(lambda: not h.handover.exists())
        seen.append((False, backend.reloads))
        h.source.push(events(3))  # the distribution's rules react: kdumpd must not
        wait_for(lambda: h.controller.stats.skipped == 3)
        seen.append((h.handover.exists(), backend.reloads))
        backend.problem = None  # fixed: the next burst is kdumpd's again
        h.source.push(events(3))
        wait_for(lambda: h.controller.stats.reloads == 1)
        wait_for(h.handover.exists)
        seen.append((True, backend.reloads))

    h.run(script)
    assert seen == [(False, 1), (False, 1), (True, 2)]
    assert h.sysfs.crash_loaded().text == "1"
    assert not h.controller.owing.owed


def test_a_worker_that_raises_is_a_failed_reload_and_the_daemon_stays_healthy(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = BrokenBackend()
    backend.problem = None
    backend.raise_error = RuntimeError("a bug")
    h = Harness(root, backend=backend)

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.controller.stats.failed == 1)
        backend.raise_error = None
        h.source.push(events(3))
        wait_for(lambda: h.controller.stats.reloads == 1)

    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert h.run(script) == 0
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


def test_sigterm_with_an_owed_crash_kernel_makes_one_last_attempt(root: Path) -> None:
    h = Harness(root, fail=1, retries=5)  # would retry for 31 s; SIGTERM cuts the wait

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.ops() == ["load"])  # failed: nothing loaded, backoff wait
        os.kill(os.getpid(), signal.SIGTERM)

    assert h.run(script) == 0
    assert h.ops() == ["load", "load"]
    assert h.sysfs.crash_loaded().text == "1"
    assert h.store.state is not None and not h.store.state.owed


def test_sigterm_exits_non_zero_when_the_last_attempt_fails_and_the_debt_is_kept(
    root: Path
) -> None:
    h = Harness(root, fail=10, retries=5)

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.ops() == ["load"])
        os.kill(os.getpid(), signal.SIGTERM)

    assert h.run(script) == 1
    assert h.ops() == ["load", "load"]
    assert h.store.state is not None and h.store.state.owed


def test_a_start_with_an_owed_crash_kernel_restores_it_without_an_event(root: Path) -> None:
    fakesysfs.build(root, crash_loaded="0")
    h = Harness(root, store=MemoryStore(State("boot-1", owed=True)))

    def script(h: Harness) -> None:
        wait_for(lambda: h.controller.stats.reloads == 1)

    h.run(script)
    assert h.ops() == ["load"]
    assert h.store.state is not None and not h.store.state.owed


def test_sighup_that_changes_a_restart_only_key_is_refused_by_name(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_text(f'[sysfs]\nroot = "{root}"\n[rule]\nhandover = "/run/elsewhere"\n'
                    "[events]\nquiet_ms = 20\n")
    converged: list[Config] = []
    h = Harness(root, reconfigure=app.reloading_config(path, converged.append, load,
                                                       Config(sysfs=SysfsConfig(root))))

    def script(h: Harness) -> None:
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: any("not reloaded" in r.getMessage() for r in caplog.records))

    with caplog.at_level(logging.INFO, logger="kdumpd"):
        h.run(script)
    assert converged == []  # the rules were not moved to the new hand-over path either
    assert h.controller.scheduler.quiet_s == QUIET_S
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "rule.handover changed; restart kdumpd to apply it" in error.getMessage()


def test_sighup_says_what_changed_and_reopens_a_changed_source(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_text(f'[sysfs]\nroot = "{root}"\n[events]\nsource = "kernel"\nquiet_ms = 20\n')
    h = Harness(root, reconfigure=app.reloading_config(path, lambda cfg: None, load,
                                                       Config(sysfs=SysfsConfig(root))))

    def script(h: Harness) -> None:
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: h.source.reopened == 1)

    with caplog.at_level(logging.INFO, logger="kdumpd"):
        h.run(script)
    text = caplog.text
    assert "events.source 'auto' -> 'kernel'" in text and "events.quiet_ms 50 -> 20" in text
    assert h.source.kind == "kernel"


def test_udevd_going_away_and_coming_back_switches_the_auto_source_and_resyncs(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alive = [True]
    h = Harness(root, udev_alive=lambda: alive[0], source_kind="udev")  # udevd answered
    h.daemon.parts = dataclasses.replace(h.daemon.parts, source="auto")

    def script(h: Harness) -> None:
        alive[0] = False
        wait_for(lambda: h.source.kind == "kernel")
        wait_for(lambda: h.controller.stats.reloads == 1)  # the resync found crash_hotplug=0
        alive[0] = True
        wait_for(lambda: h.source.kind == "udev")

    with caplog.at_level(logging.INFO, logger="kdumpd"):
        h.run(script)
    assert "udevd stopped answering: listening for kernel events now" in caplog.text
    assert "udevd answers again: listening for udev events now" in caplog.text
    assert h.source.reopened == 2


def test_a_handover_file_that_cannot_be_written_safely_refuses_the_start(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    h = Harness(root)
    h.handover.parent.mkdir(parents=True, exist_ok=True)
    h.handover.symlink_to(victim)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        # Refused at start: the distribution's rules would reload beside kdumpd.
        assert h.daemon.run() == 73
    assert victim.read_text() == "precious\n"
    assert h.handover.is_symlink()  # not ours: left alone
    assert "cannot create hand-over file" in caplog.text
    assert "not starting ([rule] handover)" in caplog.text
    assert "READY=1" not in "".join(h.notes) and h.ops() == []


def test_the_watchdog_is_petted_while_a_stop_waits_for_a_long_load(root: Path) -> None:
    h = Harness(root, delay_ms=600, watchdog_s=0.1)

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.controller.scheduler.running)
        h.notes.clear()  # count only what comes during the stop
        os.kill(os.getpid(), signal.SIGTERM)

    assert h.run(script) == 0
    stopping = h.notes.index("STOPPING=1")
    assert h.notes[stopping + 1:].count("WATCHDOG=1") >= 3  # about every 50 ms for 0.6 s
    assert h.ops() == ["load"]


@pytest.mark.parametrize("watchdog_s", [None, 30.0])
def test_an_idle_daemon_sleeps_instead_of_spinning(root: Path, watchdog_s: float | None) -> None:
    # Found by the benchmark: a timer that was off still counted as due, and the loop
    # spun at full CPU between events.
    h = Harness(root, udev_alive=lambda: True, udev_watch_s=10.0, watchdog_s=watchdog_s,
                rules_watch=lambda: None, rules_watch_s=10.0)

    def script(h: Harness) -> None:
        before = h.clock.reads
        time.sleep(0.5)
        h.idle_reads = h.clock.reads - before  # type: ignore[attr-defined]

    h.run(script)
    assert h.idle_reads < 20  # type: ignore[attr-defined]


def test_an_event_socket_that_cannot_be_reopened_stops_the_daemon_with_69(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(root)

    def broken_reopen(kind: str | None = None, receive_buffer: int | None = None) -> None:
        raise OSError(24, "Too many open files")

    h.source.reopen = broken_reopen  # type: ignore[method-assign]

    def script(h: Harness) -> None:
        h.source.overflow()
        wait_for(lambda: h.daemon._stop_requested)

    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert h.run(script) == 69
    assert "cannot reopen the event socket" in caplog.text


def test_the_rules_watch_runs_on_its_timer_while_idle(root: Path) -> None:
    """The runtime rule is re-applied from the loop (SUSE rewrites its /run copy)."""
    looks: list[float] = []
    h = Harness(root, rules_watch=lambda: looks.append(time.monotonic()), rules_watch_s=0.05)

    def script(h: Harness) -> None:
        wait_for(lambda: len(looks) >= 4)

    h.run(script)
    gaps = [b - a for a, b in zip(looks, looks[1:])]
    assert min(gaps) >= 0.04  # on its timer, not on every turn of the loop


SKIP = "crash hp: kexec_trylock() failed, kdump image may be inaccurate"


def test_a_skip_in_the_kernel_log_reloads_an_image_the_kernel_keeps_current(
    root: Path,
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    kernel = FakeKernelLog(earlier=["Linux version 6.12", "crash hp: updated elfcorehdr"])
    h = Harness(root, kernel_log=kernel)

    def script(h: Harness) -> None:
        h.source.push(events(3))  # the kernel keeps the image current: no reload
        wait_for(lambda: h.controller.stats.skipped == 3)
        kernel.push("crash hp: hp_action 1, cpu 2")
        kernel.push(SKIP)
        wait_for(lambda: h.controller.stats.reloads == 1)

    assert h.run(script) == 0
    assert h.ops() == ["load"]
