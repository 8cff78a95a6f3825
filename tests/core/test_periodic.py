"""The loop's timers (periodic.py) on a fake clock."""

from __future__ import annotations

from kdumpd.fakes.clock import MockTime
from kdumpd.periodic import Periodic


def test_jobs_run_when_due_and_say_when_they_are_due_next(clock: MockTime) -> None:
    runs: list[tuple[str, float]] = []
    on = [True]
    jobs = Periodic(clock)
    start = clock()

    def slow() -> None:
        runs.append(("slow", clock()))
        clock.advance(0.5)  # a job that takes time: the next run counts from its end

    jobs.add(lambda: 2.0, slow)
    jobs.add(lambda: 1.0, lambda: runs.append(("beat", clock())), first_in=1.0,
             from_end=False)
    jobs.add(lambda: 3.0 if on[0] else None, lambda: runs.append(("maybe", clock())))
    assert jobs.run_due(start) == [start + 2.5, start + 1.0, start + 3.5]
    assert runs == [("slow", start), ("maybe", start + 0.5)]
    on[0] = False
    clock.advance_to(start + 1.0)
    assert jobs.run_due(clock()) == [start + 2.5, start + 2.0]  # the third is off
    assert runs[-1] == ("beat", start + 1.0)
    assert jobs.run_due(clock()) == [start + 2.5, start + 2.0]  # nothing due twice
    assert len(runs) == 3
