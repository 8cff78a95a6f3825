"""The systemd edges: journal logging with structured fields, sd_notify, the watchdog."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, TextIO

from kdumpd.command import CommandError, Runner

Notify = Callable[[str], None]
NOTIFY_ATTEMPTS = 5
log = logging.getLogger("kdumpd.systemd")


def journal_stream_is_stderr(
    env: dict[str, str] | None = None, stderr: TextIO = sys.stderr
) -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:ino)."""
    value = (env if env is not None else os.environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        stat = os.fstat(stderr.fileno())
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("kdumpd: %(levelname)s: %(message)s")


def setup_logging(verbose: bool = False) -> None:
    """Journal with structured fields under systemd, else plain lines on stderr."""
    root = logging.getLogger("kdumpd")
    root.handlers.clear()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    handler: logging.Handler
    if journal_stream_is_stderr():
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER="kdumpd")
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainFormatter())
    root.addHandler(handler)


def notifier(env: dict[str, str] | None = None,
             send: Callable[[str], object] | None = None) -> Notify:
    """sd_notify when NOTIFY_SOCKET is set, else a no-op.

    A notification never ends the daemon: sd_notify's sendmsg() interrupted by a signal
    (SIGTERM during a STATUS= update; the C call does not retry as Python's own calls do)
    is sent again, and any other failure is logged. ``send`` stands in for sd_notify in
    tests.
    """
    if not (env if env is not None else os.environ).get("NOTIFY_SOCKET"):
        return lambda _message: None
    if send is None:
        from systemd import daemon

        send = daemon.notify

    def notify(message: str) -> None:
        for _ in range(NOTIFY_ATTEMPTS):
            try:
                send(message)
                return
            except InterruptedError:
                continue
            except OSError as error:
                log.warning("sd_notify(%s) failed: %s", message.split("=", 1)[0], error)
                return
        log.warning("sd_notify(%s) interrupted %d times: not sent",
                    message.split("=", 1)[0], NOTIFY_ATTEMPTS)

    return notify


def watchdog_interval(env: dict[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog period in seconds from WATCHDOG_USEC (for this process), or None."""
    env = env if env is not None else dict(os.environ)
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(pid if pid is not None else os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


# Job types after which systemd starts the unit again: a restart (systemctl restart, a
# package upgrade's restart or try-restart) shows as "restart" while the stop runs, and
# a stop followed by a queued start as "start".
RESTART_JOBS = ("restart", "start")


def own_unit(cgroup: str) -> str | None:
    """The service unit this process runs in, from /proc/self/cgroup's text; None outside one."""
    for line in cgroup.splitlines():
        name = line.rsplit("/", 1)[-1].strip()
        if name.endswith(".service"):
            return name
    return None


def restart_pending(run: Runner, cgroup: str, env: dict[str, str] | None = None) -> bool:
    """True when systemd will start this service again once it has stopped: what kdumpd
    hands the distribution's rules at its exit depends on it (a restart or an upgrade keeps
    the hand-over; a stop gives reloads back). Outside systemd, or when systemctl cannot
    tell, False: the stop hands reloads back, as it always did."""
    if not (env if env is not None else os.environ).get("INVOCATION_ID"):
        return False
    unit = own_unit(cgroup)
    if unit is None:
        return False
    try:
        jobs = run(["systemctl", "list-jobs", "--no-legend", "--plain", unit], timeout=5)
    except CommandError as error:
        log.warning("cannot ask systemd whether %s restarts: %s", unit, error)
        return False
    if jobs.returncode != 0:
        log.warning("cannot ask systemd whether %s restarts: %s", unit, jobs.last_error_line())
        return False
    return any(len(fields) >= 3 and fields[1] == unit and fields[2] in RESTART_JOBS
               for fields in (line.split() for line in jobs.stdout.splitlines()))
