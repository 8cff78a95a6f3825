"""The daemon's event loop: one thread owns the event source, a worker runs reloads.

The main thread never blocks on a reload, so the netlink socket keeps being drained while
kexec runs (a storm during a reload must not overflow it). Signals arrive through a
wakeup socket; SIGTERM while a reload runs lets that reload finish (bounded), SIGHUP
re-reads the configuration and keeps the old one when the new one is broken.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Callable

from kdumpd.controller import REASON_RESTORE, Controller
from kdumpd.events import SUBSYSTEMS
from kdumpd.hardware import Hardware
from kdumpd.kernel_log import KernelLog
from kdumpd.reloader import Outcome, Reloader
from kdumpd.scheduler import Burst
from kdumpd.source import EventsLost, EventSource, resolve_source
from kdumpd.sysfs import Sysfs
from kdumpd.systemd import Notify

log = logging.getLogger("kdumpd")

STATUS_INTERVAL_S = 1.0
UDEV_WATCH_S = 3.0  # how often udevd is asked whether it still answers (2 answers to act)
# How often the udev rules files are looked at (a few stat calls): a distribution that
# rewrites its runtime rules (SUSE's kdump restart) has them without the hand-over this long.
RULES_WATCH_S = 2.0


@dataclass(frozen=True)
class Parts:
    """What the daemon takes from a configuration, rebuilt on SIGHUP."""

    reloader: Reloader
    sysfs: Sysfs
    quiet_s: float
    max_delay_s: float
    stop_wait_s: float  # how long SIGTERM waits for a running reload
    hardware: Callable[[], Hardware]
    source: str = "auto"  # [events] source: "auto", "udev" or "kernel"
    receive_buffer_bytes: int = 128 * 1024 * 1024


def reload_safely(parts: Parts, cancel: threading.Event) -> Outcome:
    """One reload in a worker thread; whatever it raises is a failed reload, never a
    wedged daemon."""
    try:
        return parts.reloader.reload(cancel=cancel)
    except Exception as error:
        log.exception("the reload worker raised")
        return Outcome(False, 1, 0.0, f"internal error: {error!r}", parts.sysfs.crash_loaded())


class Daemon:
    def __init__(
        self,
        controller: Controller,
        source: EventSource,
        parts: Parts,
        *,
        reconfigure: Callable[[], Parts | None],
        notify: Notify,
        handover: Path | None,
        clock: Callable[[], float] = time.monotonic,
        watchdog_s: float | None = None,
        udev_alive: Callable[[], bool] | None = None,
        udev_watch_s: float = UDEV_WATCH_S,
        rules_watch: Callable[[], None] | None = None,
        rules_watch_s: float = RULES_WATCH_S,
        kernel_log: KernelLog | None = None,
    ) -> None:
        self.controller = controller
        self.source = source
        self.parts = parts
        self._reconfigure = reconfigure
        self._notify = notify
        self._handover = handover
        self._clock = clock
        self._watchdog_s = watchdog_s
        self._udev_alive = udev_alive  # None: nothing to watch (tests, the kernel source)
        self._udev_was_alive = source.kind == "udev"
        self._selector: selectors.BaseSelector | None = None
        self._udev_watch_s = udev_watch_s
        self._rules_watch = rules_watch
        self._rules_watch_s = rules_watch_s
        self._kernel_log = kernel_log  # None: the kernel's messages cannot be read
        self._udev_changed_once = False
        self._done: queue.SimpleQueue[tuple[Burst, Outcome]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._cancel = threading.Event()
        self._stop_requested = False
        self._holding_handover = False
        self._hup_requested = False
        self._decide_requested = False
        self._exit_status = 0
        self._stop_deadline = float("inf")
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)

    # -- signals -------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._hup_requested = True
        elif signum == signal.SIGUSR1:
            self._decide_requested = True
        else:
            self._stop_requested = True

    def request_stop(self) -> None:
        """Ask the loop to stop (from any thread), like SIGTERM."""
        self._stop_requested = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: the loop is already due to wake
            self._wake_w.send(b"w")

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or :meth:`request_stop`); returns the exit status."""
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        }
        old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno())
        selector = selectors.DefaultSelector()
        self._selector = selector
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        selector.register(self.source.fileno(), selectors.EVENT_READ, "source")
        status = 0
        try:
            self._set_handover(True)
            self.controller.start(self._clock(), kernel_skips=self._kernel_log_start(selector))
            self._notify("READY=1\nSTATUS=" + self._status())
            log.info("listening for cpu and memory events")
            self._serve(selector)
            self._notify("STOPPING=1")
            # One budget for the whole stop (the unit's TimeoutStopSec is sized for it).
            self._stop_deadline = self._clock() + self.parts.stop_wait_s
            self._finish_running_reload()
            status = self._restore_before_exit() or self._exit_status
        finally:
            self._set_handover(False)
            selector.close()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _serve(self, selector: selectors.BaseSelector) -> None:
        last_status = self._status()
        last_status_at = self._clock()
        next_watchdog = self._clock()
        next_watch = self._clock() + self._udev_watch_s
        next_rules = self._clock() + self._rules_watch_s
        while not self._stop_requested:
            now = self._clock()
            if self._watchdog_s and now >= next_watchdog:
                self._notify("WATCHDOG=1")
                next_watchdog = now + self._watchdog_s / 2
            if self._udev_alive is not None and now >= next_watch:
                self._watch_udev()
                next_watch = now + self._udev_watch_s
            if self._rules_watch is not None and now >= next_rules:
                self._rules_watch()
                next_rules = self._clock() + self._rules_watch_s
            timers = [t for t, on in ((next_watchdog, bool(self._watchdog_s)),
                                      (next_watch, self._udev_alive is not None),
                                      (next_rules, self._rules_watch is not None)) if on]
            timeout = self._timeout(now, timers)
            for key, _ in selector.select(timeout):
                if key.data == "wake":
                    self._drain_wakeups()
                elif key.data == "kernel":
                    self._read_kernel_log(selector)
                else:
                    self._drain_source(selector)
            if self._hup_requested:
                self._hup_requested = False
                self._apply_new_config()
            if self._decide_requested:
                self._decide_requested = False
                log.info("asked to decide now (SIGUSR1, kdumpd reload)")
                self.controller.request(self._clock(), SUBSYSTEMS, "kdumpd reload",
                                        due_now=True)
            self._collect_outcomes()
            self._start_due_reload()
            status = self._status()
            now = self._clock()
            if status != last_status and (now - last_status_at >= STATUS_INTERVAL_S
                                          or self.controller.scheduler.pending == 0):
                self._notify("STATUS=" + status)
                last_status, last_status_at = status, now

    def _timeout(self, now: float, timers: list[float]) -> float | None:
        """How long the loop may sleep: until the next burst, restore or timer is due."""
        deadlines = [d for d in (self.controller.deadline(),) if d is not None] + timers
        if self.controller.scheduler.pending:
            deadlines.append(now + STATUS_INTERVAL_S)  # keep STATUS= moving during a storm
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _kernel_log_start(self, selector: selectors.BaseSelector) -> int:
        """Listen to the kernel's messages; return the skipped header updates this boot
        logged before kdumpd started."""
        if self._kernel_log is None:
            return 0
        try:
            skips, seen = self._kernel_log.lookback()
            selector.register(self._kernel_log.fileno(), selectors.EVENT_READ, "kernel")
        except OSError as error:
            self._lose_kernel_log(f"the journal cannot be read ({error})")
            return 0
        if not seen:
            log.warning("the journal holds no kernel message of this boot (is "
                        "systemd-journald running?): a header update the kernel skips "
                        "cannot be seen until one arrives")
        return skips

    def _read_kernel_log(self, selector: selectors.BaseSelector) -> None:
        if self._kernel_log is None:
            return
        try:
            skips = self._kernel_log.new_skips()
        except OSError as error:
            selector.unregister(self._kernel_log.fileno())
            self._lose_kernel_log(f"reading the journal failed ({error})")
            return
        for message in skips:
            self.controller.on_kernel_skip(self._clock(), message)

    def _lose_kernel_log(self, why: str) -> None:
        log.warning("%s: kdumpd does not see the header updates the kernel skips "
                    "(\"kexec_trylock() failed\")", why)
        if self._kernel_log is not None:
            with contextlib.suppress(OSError):
                self._kernel_log.close()
        self._kernel_log = None

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _drain_source(self, selector: selectors.BaseSelector) -> None:
        try:
            events = self.source.drain()
        except (EventsLost, OSError) as error:
            # Either way events may be gone: start over with a fresh socket and decide
            # as if both subsystems changed.
            if not isinstance(error, EventsLost):
                log.error("event socket failed (%s): recreating it", error)
            self.controller.on_events_lost(self._clock())
            self._swap_source(self.source.kind)
            return
        # Stamp after the drain: a long drain must not close the quiet window early.
        now = self._clock()
        for event in events:
            self.controller.on_event(event, now)

    def _swap_source(self, kind: str) -> None:
        """Reopen the event source (of ``kind``) and keep the selector on its socket.

        If no socket can be opened, kdumpd cannot hear events: it stops (finishing a
        reload in flight) with exit status 69, and Restart= brings it back.
        """
        if self._selector is not None:
            self._selector.unregister(self.source.fileno())
        try:
            self.source.reopen(kind, self.parts.receive_buffer_bytes)
        except OSError as error:
            log.critical("cannot reopen the event socket (%s): stopping", error)
            self._exit_status = 69
            self._stop_requested = True
            return
        if self._selector is not None:
            self._selector.register(self.source.fileno(), selectors.EVENT_READ, "source")

    def _reopen_source(self, why: str, udev_alive: bool | None = None) -> None:
        """Reopen the source as the settings now say, and resync: events may be missed.

        ``udev_alive``: what the caller just learnt; None asks udevd again.
        """
        ask = self._udev_alive or (lambda: False)
        kind = resolve_source(self.parts.source,
                              ask if udev_alive is None else (lambda: udev_alive))
        log.warning("%s: listening for %s events now; deciding over both subsystems", why, kind)
        self._swap_source(kind)
        self.controller.request(self._clock(), SUBSYSTEMS, why, unknown_events=True)

    def _watch_udev(self) -> None:
        """Notice udevd going away or coming back: what happened meanwhile was not seen."""
        if self._udev_alive is None or self.parts.source == "kernel":
            return
        alive = self._udev_alive()
        if alive == self._udev_was_alive:
            self._udev_changed_once = False
            return
        if not self._udev_changed_once:
            # One answer can be wrong (a udevd starting or busy): act on two in a row.
            self._udev_changed_once = True
            return
        self._udev_changed_once = False
        self._udev_was_alive = alive
        if self.parts.source == "auto":
            self._reopen_source("udevd answers again" if alive else "udevd stopped answering",
                                alive)
        elif self.parts.source == "udev":
            if alive:
                log.warning("udevd answers again: deciding over both subsystems for what "
                            "happened while it was away")
                self.controller.request(self._clock(), SUBSYSTEMS, "udevd came back",
                                        unknown_events=True)
            else:
                log.error("udevd stopped answering: no events reach kdumpd until it is back "
                          '([events] source = "udev")')

    # -- reloads -------------------------------------------------------------------------

    def _start_due_reload(self) -> None:
        if self._worker is not None:
            return
        burst = self.controller.poll(self._clock())
        self._sync_handover()
        if burst is None:
            return
        parts = self.parts
        self._cancel.clear()

        def work() -> None:
            self._done.put((burst, reload_safely(parts, self._cancel)))
            self._wake()

        self._worker = threading.Thread(target=work, name="kdumpd-reload", daemon=True)
        self._worker.start()

    def _collect_outcomes(self) -> None:
        while True:
            try:
                burst, outcome = self._done.get_nowait()
            except queue.Empty:
                return
            if self._worker is not None:
                self._worker.join()
                self._worker = None
            self.controller.reload_finished(burst, outcome, self._clock())
            self._sync_handover()

    def _sync_handover(self) -> None:
        """Keep the distribution's rules off only while our reloads work: after a reload
        failed for good, give events back to them until kdumpd's backend works again
        (the controller then stops reloading on events itself: never two reloaders)."""
        wanted = not self.controller.handed_back
        if wanted == self._holding_handover:
            return
        if not wanted:
            log.warning("handing reloads back to the distribution's udev rules "
                        "until kdumpd's backend works again")
        self._set_handover(wanted)

    def _restore_before_exit(self) -> int:
        """Never leave an image kdumpd unloaded behind: one last bounded attempt.

        Returns the exit status: 1 when no crash kernel is loaded and kdumpd owes one
        (the state file keeps the debt for the next start; Restart= may come sooner).
        """
        if not self.controller.owed or self.controller.dry_run:
            return 0
        now = self._clock()
        self.controller.request(now, (), REASON_RESTORE, due_now=True)
        burst = self.controller.poll(now)
        if burst is not None:
            log.critical("stopping with no crash kernel loaded: one last attempt to load it")
            self._cancel.set()  # one attempt, no retries
            parts = self.parts
            done: list[Outcome] = []

            def last_attempt() -> None:
                done.append(reload_safely(parts, self._cancel))

            worker = threading.Thread(target=last_attempt, name="kdumpd-restore", daemon=True)
            worker.start()
            self._join(worker)
            if done:
                self.controller.reload_finished(burst, done[0], self._clock())
        if self.controller.owed:
            log.critical("exiting with no crash kernel loaded; the next start restores it")
            return 1
        return 0

    def _finish_running_reload(self) -> None:
        if self._worker is None:
            return
        log.info("stopping: waiting for the running reload to finish (no further retries)")
        self._cancel.set()
        self._join(self._worker)
        if self._worker.is_alive():
            log.critical("the running reload did not finish in %.0f s; exiting anyway",
                         self.parts.stop_wait_s)
            return
        self._collect_outcomes()

    def _join(self, worker: threading.Thread) -> None:
        """Wait for ``worker`` until the stop budget is used up, petting the watchdog
        meanwhile: systemd keeps the watchdog armed while a service stops, and a load
        may take minutes."""
        deadline = self._stop_deadline
        step = self._watchdog_s / 2 if self._watchdog_s else self.parts.stop_wait_s
        while worker.is_alive():
            left = deadline - self._clock()
            if left <= 0:
                return
            worker.join(min(step, left))
            if self._watchdog_s:
                self._notify("WATCHDOG=1")

    # -- configuration and hand-over -----------------------------------------------------

    def _apply_new_config(self) -> None:
        parts = self._reconfigure()
        if parts is None:
            return  # the error was logged; keep serving with the old configuration
        old, self.parts = self.parts, parts
        if (old.source, old.receive_buffer_bytes) != (parts.source, parts.receive_buffer_bytes):
            self._reopen_source("the event source settings changed")
        self.controller.scheduler.quiet_s = parts.quiet_s
        self.controller.scheduler.max_delay_s = parts.max_delay_s
        self.controller.snapshot = parts.sysfs.snapshot
        self.controller.hardware = parts.hardware
        self.controller.backend = parts.reloader.backend

    def _set_handover(self, present: bool) -> None:
        """Tell the distribution's udev rules that kdumpd handles reloads (see rules.d/)."""
        path = self._handover
        self._holding_handover = present
        if path is None:
            return
        try:
            if present:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Never through a symlink: root must not truncate a file someone pointed
                # the name at.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, f"{os.getpid()}\n".encode())
                finally:
                    os.close(fd)
            else:
                path.unlink(missing_ok=True)
        except OSError as error:
            log.error("cannot %s hand-over file %s: %s",
                      "create" if present else "remove", path, error.strerror)

    def _status(self) -> str:
        return self.controller.stats.status_line()

