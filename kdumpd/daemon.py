"""The daemon's event loop and its wiring: one thread owns the event source, a worker
runs reloads (reload_worker.py), the source supervisor keeps the socket right
(source_supervisor.py), the hand-over file tells the distribution's rules (handover.py).

The main thread never blocks on a reload, so the netlink socket keeps being drained while
kexec runs. Signals arrive through a wakeup socket; SIGTERM while a reload runs lets that
reload finish (bounded), SIGHUP re-reads the configuration and keeps the old one when the
new one is broken. Time (clock and selector wait) is injected: looptime.py.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Callable, Protocol

from kdumpd.control_socket import ControlServer
from kdumpd.controller import Controller
from kdumpd.events import SUBSYSTEMS
from kdumpd.handover import Handover
from kdumpd.hardware import Hardware
from kdumpd.kernel_log import KernelLog
from kdumpd.kernel_log_edge import KERNEL, KernelLogEdge
from kdumpd.looptime import LoopTime, RealTime
from kdumpd.periodic import Job, Periodic
from kdumpd.reload_requests import ReloadRequests
from kdumpd.reload_worker import ReloadWorker
from kdumpd.reloader import Reloader
from kdumpd.source import EventSource
from kdumpd.source_supervisor import SourceSupervisor
from kdumpd.startup_signals import SIGNALS, StartupSignals, meaning, name
from kdumpd.stopping import Stopping
from kdumpd.sysfs import Sysfs
from kdumpd.systemd import Notify


class MetricsFile(Protocol):
    """kdumpd.prom (metrics.TextFile): written now and then, withdrawn at a final stop."""

    def write(self) -> None: ...

    def withdraw(self) -> None: ...

log = logging.getLogger("kdumpd")

EXIT_CANTCREAT = 73  # the hand-over file cannot be created
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
        restart_pending: Callable[[], bool] = lambda: False,
        clock: LoopTime | None = None,
        watchdog_s: float | None = None,
        udev_alive: Callable[[], bool] | None = None,
        udev_watch_s: float = UDEV_WATCH_S,
        rules_watch: Callable[[], None] | None = None,
        rules_watch_s: float = RULES_WATCH_S,
        kernel_log: KernelLog | None = None,
        control: ControlServer | None = None,
        metrics: MetricsFile | None = None,
        metrics_s: float = 60.0,
    ) -> None:
        self.controller = controller
        self.parts = parts
        self._reconfigure = reconfigure
        self._notify = notify
        self._handover = Handover(handover)
        # Asked at a clean exit: will systemd start kdumpd again at once (systemd.py)?
        self._restart_pending = restart_pending
        self.restarting = False  # the answer, for what the CLI withdraws after run()
        self._clock: LoopTime = clock or RealTime()
        self._watchdog_s = watchdog_s
        self._udev_watch_s = udev_watch_s
        self._rules_watch = rules_watch
        self._rules_watch_s = rules_watch_s
        self._kernel_log = KernelLogEdge(
            kernel_log, lambda message: controller.on_kernel_skip(self._clock(), message))
        self._metrics = metrics  # None: no metrics file (metrics.py)
        self._metrics_s = metrics_s
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._worker = ReloadWorker(self._wake)
        self._stopping = Stopping(self._worker, controller, self._clock, notify=notify,
                                  watchdog_s=watchdog_s, collect=self._collect_outcomes)
        # `kdumpd reload` over the control socket (None: no requests, as in a dry run).
        self.requests = ReloadRequests(control, controller, self._clock)
        # udev_alive None: nothing to watch (tests, the kernel source).
        self.sources = SourceSupervisor(
            source, controller, self._clock, setting=parts.source,
            receive_buffer_bytes=parts.receive_buffer_bytes, udev_alive=udev_alive,
            on_fatal=self._stop_with,
        )
        self._stop_requested = False
        self._stop_why = "asked to stop"
        self._hup_requested = False
        self._decide_requested = False
        self._exit_status = 0

    @property
    def source(self) -> EventSource:
        return self.sources.source

    # -- signals -------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._hup_requested = True
        elif signum == signal.SIGUSR1:
            self._decide_requested = True
        else:
            self._stop_requested = True
            self._stop_why = name(signum)

    def _replay(self, signums: tuple[int, ...]) -> None:
        """Signals that came during start-up: handled now, each said in the journal."""
        for signum in signums:
            log.info("%s arrived during start-up: %s", name(signum), meaning(signum))
            self._on_signal(signum, None)
            self._wake()  # the loop's first wait returns at once

    def request_stop(self) -> None:
        """Ask the loop to stop (from any thread), like SIGTERM."""
        self._stop_requested = True
        self._wake()

    def _stop_with(self, status: int) -> None:
        self._exit_status = status
        self._stop_requested = True

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: the loop is already due to wake
            self._wake_w.send(b"w")

    # -- the loop ------------------------------------------------------------------------

    def run(self, startup: StartupSignals | None = None) -> int:
        """Serve until SIGTERM/SIGINT (or :meth:`request_stop`); returns the exit status.
        ``startup``: signals that arrived before this loop handled them, acted on now."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        if startup is not None:
            self._replay(startup.take())
        old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno())
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.sources.attach(selector)
        status = 0
        clean = False
        try:
            if not self._handover.hold(True):
                # The distribution's rules would reload beside kdumpd: never two reloaders.
                log.critical("cannot tell the distribution's udev rules that kdumpd handles "
                             "reloads: not starting ([rule] handover)")
                self._handover = Handover(None)  # nothing of ours to remove
                return EXIT_CANTCREAT
            self.requests.open(selector)
            self.controller.start(self._clock(), kernel_skips=self._kernel_log.start(selector))
            self._notify("READY=1\nSTATUS=" + self._status())
            log.info("listening for cpu and memory events")
            self._serve(selector)
            log.info("stopping (%s)", self._stop_why)
            self._notify("STOPPING=1")
            status = self._stopping.stop(self.parts.stop_wait_s, self.parts.reloader,
                                         self.parts.sysfs) or self._exit_status
            clean = status == 0
        finally:
            self.requests.close()
            # A restart or an upgrade keeps the hand-over: nothing for rules that may not
            # reload; a stop, a failure or a crash gives reloads back.
            self.restarting = clean and self._restart_pending()
            self._handover.exit(restarting=self.restarting)
            if self._metrics is not None and not self.restarting:
                self._metrics.withdraw()  # no stale values served for a daemon gone
            selector.close()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _jobs(self, selector: selectors.BaseSelector) -> tuple[Periodic, Job | None]:
        """The loop's timers; the metrics job is returned too (it also runs after every
        decision)."""
        jobs = Periodic(self._clock)
        watchdog_s = self._watchdog_s
        if watchdog_s:
            jobs.add(lambda: watchdog_s / 2, lambda: self._notify("WATCHDOG=1"),
                     from_end=False)
        jobs.add(lambda: self._udev_watch_s if self.sources.watches_udev else None,
                 self.sources.watch_udev, first_in=self._udev_watch_s, from_end=False)
        if self._rules_watch is not None:
            jobs.add(lambda: self._rules_watch_s, self._rules_watch,
                     first_in=self._rules_watch_s)
        jobs.add(lambda: self._kernel_log.poll_s, lambda: self._kernel_log.read(selector))
        jobs.add(self.requests.check_every, self.requests.expire)  # silent control clients
        owing = self.controller.owing
        jobs.add(owing.state_retry_every, owing.retry_state_save,
                 first_in=owing.state_retry_every() or 0.0)
        metrics = self._metrics
        if metrics is None:
            return jobs, None
        return jobs, jobs.add(lambda: self._metrics_s, metrics.write)

    def _serve(self, selector: selectors.BaseSelector) -> None:
        last_status = self._status()
        last_status_at = self._clock()
        jobs, metrics_job = self._jobs(selector)
        # Once even when a stop came before the first turn: kdumpd.prom is written, the
        # file a restart keeps (a queued restart stops a kdumpd right after READY).
        jobs.run_due(self._clock())
        while not self._stop_requested:
            now = self._clock()
            timers = jobs.run_due(now)
            timeout = self._timeout(now, timers)
            ready = self._clock.select(selector, timeout, thread_busy=self._worker.alive)
            for key, _ in ready:
                if key.data == "wake":
                    self._drain_wakeups()
                elif key.data == KERNEL:
                    self._kernel_log.read(selector)
                elif key.data == "control":
                    self.requests.accept(reloading=self._worker.busy)
                else:
                    self.sources.drain()
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
            self.requests.answer_if_decided(reloading=self._worker.busy)
            status = self._status()
            now = self._clock()
            if status != last_status and (now - last_status_at >= STATUS_INTERVAL_S
                                          or self.controller.scheduler.pending == 0):
                self._notify("STATUS=" + status)
                last_status, last_status_at = status, now
                if metrics_job is not None:
                    metrics_job.next_at = now  # after every decision

    def _timeout(self, now: float, timers: list[float]) -> float | None:
        """How long the loop may sleep: until the next burst, restore or timer is due."""
        deadlines = [d for d in (self.controller.deadline(),) if d is not None] + timers
        if self.controller.scheduler.pending:
            deadlines.append(now + STATUS_INTERVAL_S)  # keep STATUS= moving during a storm
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    # -- reloads -------------------------------------------------------------------------

    def _start_due_reload(self) -> None:
        if self._worker.busy:
            return
        burst = self.controller.poll(self._clock())
        self._handover.follow(handed_back=self.controller.owing.handed_back)
        if burst is not None:
            self._worker.start(burst, self.parts.reloader, self.parts.sysfs)

    def _collect_outcomes(self) -> None:
        for burst, outcome in self._worker.outcomes():
            self.requests.finished(outcome)
            self.controller.reload_finished(burst, outcome, self._clock())
            self._handover.follow(handed_back=self.controller.owing.handed_back)

    # -- configuration -------------------------------------------------------------------

    def _apply_new_config(self) -> None:
        parts = self._reconfigure()
        if parts is None:
            return  # the error was logged; keep serving with the old configuration
        self.parts = parts
        self.sources.configure(parts.source, parts.receive_buffer_bytes)
        self.controller.reconfigure(
            quiet_s=parts.quiet_s, max_delay_s=parts.max_delay_s,
            snapshot=parts.sysfs.snapshot, hardware=parts.hardware,
            backend=parts.reloader.backend)

    def _status(self) -> str:
        return self.controller.knowledge().status_line()
