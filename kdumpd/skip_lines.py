"""Which of the kernel's "kexec_trylock() failed" lines are skipped header updates.

The kernel prints the identical line ``crash hp: kexec_trylock() failed, kdump image may
be inaccurate`` from two places (kernel/crash_core.c, 6.6-6.12):

- ``crash_handle_hotplug_event()``, the update of the loaded header on a CPU or memory
  hotplug, when someone holds the kexec lock: the update is **skipped**. That hotplug
  also emits a cpu or memory uevent (udev delivered it 0.06-0.33 s later in the guest).
- ``crash_check_hotplug_support()``, behind every **read** of
  ``/sys/devices/system/{cpu,memory}/crash_hotplug`` (both 0444 on 6.12), when its own
  trylock fails (a load is under way): the read returns 0 and nothing is skipped. Any
  user who reads the file during a load prints it; a read can never make the kernel skip
  an update (both take ``__crash_hotplug_lock`` first).

So a line is a skip only next to a hotplug event: one within :data:`PAIR_S` before or
after an event that no load of kdumpd's has covered since (a load that starts after an
event builds its header from the hardware of then). Any other line is a failed read,
counted and changing no decision: no reload chain, whoever reads, however often.
Pure: monotonic seconds in, verdicts out.
"""

from __future__ import annotations

# A hotplug's line and its uevent arrive this close together: the kernel prints the line
# inside the hotplug, udev delivers the event within 0.33 s (tests/vm/RESULTS.md), and
# journald passes the line on within a fraction of a second; the rest is margin. A wider
# window only pairs more reader lines with real events (one reload per burst at most).
PAIR_S = 2.0


class SkipLines:
    def __init__(self, pair_s: float = PAIR_S) -> None:
        self.pair_s = pair_s
        self._event_at: float | None = None  # the last event no load of ours covered
        self._line_at: float | None = None  # the last line that found no event (yet)
        self.skips = 0  # lines paired with a hotplug event this run
        self.reads = 0  # lines with no hotplug event near them: failed reads

    def line(self, now: float, *, loading: bool = False) -> bool:
        """A line arrived at ``now``: True when it is a skip (an uncovered event is near).
        ``loading``: a load of kdumpd's runs; a line then with no event is a read during
        that load, and no event after the load may pair with it."""
        if self._event_at is not None and now - self._event_at <= self.pair_s:
            self.skips += 1
            return True
        self.reads += 1
        if not loading:
            self._line_at = now
        return False

    def event(self, now: float) -> bool:
        """A hotplug event arrived at ``now``: True when a line that came shortly before it
        turns out to be its skip (that line had been counted as a read)."""
        self._event_at = now
        if self._line_at is None or now - self._line_at > self.pair_s:
            return False
        self._line_at = None
        self.reads -= 1
        self.skips += 1
        return True

    def load_started(self) -> None:
        """A load of kdumpd's starts: its header is built from the hardware of now, so
        the events so far are covered, and so is a line one of them could pair with."""
        self._event_at = None
        self._line_at = None
