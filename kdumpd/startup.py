"""The start-up check: take up this boot's state and ask for what a restart owes.

Given what was read at start (the state file, the hardware, the loaded header read
back), it asks the scheduler for the decisions a restart needs and saves the state it
takes up. It reads nothing itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from kdumpd import journal_ids
from kdumpd.decision_log import (
    REASON_HARDWARE,
    REASON_HEADER_STALE,
    REASON_HEADER_UNFIXABLE,
    REASON_INTERRUPTED,
    REASON_RESTORE,
    REASON_UNPROTECTED,
)
from kdumpd.events import SUBSYSTEMS
from kdumpd.hardware import Hardware
from kdumpd.loaded_header import STALE, HeaderCheck
from kdumpd.owing import Owing
from kdumpd.state import State

log = logging.getLogger("kdumpd")


class Request(Protocol):
    def __call__(self, now: float, subsystems: tuple[str, ...], reason: str, *,
                 missed: bool = False, unknown_events: bool = False) -> None: ...


def take_up(now: float, saved: State | None, hardware: Hardware, *, owing: Owing,
            request: Request, check: HeaderCheck | None = None,
            unprotected: bool = False, kernel_skips: int = 0) -> None:
    """Take up ``saved`` (this boot's state file; None: none) and request what it owes.

    A stale header read back (``check``) is reloaded; a loaded command line that would
    not survive memory growth (``unprotected``) is replaced once when the host is quiet.
    ``kernel_skips``, the kernel's "kexec_trylock() failed" lines this boot, are no
    reason by themselves: with no hotplug event to pair them with they cannot be told
    from failed reads of crash_hotplug (skip_lines.py). No state for this boot: the
    hardware is the baseline (the distribution loaded the crash kernel at boot, before
    kdumpd). An owed crash kernel is restored; a fingerprint that differs from the
    hardware now asks for a decision over both subsystems.
    """
    if check is not None and check.verdict == STALE and check.unfixable:
        log.error("the loaded crash kernel lacks %s: a dump would miss it; %s",
                  check.why, check.unfixable,
                  extra={"MESSAGE_ID": journal_ids.HEADER_UNFIXABLE})
        # Decided by crash_hotplug, as for events: a plain image (0) is replaced by one
        # the kernel can mend; a --hotplug one (1) is kept, and mended at the next event.
        request(now, SUBSYSTEMS, REASON_HEADER_UNFIXABLE)
    elif check is not None and check.verdict == STALE:
        log.warning("%s: %s", REASON_HEADER_STALE, check.why)
        request(now, SUBSYSTEMS, REASON_HEADER_STALE, missed=True)
    elif saved is None and kernel_skips:
        log.info("the kernel logged \"kexec_trylock() failed\" %d time(s) this boot "
                 "before kdumpd ran: with no hotplug event beside them these lines "
                 "cannot be told from failed reads of crash_hotplug, so they decide "
                 "nothing", kernel_skips)
    if unprotected:
        request(now, (), REASON_UNPROTECTED)  # decided when the host is quiet
    if saved is not None and saved.loading:
        # Killed during a load: the syscall may have freed the old image.
        log.warning("%s: deciding over both subsystems", REASON_INTERRUPTED)
        owing.save(replace(saved, owed=True, loading=False))
        request(now, SUBSYSTEMS, REASON_INTERRUPTED)
        return
    if saved is None or not (saved.owed or saved.fingerprint):
        log.info("%s: recording the hardware as the baseline (%s)",
                 "no state for this boot" if saved is None else
                 "no crash kernel was loaded by the last kdumpd", hardware.summary())
        base = saved or State(owing.store.boot_id)
        owing.save(base.with_hardware(hardware.fingerprint, hardware.summary()))
        return
    owing.adopt(saved)
    if saved.owed:
        log.critical("kdumpd unloaded the crash kernel before it stopped and could not "
                     "load it back: restoring it now",
                     extra={"MESSAGE_ID": journal_ids.CRASH_KERNEL_UNLOADED})
        request(now, (), REASON_RESTORE)
    elif saved.fingerprint != hardware.fingerprint:
        log.info("the hardware changed while kdumpd was not running (was: %s; now: %s)",
                 saved.hardware or "unknown", hardware.summary())
        request(now, SUBSYSTEMS, REASON_HARDWARE, unknown_events=True)
