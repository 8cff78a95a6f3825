"""Decide from what is loaded: the loaded header, read back, overrules the inference.

The policy (policy.py) infers from proxies: crash_hotplug, the events' actions, the
kernel's skip lines, the hardware fingerprint. Where the loaded header can be read back
(loaded_header.py: /proc/kcore, x86_64) its verdict wins: a **current** header means no
reload whatever the proxies say, a **stale** one a reload whatever crash_hotplug says.
"unknown" leaves the inference as it was; so does "unloaded" read while the snapshot
said loaded (a load ran in between: the next decision sees it).

After every load of kdumpd's the header is read once more: a load that leaves a stale
header is a failed load, unless no load could mend it (``HeaderCheck.unfixable``: on
powerpc kexec-tools leaves RAM above the device tree's linux,memory-limit out): that is
said as an error and neither retried nor forced at the next decision, where a reload would
only open a window; the kernel's own update mends it at the next memory event.
Should a mendable one happen :data:`DISAGREEMENTS` times in a row, the
reader and the kernel disagree about what a dump needs (a kernel whose header this
module does not understand): verification is turned off until the next start, loudly,
and the inference decides, so a misreading can never cause a reload loop.

The loaded command line is part of the proof: an image kdumpd never had to reload (the
distribution's own ``kexec -s`` load, kept current by the kernel) can lack what keeps its
dump kernel alive after memory growth (``acpi_no_memhotplug``). ``protection`` says so
for a command line read back; :meth:`HeaderProof.unprotected` then asks, once per loaded
command line, for the image to be replaced by kdumpd's own.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from kdumpd import journal_ids
from kdumpd.decision_log import REASON_UNPROTECTED
from kdumpd.loaded_header import CURRENT, STALE, UNKNOWN, HeaderCheck, without_elfcorehdr
from kdumpd.policy import Decision

log = logging.getLogger("kdumpd")

DISAGREEMENTS = 2  # stale right after our own loads, in a row, before trusting it no more


class HeaderProof:
    def __init__(self, verify: Callable[[], HeaderCheck] | None,
                 clock: Callable[[], float], *,
                 protection: Callable[[str], str | None] | None = None) -> None:
        self._verify = verify
        self._clock = clock
        self._protection = protection  # None: kdumpd's own image would not differ
        self._replacing: set[str] = set()  # loaded command lines already asked to replace
        self.last: HeaderCheck | None = None  # the last verdict read back
        self.last_at: float | None = None  # when (monotonic), for status
        self._stale_after_load = 0
        self.off_why = "" if verify is not None else "[reload] verify_header = false"

    @property
    def enabled(self) -> bool:
        return self._verify is not None

    @property
    def verification(self) -> str:
        """"on", or "off: " and why (status, the read model)."""
        return "on" if self._verify is not None else f"off: {self.off_why}"

    def read(self) -> HeaderCheck | None:
        """Read the loaded header now; None when verification is off."""
        if self._verify is None:
            return None
        try:
            self.last = self._verify()
        except Exception as error:  # a reader's bug on odd content: cannot tell, never a crash
            self.last = HeaderCheck(UNKNOWN, f"reading the loaded header failed "
                                    f"({type(error).__name__}: {error})")
        self.last_at = self._clock()
        return self.last

    def unprotected(self, *, peek: bool = False) -> str | None:
        """Why the image read back last must be replaced to survive memory growth, the
        first time that command line is seen (``peek``: without marking it seen); None
        otherwise, or when it cannot be read."""
        check = self.last
        if self._protection is None or check is None or check.loaded_cmdline is None:
            return None
        line = without_elfcorehdr(check.loaded_cmdline)
        why = self._protection(line)
        if why is None or line in self._replacing:
            return None
        if not peek:
            self._replacing.add(line)
        return why

    def judge(self, decision: Decision) -> Decision:
        """``decision`` as the header read back now has it: unchanged when it cannot be
        read, or when the decision is only a step (a 0 to confirm, a load to wait for)."""
        if decision.confirm or decision.wait_for_load:
            return decision
        check = self.read()
        if check is None:
            return decision
        if check.verdict == CURRENT and decision.reload and decision.beyond_header:
            return replace(decision, reason=f"{decision.reason}; read back, the loaded "
                           f"header is current ({check.why}), which does not cancel this "
                           "reload")
        if check.verdict == CURRENT and decision.reload:
            return replace(decision, reload=False, reason=(
                f"the loaded header, read back, is current: {check.why} (without it: "
                f"{decision.reason})"))
        if check.verdict == STALE and check.unfixable:
            return replace(decision, reason=f"{decision.reason}; read back, the loaded "
                           f"header is STALE: {check.why}, which no kexec_load can "
                           f"mend: {check.unfixable}")
        if check.verdict == STALE and not decision.reload:
            return replace(decision, reload=True, reason=(
                f"the loaded header, read back, is STALE: {check.why} (without it: "
                f"{decision.reason})"))
        if check.verdict in (CURRENT, STALE):
            return replace(decision, reason=f"{decision.reason}; read back, the loaded "
                           f"header agrees: {check.line()}")
        return decision

    def proven(self, decision: Decision) -> tuple[Decision, bool]:
        """``decision`` as the loaded header, read back now, has it (judge), with a kept
        image whose command line would not survive memory growth replaced once; and
        whether that header was current (False: it cannot be read, or was not read)."""
        earlier = self.last
        decision = self._keep_alive(self.judge(decision))
        check = self.last
        return decision, check is not earlier and check is not None and \
            check.verdict == CURRENT

    def _keep_alive(self, decision: Decision) -> Decision:
        """A decision that keeps an image whose command line, read back, lacks what keeps
        its dump kernel alive after memory growth becomes one reload to kdumpd's own image
        (once per loaded command line; a decision that reloads anyway needs no more)."""
        if decision.reload or decision.confirm or decision.wait_for_load:
            return decision
        why = self.unprotected()
        if why is None:
            return decision
        log.warning("%s: %s", why, REASON_UNPROTECTED)
        return Decision(True, f"{why}: {REASON_UNPROTECTED}", decision.warnings)

    def after_load(self) -> HeaderCheck | None:
        """The post-condition of a load of ours: the stale verdict when it failed, else
        None. Turns verification off after :data:`DISAGREEMENTS` failures in a row."""
        check = self.read()
        if check is not None and check.verdict == STALE and check.unfixable:
            # The load did what a load can: loading again would only open a window.
            self._stale_after_load = 0  # and it is no disagreement with the reader
            log.error("the crash kernel loaded now lacks %s: a dump would miss it; %s",
                      check.why, check.unfixable,
                      extra={"MESSAGE_ID": journal_ids.HEADER_UNFIXABLE})
            return None
        if check is None or check.verdict != STALE:
            if check is not None and check.verdict == CURRENT:
                self._stale_after_load = 0
            return None
        self._stale_after_load += 1
        if self._stale_after_load >= DISAGREEMENTS:
            self.off_why = (f"the header read back was stale right after {DISAGREEMENTS} "
                            f"loads of kdumpd's in a row ({check.why})")
            log.critical("%s: reading the loaded header back and the kernel disagree; "
                         "verification is off until kdumpd restarts, crash_hotplug and "
                         "the hardware decide", self.off_why)
            self._verify = None
            self.last = None  # nothing read back is shown as the truth any more
        return check
