"""The daemon's signals during `kdumpd run`'s start-up, before the event loop handles them.

Reading the configuration, applying the udev rules, opening the event socket and looking
back in the journal take about 0.1 s (more on a busy host); a SIGTERM, SIGHUP or SIGUSR1
then used to meet Python's default action and end kdumpd without a word (issue 30,
item 6). :class:`StartupSignals` is installed first thing (kdumpd/launch.py, before the
rest of kdumpd is imported) and only records what arrives; the daemon takes the record
when its own handlers are in place (Daemon.run) and acts on it then.

Only what runs before Python reaches launch.py (the interpreter's own start, some 10 to
20 ms) is left to the default action.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class StartupSignals:
    """Records SIGTERM, SIGINT, SIGHUP and SIGUSR1 until :meth:`take` hands them over."""

    def __init__(self) -> None:
        self._received: list[int] = []
        self._previous: dict[int, object] = {}

    def catch(self) -> StartupSignals:
        """Install the recording handlers (main thread only); returns self."""
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def release(self) -> None:
        """Put back the handlers :meth:`catch` replaced (a test's process lives on)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]  # what signal() gave
        self._previous.clear()

    def take(self) -> tuple[int, ...]:
        """The signals received so far, in order, each once; the record is emptied."""
        taken = tuple(dict.fromkeys(self._received))
        self._received.clear()
        return taken

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self._received.append(signum)


def name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    return signal.Signals(signum).name


def meaning(signum: int) -> str:
    """What a signal that arrived during start-up does once the loop runs."""
    if signum == signal.SIGHUP:
        return "the configuration is read again once the loop runs"
    if signum == signal.SIGUSR1:
        return "a decision is made at the start anyway"
    return "stopping before serving"
