"""The daemon's parts alone: hand-over file, reload worker, source supervisor, loop time."""

from __future__ import annotations

import logging
import os
import selectors
import threading
from pathlib import Path

import pytest

from kdumpd.backends import BackendError
from kdumpd.backends.fake import FakeBackend
from kdumpd.controller import Controller
from kdumpd.fakes.clock import MockTime, Stalled
from kdumpd.handover import Handover
from kdumpd.hardware import read_hardware
from kdumpd.reload_worker import ReloadWorker
from kdumpd.reloader import Reloader
from kdumpd.scheduler import Burst, ReloadScheduler
from kdumpd.source import FakeSource
from kdumpd.source_supervisor import EXIT_NO_SOURCE, SourceSupervisor
from kdumpd.state import MemoryStore
from kdumpd.sysfs import Sysfs


def test_the_handover_file_holds_the_pid_and_goes_away(tmp_path: Path) -> None:
    handover = Handover(tmp_path / "run" / "handles-reload")
    handover.hold(True)
    assert handover.held and (tmp_path / "run/handles-reload").read_text() == f"{os.getpid()}\n"
    handover.hold(False)
    assert not handover.held and not (tmp_path / "run/handles-reload").exists()
    Handover(None).hold(True)  # dry run: nothing to write, nothing raised


def test_a_handover_file_stays_at_exit_only_for_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "run" / "handles-reload"
    kept = Handover(path, runtime_dirs=f"/elsewhere:{tmp_path / 'run'}")
    kept.hold(True)
    kept.exit(restarting=True)
    assert path.exists()  # the next kdumpd takes it over: no event for the rules meanwhile
    stopped = Handover(path)
    stopped.hold(True)
    stopped.exit(restarting=False)
    assert not path.exists()
    released = Handover(path)
    released.hold(True)
    released.hold(False)  # handed back to the distribution's rules while running...
    path.write_text("left by someone\n")
    released.exit(restarting=False)  # ...so the exit does not touch what it no longer holds
    assert path.read_text() == "left by someone\n"


@pytest.mark.parametrize("runtime_dirs", ["", "relative/run", "/run/other", "/run/kdumpd-x"])
def test_a_handover_file_outside_the_runtime_directory_goes_even_for_a_restart(
        tmp_path: Path, runtime_dirs: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run" / "kdumpd" / "handles-reload"
    prefix = str(tmp_path) if runtime_dirs.startswith("/") else ""
    handover = Handover(path, runtime_dirs=prefix + runtime_dirs)
    handover.hold(True)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        handover.exit(restarting=True)  # the queued start may never come
    assert not path.exists()
    assert "is not under the unit's $RUNTIME_DIRECTORY" in caplog.text


def test_a_handover_file_in_a_subdirectory_of_the_runtime_directory_stays(
        tmp_path: Path) -> None:
    path = tmp_path / "run" / "kdumpd" / "sub" / "handles-reload"
    handover = Handover(path, runtime_dirs=str(tmp_path / "run" / "kdumpd"))
    handover.hold(True)
    handover.exit(restarting=True)
    assert path.exists()


def test_a_handover_file_that_cannot_be_written_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "run").write_text("a file where the directory should be")
    handover = Handover(tmp_path / "run" / "handles-reload")
    with caplog.at_level(logging.ERROR, logger="kdumpd"):
        assert handover.hold(True) is False
        handover.follow(handed_back=False)  # the loop tries again on its next turn
    assert not handover.held  # what the rules see: no file; tried again until it is there
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1  # once per reason, not once per turn
    assert said[0].startswith(f"cannot create hand-over file {tmp_path}/run/handles-reload: ")
    (tmp_path / "run").unlink()
    (tmp_path / "run").mkdir()
    handover.follow(handed_back=False)
    assert handover.held and (tmp_path / "run" / "handles-reload").exists()


class Raising:
    name = "raising"

    def reload(self) -> None:
        raise ZeroDivisionError("a bug")

    last_command = ""


    def describe(self) -> str:
        return "raising"


def burst() -> Burst:
    return Burst(1, frozenset({"memory"}), None, None, 1000.0)


def wait_for_outcome(worker: ReloadWorker) -> list[object]:
    worker.join(30)
    return list(worker.outcomes())


def test_a_worker_turns_an_exception_into_a_failed_outcome(root: Path) -> None:
    woken = threading.Event()
    worker = ReloadWorker(woken.set)
    worker.start(burst(), Reloader(Raising(), Sysfs(root), 0), Sysfs(root))  # type: ignore[arg-type]
    assert worker.busy
    ((finished, outcome),) = wait_for_outcome(worker)  # type: ignore[misc]
    assert woken.is_set() and not worker.busy
    assert not outcome.ok and "ZeroDivisionError" in outcome.error


