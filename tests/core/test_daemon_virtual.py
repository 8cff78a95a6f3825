"""The whole daemon loop on virtual time (fakes.clock.MockTime, autojumping).

Events, kernel messages and the stop are scripted at virtual times; the loop jumps from
deadline to deadline, a load takes virtual time (the fake backend sleeps on the same
clock), and each test asserts exact counts at exact virtual times in milliseconds of wall
time. The threading itself (a reload thread beside the loop, SIGTERM during a load) is
tested on the real clock in test_daemon.py.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from kdumpd.backends.fake import FakeBackend
from kdumpd.control_socket import REQUEST, ControlServer
from kdumpd.controller import Controller
from kdumpd.daemon import Daemon, Parts
from kdumpd.events import Event
from kdumpd.fakes import fakesysfs
from kdumpd.fakes.clock import MockTime, Stalled
from kdumpd.hardware import read_hardware
from kdumpd.kernel_log import FILE_POLL_S, FakeKernelLog, FileKernelLog, KernelLog
from kdumpd.reloader import Reloader
from kdumpd.scheduler import FOLLOW_UP_QUIET_S, ReloadScheduler
from kdumpd.source import FakeSource
from kdumpd.state import FileStore, MemoryStore, Store
from kdumpd.sysfs import Sysfs

QUIET_S = 0.05
T0 = 1000.0
SKIP = "crash hp: kexec_trylock() failed, kdump image may be inaccurate"


def events(n: int, subsystem: str = "memory") -> list[Event]:
    return [Event(subsystem, "online", f"/devices/system/{subsystem}/{subsystem}{i}")
            for i in range(n)]


class TimedMetrics:
    """Records when kdumpd.prom would be written, in virtual seconds after T0."""

    def __init__(self, written: list[float], clock: MockTime) -> None:
        self.written = written
        self.clock = clock

    def write(self) -> None:
        self.written.append(self.clock() - T0)

    def withdraw(self) -> None:
        pass


class Virtual:
    """A daemon whose clock, loads and re-reads all run on one MockTime."""

    def __init__(self, root: Path, *, load_s: float = 0.0, fail: int = 0, retries: int = 0,
                 udev_alive: list[bool] | None = None, kernel_log: KernelLog | None = None,
                 watchdog_s: float | None = None,
                 metrics: list[float] | None = None,
                 control: ControlServer | None = None,
                 store: Store | None = None) -> None:
        self.time = MockTime(T0)
        self.sysfs = Sysfs(root, sleep=self.time.sleep)
        self.log = root / "fake.log"
        self.source = FakeSource()
        self.source.kind = "udev" if udev_alive else "kernel"
        self.notes: list[str] = []
        backend = FakeBackend(self.log, self.sysfs, delay_ms=int(load_s * 1000), fail=fail,
                              sleep=self.time.sleep, wall=self.time)
        parts = Parts(Reloader(backend, self.sysfs, retries, sleep=self.time.sleep,
                               clock=self.time, wait=self.wait),
                      self.sysfs, QUIET_S, 1.0, 30.0, hardware=lambda: read_hardware(root),
                      source="auto")
        self.controller = Controller(
            ReloadScheduler(QUIET_S, 1.0), self.sysfs.snapshot,
            store=store if store is not None else MemoryStore(),
            hardware=parts.hardware, backend=backend, wall=self.time,
        )
        alive = udev_alive
        self.daemon = Daemon(
            self.controller, self.source, parts, reconfigure=lambda: None,
            notify=self.notes.append, handover=root / "run" / "handles-reload",
            clock=self.time, watchdog_s=watchdog_s,
            udev_alive=(lambda: alive[0]) if alive else None, kernel_log=kernel_log,
            metrics=None if metrics is None else TimedMetrics(metrics, self.time),
            control=control,
        )

    def wait(self, cancel: threading.Event, seconds: float) -> bool:
        """The reloader's wait between attempts, on virtual time."""
        self.time.sleep(seconds)
        return cancel.is_set()

    def at(self, offset: float, action: object) -> None:
        assert callable(action)
        self.time.at(T0 + offset, action)

    def run_until(self, offset: float) -> int:
        self.time.at(T0 + offset, self.daemon.request_stop)
        return self.daemon.run()

    def loads(self) -> list[float]:
        """When each load started, in virtual seconds after T0."""
        if not self.log.exists():
            return []
        return [round(json.loads(line)["t"] - T0, 3)
                for line in self.log.read_text().splitlines()]


def test_a_burst_reloads_once_exactly_one_quiet_window_after_its_last_event(
    root: Path,
) -> None:
    v = Virtual(root)
    v.at(1.0, lambda: v.source.push(events(32)))
    v.at(1.02, lambda: v.source.push(events(32)))
    assert v.run_until(60.0) == 0
    assert v.loads() == [round(1.02 + QUIET_S, 3)]
    assert v.controller.stats.reloads == 1
    assert any(n.startswith("STATUS=events 64, skipped 0, reloads 1") for n in v.notes)
    assert v.time() == T0 + 60.0  # the loop slept through the idle hour in one jump


