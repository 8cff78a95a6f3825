"""How long kdumpd waits for someone else's load to end before it decides.

The kernel logs a skipped header update when a hotplug event finds the kexec lock held.
The usual holder is a load (anyone's: kdump-config, kdumpctl, an administrator's
``kexec -p``), and every load frees the old image first, so kexec_crash_loaded reads 0
until its syscall returns. The image that load installs may have been built before the
event: kdumpd must look again once the load is over, not conclude "nothing loaded".
A load's syscall took 1.8-3.4 s in the TCG guest (tests/vm/RESULTS.md); a load that
starts after the event builds a current header by itself, so the wait is bounded.
:meth:`LoadWait.look_again` also puts back a decision whose 0 must be read again first.
Monotonic seconds in, deadlines out; it says what it waits for in the journal.
"""

from __future__ import annotations

import logging
from typing import Callable

from kdumpd import journal_ids
from kdumpd.policy import Decision

log = logging.getLogger("kdumpd")

POLL_S = 0.25  # how often kexec_crash_loaded is read again while waiting
LONGEST_S = 30.0  # no image after this long: nothing was being loaded


class LoadWait:
    def __init__(self, poll_s: float = POLL_S, longest_s: float = LONGEST_S) -> None:
        self.poll_s = poll_s
        self.longest_s = longest_s
        self._since: float | None = None

    @property
    def waiting(self) -> bool:
        return self._since is not None

    def next_look(self, now: float) -> float | None:
        """When to decide again while no image is loaded; None once the wait is over."""
        if self._since is None:
            self._since = now
        if now - self._since >= self.longest_s:
            self._since = None
            return None
        return now + self.poll_s

    def over(self) -> None:
        """A decision that needs no waiting: the next wait starts afresh."""
        self._since = None

    def look_again(self, decision: Decision, now: float, *, about: str, confirm_s: float,
                   defer: Callable[[float], None]) -> Decision | None:
        """Put the burst back (``defer`` to a monotonic time) when ``decision`` needs
        another read first (a 0 to confirm ``confirm_s`` later, a load under way to wait
        for) and return None; else the decision to act on. ``about``: the burst, for the
        journal."""
        if decision.confirm:
            log.debug("%s: %s", about, decision.reason)
            defer(now + confirm_s)
            return None
        if not decision.wait_for_load:
            self.over()
            return decision
        level = logging.DEBUG if self.waiting else logging.INFO
        look = self.next_look(now)
        if look is not None:
            log.log(level, "%s: %s", about, decision.reason)
            defer(look)
            return None
        # Someone's load freed the old image and none came back: no dump now.
        log.warning("no crash kernel is loaded %.0f s after the kernel skipped a header "
                    "update: the load under way failed or none ran, and a panic now gives "
                    "no dump", self.longest_s,
                    extra={"MESSAGE_ID": journal_ids.CRASH_KERNEL_UNLOADED})
        return Decision(False, f"no crash kernel loaded after waiting {self.longest_s:.0f} "
                        "s: nothing to keep current")
