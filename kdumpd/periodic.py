"""The daemon loop's timers: jobs that run every so often (the watchdog, udevd's liveness,
the rules files, the metrics file, a followed file of kernel messages).

Pure bookkeeping on the loop's clock (looptime.py): the loop asks which jobs are due,
runs them through :meth:`Periodic.run_due`, and sleeps until the earliest next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Job:
    every: Callable[[], float | None]  # seconds between runs; None: off for now
    run: Callable[[], None]
    next_at: float
    from_end: bool = True  # count the next run from when this one ended (else began)


class Periodic:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._jobs: list[Job] = []

    def add(self, every: Callable[[], float | None], run: Callable[[], None], *,
            first_in: float = 0.0, from_end: bool = True) -> Job:
        job = Job(every, run, self._clock() + first_in, from_end)
        self._jobs.append(job)
        return job

    def run_due(self, now: float) -> list[float]:
        """Run every job that is on and due at ``now``; return when each job that is on
        is due next."""
        upcoming = []
        for job in self._jobs:
            every = job.every()
            if every is None:
                continue
            if now >= job.next_at:
                job.run()
                job.next_at = (self._clock() if job.from_end else now) + every
            upcoming.append(job.next_at)
        return upcoming
