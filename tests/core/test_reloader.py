from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from kdumpd.backends import BackendError
from kdumpd.fakes.clock import MockTime
from kdumpd.reloader import Reloader, backoff_delays
from kdumpd.sysfs import Sysfs


class Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def reload(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise BackendError(f"attempt {self.calls} failed")

    last_command = ""


    def describe(self) -> str:
        return "flaky"


def test_backoff_doubles_and_is_capped() -> None:
    assert backoff_delays(7) == [1, 2, 4, 8, 16, 30, 30]


def test_retries_with_backoff_until_success(root: Path, clock: MockTime) -> None:
    slept: list[float] = []
    retried: list[tuple[int, str, float]] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.advance(s)

    outcome = Reloader(Flaky(2), Sysfs(root), 3, sleep=sleep, clock=clock).reload(
        on_retry=lambda a, e, d: retried.append((a, e, d)))
    assert outcome.ok
    assert outcome.attempts == 3
    assert slept == [1, 2]
    assert outcome.duration_s == 3
    assert retried == [(1, "attempt 1 failed", 1), (2, "attempt 2 failed", 2)]


def test_gives_up_after_the_retries(root: Path, clock: MockTime) -> None:
    backend = Flaky(100)
    outcome = Reloader(backend, Sysfs(root), 2, sleep=clock.advance, clock=clock).reload()
    assert not outcome.ok
    assert backend.calls == 3
    assert outcome.error == "attempt 3 failed"


def test_a_permanent_failure_is_not_retried(root: Path) -> None:
    class Misconfigured(Flaky):
        def reload(self) -> None:
            self.calls += 1
            raise BackendError("cannot work here", permanent=True)

    backend = Misconfigured(0)
    slept: list[float] = []
    outcome = Reloader(backend, Sysfs(root), 3, sleep=slept.append).reload()
    assert (backend.calls, outcome.attempts, slept) == (1, 1, [])
    assert outcome.error == "cannot work here"


def test_cancel_stops_further_attempts_but_not_the_running_one(root: Path) -> None:
    backend = Flaky(100)
    cancel = threading.Event()
    cancel.set()
    outcome = Reloader(backend, Sysfs(root), 5).reload(cancel=cancel)
    assert backend.calls == 1
    assert not outcome.ok


class Slow(Flaky):
    """Each attempt takes 2 s of the fake clock."""

    def __init__(self, failures: int, clock: MockTime) -> None:
        super().__init__(failures)
        self.clock = clock

    def reload(self) -> None:
        self.clock.advance(2.0)
        super().reload()


def test_outcomes_in_full(root: Path, clock: MockTime) -> None:
    from kdumpd.reloader import Outcome
    from kdumpd.sysfs import Value

    ok = Reloader(Slow(1, clock), Sysfs(root), 2, sleep=clock.advance, clock=clock).reload(
        on_retry=lambda *_: None)
    assert ok == Outcome(True, 2, 5.0, "", Value("1"))  # 2 s, 1 s backoff, 2 s
    failed = Reloader(Slow(9, clock), Sysfs(root), 1, sleep=clock.advance,
                      clock=clock).reload(on_retry=lambda *_: None)
    assert failed == Outcome(False, 2, 5.0, "attempt 2 failed", Value("1"))


def test_an_attempt_that_raises_anything_is_a_failed_attempt_with_its_traceback(
    root: Path, clock: MockTime, caplog: pytest.LogCaptureFixture
) -> None:
    class Buggy(Flaky):
        def reload(self) -> None:
            self.calls += 1
            raise KeyError("oops")

    backend = Buggy(0)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        outcome = Reloader(backend, Sysfs(root), 1, sleep=clock.advance, clock=clock).reload()
    assert not outcome.ok and backend.calls == 2  # retried like any failure
    assert outcome.error == "internal error: KeyError: 'oops'"
    raised = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in raised] == ["reload attempt 1 raised",
                                                "reload attempt 2 raised"]


def test_cancel_ends_the_backoff_wait_at_once(root: Path) -> None:
    cancel = threading.Event()
    waits: list[float] = []

    class Watching(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            cancel.set()
            return True

    outcome = Reloader(Flaky(5), Sysfs(root), 3).reload(on_retry=lambda *_: None,
                                                        cancel=Watching())
    assert outcome.attempts == 1 and waits == [1.0]


def test_the_default_retry_log_names_the_attempt_the_error_and_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from kdumpd.reloader import log_retry

    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        log_retry(2, "exit status 1: busy", 4.0)
    assert caplog.messages == ["reload attempt 2 failed: exit status 1: busy; retrying in 4 s"]
