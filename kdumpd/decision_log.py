"""The decision log: what kdumpd counts and says about its decisions.

The counters behind STATUS= and the metrics (:class:`Stats`), the journal fields of a
burst, the reason texts the journal and `kdumpd reload` show, and the outcome lines of a
reload. Nothing here decides; controller.py does, and says it through this module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from kdumpd import journal_ids
from kdumpd.exposure import Exposure
from kdumpd.loaded_header import HeaderCheck
from kdumpd.reloader import Outcome
from kdumpd.scheduler import Burst

log = logging.getLogger("kdumpd")

REASON_RESTORE = "restoring the crash kernel kdumpd unloaded"
REASON_RETRY = "retrying the reload that failed"
REASON_HARDWARE = "hardware changed while kdumpd was not running"
REASON_INTERRUPTED = "a reload of kdumpd's was interrupted"
REASON_DURING_LOAD = ("the hardware changed while our load ran: the new image, or the "
                      "kernel's update of it, may lack the change")
REASON_LOST = "events were lost"
REASON_HEADER_UNFIXABLE = ("the loaded header lacks RAM that no kexec_load can add: an image "
                           "loaded with --hotplug gets it from the kernel's own update")
REASON_HEADER_STALE = "the loaded header, read back at start, is stale"
REASON_UNPROTECTED = ("replacing the loaded image once with kdumpd's, whose dump kernel "
                      "survives memory growth ([reload] growth_safe = false turns this off)")
REASON_KERNEL_SKIPPED = ("the kernel skipped a hotplug update of the crash kernel's "
                         "header (\"kexec_trylock() failed\" in its log)")
REASON_FOLLOW_UP = ("events arrived while our load held the kexec lock: the kernel may "
                    "have skipped their elfcorehdr update")
# A line with no hotplug event near it is a failed read of crash_hotplug (skip_lines.py):
# said at most this often, with the count since.
READ_LINE_LOG_S = 60.0


@dataclass
class Stats:
    events: int = 0  # relevant events seen
    skipped: int = 0  # events whose burst needed no reload
    reloads: int = 0  # reloads that succeeded
    failed: int = 0  # reloads that failed after all retries
    lost: int = 0  # times the event socket overflowed
    failed_reads: int = 0  # kernel skip lines with no hotplug event: reads of crash_hotplug
    last_reload_at: float | None = None  # unix seconds
    last_duration_s: float | None = None
    crash_kernel_missing: bool = False  # kdumpd owes a crash kernel it unloaded
    restore_at: float | None = None  # unix seconds of the next restore attempt
    handed_back: bool = False  # reloads are left to the distribution's rules
    state_unsaved: bool = False  # the state file cannot be written (state.py)

    def status_line(self) -> str:
        parts = [f"events {self.events}", f"skipped {self.skipped}", f"reloads {self.reloads}"]
        if self.failed:
            parts.append(f"failed {self.failed}")
        if self.lost:
            parts.append(f"overflows {self.lost}")
        if self.failed_reads:
            parts.append(f"refused crash_hotplug reads {self.failed_reads}")
        line = ", ".join(parts)
        if self.last_reload_at is not None and self.last_duration_s is not None:
            line += f"; last reload {_clock_time(self.last_reload_at)} took " \
                    f"{self.last_duration_s:.2f} s"
        if self.crash_kernel_missing:
            line += "; crash kernel NOT loaded"
            if self.restore_at is not None:
                line += f", next restore attempt {_clock_time(self.restore_at)}"
        if self.handed_back:
            line += "; reloads handed back to the distribution"
        if self.state_unsaved:
            line += "; state NOT saved (see the journal)"
        return line


def status_line(stats: Stats, exposure: Exposure) -> str:
    """STATUS=: the counters, and this boot's exposure once there is any."""
    line = stats.status_line()
    if exposure.stale_s or exposure.no_crash_kernel_s:
        line += (f"; this boot: stale {exposure.stale_s:.2f} s, no crash kernel "
                 f"{exposure.no_crash_kernel_s:.2f} s")
    return line


def _clock_time(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def burst_fields(burst: Burst) -> dict[str, Any]:
    last = burst.last
    fields: dict[str, Any] = {
        "KDUMPD_SUBSYSTEM": ",".join(sorted(burst.subsystems)),
        "KDUMPD_EVENTS": burst.events,
    }
    if last is not None:
        fields["KDUMPD_ACTION"] = last.action
        fields["KDUMPD_DEVPATH"] = last.devpath
    if burst.reasons:
        fields["KDUMPD_REQUEST"] = "; ".join(burst.reasons)
    return fields


def outcome_fields(burst: Burst, outcome: Outcome) -> dict[str, Any]:
    return {
        **burst_fields(burst),
        "KDUMPD_RELOAD_DURATION_MS": round(outcome.duration_s * 1000),
        "KDUMPD_ATTEMPTS": outcome.attempts,
    }


def what(burst: Burst) -> str:
    """What the decision is about, for the log: "8 event(s) on memory", a request, or both."""
    parts = list(burst.reasons)
    if burst.events:
        parts.insert(0, f"{burst.events} event(s) on {','.join(sorted(burst.subsystems))}")
    return " + ".join(parts) or "a decision"


class ReadLines:
    """Says the kernel's skip lines that were failed reads of crash_hotplug: one journal
    line per :data:`READ_LINE_LOG_S` at most, with the count since the last."""

    def __init__(self, every_s: float = READ_LINE_LOG_S) -> None:
        self._every_s = every_s
        self._said_at: float | None = None
        self._unsaid = 0

    def line(self, now: float, message: str) -> None:
        self._unsaid += 1
        if self._said_at is not None and now - self._said_at < self._every_s:
            return
        log.info("kernel: %s, %d time(s), with no hotplug event near: a read of "
                 "crash_hotplug during a load (it changes no header); no reload",
                 message.strip(), self._unsaid,
                 extra={"MESSAGE_ID": journal_ids.KERNEL_READ_REFUSED})
        self._said_at, self._unsaid = now, 0


def load_failed(outcome: Outcome, stale: HeaderCheck | None,
                fields: dict[str, Any]) -> None:
    """A load of ours failed, or worked and left a ``stale`` header, read back."""
    if stale is not None:
        log.error("the load left a STALE header, read back: %s", stale.why,
                  extra={"MESSAGE_ID": journal_ids.RELOAD_FAILED, **fields})
    else:
        log.error("reload failed after %d attempt(s): %s", outcome.attempts, outcome.error,
                  extra={"MESSAGE_ID": journal_ids.RELOAD_FAILED, **fields})


def reload_failed_later(delay: float, *, stale: bool, missing: bool,
                        fields: dict[str, Any]) -> None:
    """What a reload that did not leave a current crash kernel means, and when the next
    attempt comes."""
    if stale:
        log.error("deciding again in %.0f s", delay, extra=fields)
    elif missing:
        log.critical(
            "no crash kernel is loaded after the reload: a panic now produces no dump; "
            "retrying in %.0f s", delay,
            extra={"MESSAGE_ID": journal_ids.CRASH_KERNEL_UNLOADED, **fields},
        )
    else:
        log.error("the crash kernel may describe old hardware; retrying in %.0f s", delay,
                  extra=fields)
