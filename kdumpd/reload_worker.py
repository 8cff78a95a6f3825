"""Reloads run in a worker thread, so the loop keeps draining the netlink socket while
kexec runs (a storm during a reload must not overflow it).

One reload at a time; its outcome comes back through a queue and a wake-up of the loop.
Whatever the reload raises becomes a failed outcome, never a wedged daemon.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from kdumpd.reloader import Outcome, Reloader
from kdumpd.scheduler import Burst
from kdumpd.sysfs import Sysfs

log = logging.getLogger("kdumpd")


def reload_safely(reloader: Reloader, sysfs: Sysfs, cancel: threading.Event) -> Outcome:
    """One reload; an exception is a failed reload with the crash kernel's state as read."""
    try:
        return reloader.reload(cancel=cancel)
    except Exception as error:
        log.exception("the reload worker raised")
        return Outcome(False, 1, 0.0, f"internal error: {error!r}", sysfs.crash_loaded())


class ReloadWorker:
    """Runs :func:`reload_safely` for one burst at a time in a thread of its own."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._done: queue.SimpleQueue[tuple[Burst, Outcome]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

    @property
    def busy(self) -> bool:
        """A reload was started and its outcome not yet collected."""
        return self._thread is not None

    @property
    def alive(self) -> bool:
        """The reload's thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, burst: Burst, reloader: Reloader, sysfs: Sysfs, *,
              retries: bool = True) -> None:
        """Start the reload for ``burst``; ``retries=False`` makes it one attempt."""
        if self._thread is not None:
            raise RuntimeError("a reload is already running")
        if retries:
            self._cancel.clear()
        else:
            self._cancel.set()

        def work() -> None:
            self._done.put((burst, reload_safely(reloader, sysfs, self._cancel)))
            self._wake()

        self._thread = threading.Thread(target=work, name="kdumpd-reload", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """No further retries for the running reload (its current attempt finishes)."""
        self._cancel.set()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the running reload."""
        if self._thread is not None:
            self._thread.join(timeout)

    def outcomes(self) -> Iterator[tuple[Burst, Outcome]]:
        """The finished reloads' outcomes, each once; the worker is free after one."""
        while True:
            try:
                finished = self._done.get_nowait()
            except queue.Empty:
                return
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            yield finished