def test_events_during_a_load_give_exactly_one_follow_up_after_it(root: Path) -> None:
    v = Virtual(root, load_s=2.0)
    v.at(1.0, lambda: v.source.push(events(10)))
    for k in range(5):  # all while the 2 s load runs
        v.at(1.5 + 0.2 * k, lambda: v.source.push(events(20)))
    assert v.run_until(60.0) == 0
    first, follow_up = v.loads()
    assert first == round(1.0 + QUIET_S, 3)
    # After the first load ended, never beside it, and no later than the follow-up's
    # quiet window after it (when the loop stamps events the worker's clock moved past
    # is up to the threads: the window is the tolerance).
    assert first + 2.0 <= follow_up <= first + 2.0 + FOLLOW_UP_QUIET_S
    assert v.controller.stats.reloads == 2


def test_a_failing_load_is_retried_on_its_schedule_until_it_works(root: Path) -> None:
    v = Virtual(root, fail=2, retries=3)
    v.at(1.0, lambda: v.source.push(events(3)))
    assert v.run_until(600.0) == 0
    times = v.loads()
    assert len(times) == 3  # two failures, then the load that works
    assert times == sorted(times) and times[0] == round(1.0 + QUIET_S, 3)
    assert v.controller.stats.reloads == 1
    assert v.sysfs.crash_loaded().text == "1"


def test_a_skip_in_the_kernel_log_reloads_once_even_when_the_kernel_updates(
    root: Path,
) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    kernel = FakeKernelLog()
    v = Virtual(root, kernel_log=kernel)
    v.at(1.0, lambda: v.source.push(events(3)))  # the kernel keeps the image current
    v.at(2.5, lambda: kernel.push(SKIP))  # ...but says it skipped one of them
    assert v.run_until(60.0) == 0
    assert v.controller.stats.skipped == 3
    assert len(v.loads()) == 1 and v.loads()[0] >= 2.5


def test_a_reader_every_second_during_loads_never_makes_a_reload_chain(root: Path) -> None:
    # Issue 29: 2 s loads and a reader of crash_hotplug every second gave 59 loads in
    # 120 s (no crash kernel 98 % of the time). One real skip beside a hotplug gives one
    # reload; the reader's lines during and after it give none.
    fakesysfs.build(root, crash_hotplug="1")
    kernel = FakeKernelLog()
    v = Virtual(root, load_s=2.0, kernel_log=kernel)
    v.at(1.0, lambda: v.source.push(events(4)))
    v.at(1.1, lambda: kernel.push(SKIP))  # someone's load held the lock at the hotplug
    for k in range(119):
        v.at(1.5 + k, lambda: kernel.push(SKIP))  # the reader's line, every second
    assert v.run_until(121.0) == 0
    assert len(v.loads()) == 1
    assert v.controller.stats.failed_reads == 119
    assert v.controller.state.exposure.no_crash_kernel_s <= 2.0 + 1e-6


def test_lines_of_this_boot_before_the_first_start_decide_nothing(root: Path) -> None:
    fakesysfs.build(root, crash_hotplug="1")
    v = Virtual(root, kernel_log=FakeKernelLog(earlier=[SKIP] * 76))
    assert v.run_until(60.0) == 0
    assert v.loads() == []


