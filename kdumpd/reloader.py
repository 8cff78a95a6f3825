"""One reload with retries and backoff, and what came of it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from kdumpd.backends import Backend, BackendError
from kdumpd.sysfs import Sysfs, Value

log = logging.getLogger("kdumpd")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    attempts: int
    duration_s: float  # from the start of the first attempt to the end of the last
    error: str  # the last attempt's error, "" when ok
    crash_loaded: Value  # kexec_crash_loaded read after the reload


def log_retry(attempt: int, error: str, delay_s: float) -> None:
    """The default ``on_retry``: one warning per failed attempt that will be retried."""
    log.warning("reload attempt %d failed: %s; retrying in %.0f s", attempt, error, delay_s)


def backoff_delays(retries: int) -> list[float]:
    """Seconds to wait before retry 1..retries: 1, 2, 4, ... capped at 30."""
    return [min(BACKOFF_FIRST_S * 2**i, BACKOFF_MAX_S) for i in range(retries)]


class Reloader:
    def __init__(
        self,
        backend: Backend,
        sysfs: Sysfs,
        retries: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float], bool] = lambda event, s: event.wait(s),
    ) -> None:
        """``sleep`` waits between attempts; ``wait(cancel, s)`` does when a ``cancel`` is
        given, returning early (True) once it is set. Both are real time unless injected."""
        self.backend = backend
        self._sysfs = sysfs
        self._delays = backoff_delays(retries)
        self._sleep = sleep
        self._clock = clock
        self._wait = wait

    def reload(
        self,
        on_retry: Callable[[int, str, float], None] = log_retry,
        cancel: threading.Event | None = None,
    ) -> Outcome:
        """Run the backend until it succeeds, the retries are used up or ``cancel`` is set.

        ``on_retry(attempt, error, delay_s)`` is called before each retry (for logging).
        A running attempt is never interrupted; ``cancel`` ends the wait before the next.
        """
        started = self._clock()
        delays = iter(self._delays)
        attempts = 0
        while True:
            attempts += 1
            try:
                self.backend.reload()
            except BackendError as failure:
                error = str(failure)
                if failure.permanent:
                    break
            except Exception as failure:  # a bug must not wedge the daemon: a failed attempt
                log.exception("reload attempt %d raised", attempts)
                error = f"internal error: {type(failure).__name__}: {failure}"
            else:
                duration = self._clock() - started
                return Outcome(True, attempts, duration, "", self._sysfs.settled_crash_loaded())
            delay = next(delays, None)
            if delay is None or (cancel is not None and cancel.is_set()):
                break
            on_retry(attempts, error, delay)
            if cancel is not None:
                if self._wait(cancel, delay):
                    break
            else:
                self._sleep(delay)
        return Outcome(False, attempts, self._clock() - started, error,
                       self._sysfs.settled_crash_loaded())