def test_a_worker_runs_one_reload_at_a_time(root: Path) -> None:
    sysfs = Sysfs(root)
    gate = threading.Event()
    backend = FakeBackend(root / "fake.log", sysfs, delay_ms=1, sleep=lambda _: gate.wait(30))
    worker = ReloadWorker(lambda: None)
    worker.start(burst(), Reloader(backend, sysfs, 0), sysfs)
    with pytest.raises(RuntimeError, match="already running"):
        worker.start(burst(), Reloader(backend, sysfs, 0), sysfs)
    gate.set()
    ((_, outcome),) = wait_for_outcome(worker)  # type: ignore[misc]
    assert outcome.ok  # type: ignore[attr-defined]


def test_a_one_attempt_worker_does_not_retry(root: Path) -> None:
    class Failing(Raising):
        calls = 0

        def reload(self) -> None:
            Failing.calls += 1
            raise BackendError("no")

    sysfs = Sysfs(root)
    worker = ReloadWorker(lambda: None)
    worker.start(burst(), Reloader(Failing(), sysfs, 5), sysfs, retries=False)  # type: ignore[arg-type]
    ((_, outcome),) = wait_for_outcome(worker)  # type: ignore[misc]
    assert Failing.calls == 1 and not outcome.ok  # type: ignore[attr-defined]


def supervisor(root: Path, alive: list[bool], setting: str,
               fatal: list[int]) -> tuple[SourceSupervisor, FakeSource, Controller]:
    sysfs = Sysfs(root)
    controller = Controller(
        ReloadScheduler(0.05, 1.0), sysfs.snapshot, store=MemoryStore(),
        hardware=lambda: read_hardware(root),
        backend=FakeBackend(root / "fake.log", sysfs),
    )
    source = FakeSource()
    source.kind = "udev"
    return (SourceSupervisor(source, controller, lambda: 1000.0, setting=setting,
                             receive_buffer_bytes=1 << 20, udev_alive=lambda: alive[0],
                             on_fatal=fatal.append), source, controller)


def test_udevd_must_miss_two_asks_before_the_source_switches(root: Path) -> None:
    alive, fatal = [True], []
    sources, source, controller = supervisor(root, alive, "auto", fatal)
    alive[0] = False
    sources.watch_udev()
    assert source.reopened == 0  # one answer can be wrong
    sources.watch_udev()
    assert (source.reopened, source.kind) == (1, "kernel")
    assert controller.deadline() is not None  # what was missed is decided
    alive[0] = True
    sources.watch_udev()
    alive[0] = False
    sources.watch_udev()  # a flicker: back to the same answer resets the count
    assert source.reopened == 1
    assert fatal == []


def test_with_source_udev_a_gone_udevd_is_an_error_and_no_switch(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alive, fatal = [True], []
    sources, source, _ = supervisor(root, alive, "udev", fatal)
    alive[0] = False
    with caplog.at_level(logging.ERROR, logger="kdumpd"):
        sources.watch_udev()
        sources.watch_udev()
    assert source.reopened == 0
    assert "no events reach kdumpd until it is back" in caplog.text


def test_unchanged_settings_do_not_reopen_and_changed_ones_do(root: Path) -> None:
    alive, fatal = [True], []
    sources, source, _ = supervisor(root, alive, "auto", fatal)
    sources.configure("auto", 1 << 20)
    assert source.reopened == 0
    sources.configure("auto", 1 << 21)
    assert source.reopened == 1


def test_a_source_that_cannot_be_reopened_is_fatal_with_69(root: Path) -> None:
    alive, fatal = [True], []
    sources, source, _ = supervisor(root, alive, "auto", fatal)

    def broken(kind: str | None = None, receive_buffer: int | None = None) -> None:
        raise OSError(24, "Too many open files")

    source.reopen = broken  # type: ignore[method-assign]
    source.overflow()
    sources.drain()
    assert fatal == [EXIT_NO_SOURCE] == [69]


def test_mock_time_runs_actions_in_order_at_their_times() -> None:
    clock = MockTime(0.0)
    seen: list[tuple[str, float]] = []
    clock.at(2.0, lambda: seen.append(("b", clock())))
    clock.at(1.0, lambda: seen.append(("a", clock())))
    clock.at(2.0, lambda: seen.append(("c", clock())))
    clock.sleep(5.0)
    assert seen == [("a", 1.0), ("b", 2.0), ("c", 2.0)] and clock() == 5.0


def test_mock_time_jumps_to_the_earlier_of_timeout_and_action() -> None:
    clock = MockTime(0.0)
    with selectors.DefaultSelector() as selector:
        r, w = os.pipe()
        selector.register(r, selectors.EVENT_READ)
        clock.at(3.0, lambda: os.write(w, b"x"))
        assert clock.select(selector, 1.0, thread_busy=False) == [] and clock() == 1.0
        assert len(clock.select(selector, 10.0, thread_busy=False)) == 1 and clock() == 3.0
        os.read(r, 1)
        with pytest.raises(Stalled):
            clock.select(selector, None, thread_busy=False)
        os.close(r)
        os.close(w)