def test_udevd_gone_for_two_answers_switches_to_the_kernel_and_resyncs_once(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alive = [True]
    v = Virtual(root, udev_alive=alive)
    v.at(10.0, lambda: alive.__setitem__(0, False))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert v.run_until(60.0) == 0
    assert v.source.kind == "kernel" and v.source.reopened == 1
    (load,) = v.loads()
    assert 12.0 <= load <= 16.0  # two unanswered asks, 3 s apart, after 10 s
    assert "udevd stopped answering: listening for kernel events now" in caplog.text


def test_an_idle_daemon_with_a_watchdog_wakes_only_to_pet_it(root: Path) -> None:
    v = Virtual(root, watchdog_s=20.0)
    assert v.run_until(100.0) == 0
    assert v.notes.count("WATCHDOG=1") == 10  # at 0, 10, ..., 90 s (the stop at 100 comes first)
    assert v.loads() == []


def test_a_loop_that_would_wait_for_ever_is_named_not_hung(root: Path) -> None:
    v = Virtual(root)
    with pytest.raises(Stalled, match="nothing is due"):
        v.daemon.run()


def test_metrics_are_written_after_each_decision_and_every_minute(root: Path) -> None:
    written: list[float] = []
    v = Virtual(root, metrics=written)
    v.at(90.0, lambda: v.source.push(events(8)))
    assert v.run_until(150.0) == 0
    (load,) = v.loads()
    times = [round(t, 3) for t in written]
    # At start, each minute while idle, when the burst's events were counted, and right
    # after the decision that reloaded (then the minute starts again).
    assert times == [0.0, 60.0, 90.0, load]


def test_a_followed_file_of_kernel_messages_is_read_on_its_timer(root: Path) -> None:
    # [events] kernel_log = "/path": the seam for demos and fake roots, polled every
    # FILE_POLL_S of virtual time (a regular file is always readable to select()).
    fakesysfs.build(root, crash_hotplug="1")
    kmsg = root / "kmsg"
    kmsg.write_text(f"Linux version 6.12\n{SKIP}\n")  # an earlier line: decides nothing
    followed = FileKernelLog(kmsg)
    v = Virtual(root, kernel_log=followed)

    def line() -> None:
        with kmsg.open("a") as out:
            out.write(SKIP + "\n")

    v.at(1.0, lambda: v.source.push(events(3)))
    v.at(1.2, line)  # next to the events: their update was skipped
    v.at(30.0, line)  # alone: a read of crash_hotplug during someone's load
    assert v.run_until(60.0) == 0
    assert len(v.loads()) == 1 and 1.2 <= v.loads()[0] <= 1.2 + FILE_POLL_S + QUIET_S
    assert v.controller.stats.failed_reads == 1


# -- the control socket never holds the loop ----------------------------------------------


def connect(path: Path, sent: bytes = b"") -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    if sent:
        client.sendall(sent)
    return client


def answer_of(client: socket.socket) -> dict[str, object]:
    client.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = client.recv(4096)
        if not chunk:
            break
        data += chunk
    client.close()
    answer = json.loads(data)
    assert isinstance(answer, dict)
    return answer


def test_silent_control_clients_never_delay_an_event_decision(
        root: Path, tmp_path: Path) -> None:
    path = tmp_path / "control"
    v = Virtual(root, control=ControlServer(path, allowed_uid=os.getuid()))
    silent: list[socket.socket] = []
    v.at(0.5, lambda: silent.extend(connect(path) for _ in range(32)))  # root, never send
    v.at(0.6, lambda: silent.append(connect(path, b"rel")))  # half a line, then nothing
    v.at(1.0, lambda: v.source.push(events(8)))
    started = time.monotonic()
    assert v.run_until(10.0) == 0
    assert time.monotonic() - started < 5.0  # no blocking read (was 1 s per client)
    assert v.loads() == [round(1.0 + QUIET_S, 3)]  # exactly as without them
    answers = [answer_of(client) for client in silent]
    assert all(a["ok"] is False and a["reason"] == "refused: no request within 1 s"
               for a in answers)


def test_32_reloads_at_once_are_one_decision_and_all_answered(
        root: Path, tmp_path: Path) -> None:
    path = tmp_path / "control"
    v = Virtual(root, control=ControlServer(path, allowed_uid=os.getuid()))
    clients: list[socket.socket] = []
    v.at(1.0, lambda: clients.extend(connect(path, REQUEST) for _ in range(32)))
    v.at(1.0, lambda: v.source.push(events(8)))
    started = time.monotonic()
    assert v.run_until(10.0) == 0
    assert time.monotonic() - started < 5.0
    assert v.loads() == [1.0]  # decided at once, over the events too
    answers = [answer_of(client) for client in clients]
    assert len(answers) == 32 and all(a["ok"] is True and a["reload"] is True
                                      for a in answers)


# -- an unwritable state ---------------------------------------------------------------


def test_an_unwritable_state_is_said_and_the_owed_crash_kernel_still_restored(
        root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state_dir = tmp_path / "state"
    (state_dir / "state.json").mkdir(parents=True)  # every write fails (like a full disk)
    store = FileStore(state_dir, "boot-1")
    v = Virtual(root, fail=2, retries=0, store=store)
    v.at(1.0, lambda: v.source.push(events(3)))  # the load fails: no crash kernel left
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert v.run_until(300.0) == 0
    assert len(v.loads()) == 3  # the load, then restores on the retry timer from memory
    assert v.sysfs.crash_loaded().text == "1" and not v.controller.owing.owed
    assert store.problem is not None and store.write_failures >= 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
              and "cannot save state" in r.getMessage()]
    assert len(errors) == 1  # once per reason, however many writes fail
    assert "keeps it in memory" in errors[0]
    assert any("state NOT saved" in n for n in v.notes)  # STATUS=
    known = v.controller.knowledge().as_dict()["state_file"]
    assert known == {"problem": store.problem, "write_failures": store.write_failures}


def test_a_state_that_can_be_written_again_is_written_by_the_retry_timer(
        root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state_dir = tmp_path / "state"
    (state_dir / "state.json").mkdir(parents=True)
    store = FileStore(state_dir, "boot-1")
    v = Virtual(root, store=store)
    v.at(1.0, lambda: v.source.push(events(3)))
    v.at(5.0, (state_dir / "state.json").rmdir)  # the admin repairs it
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert v.run_until(100.0) == 0
    assert store.problem is None
    assert json.loads((state_dir / "state.json").read_text())["fingerprint"]
    assert "state saved to" in caplog.text and "again (after" in caplog.text
    assert not v.controller.stats.state_unsaved
