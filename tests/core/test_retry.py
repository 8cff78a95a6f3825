"""The retry schedule of a reload that failed for good (kdumpd/retry.py)."""

from __future__ import annotations

from kdumpd.retry import DELAYS_S, RetrySchedule


def test_the_backoff_runs_through_its_delays_then_stays_at_the_last() -> None:
    retry = RetrySchedule()
    assert retry.due_at is None and not retry.is_due(10**9)
    delays = [retry.failed(100.0) for _ in range(len(DELAYS_S) + 2)]
    assert delays == [10.0, 30.0, 60.0, 120.0, 300.0, 300.0, 300.0]
    assert retry.due_at == 400.0


def test_due_from_its_instant_on_and_taken_keeps_the_backoff() -> None:
    retry = RetrySchedule((1.0, 5.0))
    retry.failed(10.0)
    assert not retry.is_due(10.999) and retry.is_due(11.0)
    retry.taken()
    assert retry.due_at is None and not retry.is_due(11.0)
    assert retry.failed(20.0) == 5.0  # the second failure: the next delay


def test_a_success_starts_the_backoff_over() -> None:
    retry = RetrySchedule((1.0, 5.0))
    retry.failed(0.0)
    retry.failed(0.0)
    retry.succeeded()
    assert retry.due_at is None
    assert retry.failed(0.0) == 1.0
