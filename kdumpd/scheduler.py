"""Coalescing hotplug events into bursts: one reload per burst, as soon as it is over.

Pure timing: the caller passes monotonic seconds in and asks when the next deadline is,
so tests drive it with a fake clock and no sleeps.

A burst is due once nothing arrived for ``quiet_s``, or ``max_delay_s`` after its
beginning, whichever comes first (and never before a ``not_before`` a deferral set).
While a reload runs nothing is due; what arrives then, or up to ``grace_s`` after the
reload finished, forms a *follow-up*: the kernel may have skipped those events' header
update while the load held the kexec lock, so the decision reloads whatever
crash_hotplug says. A follow-up waits for a longer quiet (``follow_up_quiet_s``, at
most ``follow_up_max_delay_s``): the first reload already made the image current (and,
with a hotplug-capable load, one the kernel keeps current), and a reload in the middle
of a stream opens a window without a crash kernel to shorten a staleness the next event
brings back. Every timing constant and what sets it: docs/design.md.

Besides events a burst can carry *requests*: a decision asked for without an event (a
resync after lost events, a restart that found the hardware changed, ``kdumpd reload``,
a retry of a missing crash kernel), each with its subsystems and a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kdumpd.events import SUBSYSTEMS, Event

# Events that arrive up to this long after one of our loads finished may still belong to
# hotplugs the kernel handled while the load held the kexec lock (udev delivered events
# 0.06-0.33 s after the action in the guest).
GRACE_S = 0.5
# A follow-up burst is over after this long without an event, and due at the latest this
# long after its first event (docs/design.md: a paced stream of 20 events/s for 10 s takes
# 2 reloads, not one every max_delay).
FOLLOW_UP_QUIET_S = 0.25
FOLLOW_UP_MAX_DELAY_S = 30.0
# The action of a request whose events are unknown (lost, or while kdumpd was away):
# it may hide any action, a removal included.
ANY_ACTION = "*"


@dataclass(frozen=True)
class Burst:
    """The events and requests collected between two decisions."""

    events: int  # real events (requests are not counted)
    subsystems: frozenset[str]
    first: Event | None  # None when the burst holds only requests
    last: Event | None
    started_at: float  # monotonic seconds of the first event or request
    reasons: tuple[str, ...] = ()  # why a decision was requested without events
    zero_seen: bool = False  # an earlier read for this burst gave crash_hotplug=0
    missed: str = ""  # why the image may lack a change whatever crash_hotplug says
    # (subsystem, action) pairs seen; ANY_ACTION for a request whose events are unknown
    actions: frozenset[tuple[str, str]] = frozenset()
    follow_up: bool = False  # events arrived while our load ran or within its grace


class ReloadScheduler:
    def __init__(
        self, quiet_s: float, max_delay_s: float, *, grace_s: float = GRACE_S,
        follow_up_quiet_s: float = FOLLOW_UP_QUIET_S,
        follow_up_max_delay_s: float = FOLLOW_UP_MAX_DELAY_S,
    ) -> None:
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self.grace_s = grace_s
        self.follow_up_quiet_s = follow_up_quiet_s
        self.follow_up_max_delay_s = follow_up_max_delay_s
        self.running = False
        self._follow_up_until = float("-inf")  # end of the last load's grace period
        self._reset()

    def retime(self, quiet_s: float, max_delay_s: float) -> None:
        """New debounce times (SIGHUP); what is pending stays, due by the new times."""
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s

    def _reset(self) -> None:
        self._count = 0
        self._subsystems: set[str] = set()
        self._first_at: float | None = None
        self._last_at = 0.0
        self._first: Event | None = None
        self._last: Event | None = None
        self._reasons: list[str] = []
        self._zero_seen = False
        self._not_before = 0.0
        self._due_at: float | None = None
        self._missed = ""
        self._actions: set[tuple[str, str]] = set()
        self._follow_up = False

    @property
    def pending(self) -> int:
        """Number of events waiting for a decision."""
        return self._count

    @property
    def has_pending(self) -> bool:
        """True when events or requests wait for a decision."""
        return self._first_at is not None

    def has_reason(self, reason: str) -> bool:
        """True when a request for ``reason`` waits for a decision."""
        return reason in self._reasons

    def _touch(self, now: float) -> None:
        if self._first_at is None:
            self._first_at = now
        self._last_at = now

    def add(self, event: Event, now: float) -> None:
        """Record one relevant event. O(1): this runs for every event of a storm."""
        if self._first is None:
            self._first = event
        self._touch(now)
        self._last = event
        self._count += 1
        self._subsystems.add(event.subsystem)
        self._actions.add((event.subsystem, event.action))
        if self.running or now <= self._follow_up_until:
            self._follow_up = True

    def request(
        self, now: float, subsystems: Iterable[str], reason: str, *, due_now: bool = False,
        missed: bool = False, unknown_events: bool = False,
    ) -> None:
        """Ask for a decision over ``subsystems`` without an event, for ``reason``.

        ``due_now``: decide at once instead of waiting for the burst to be quiet.
        ``missed``: ``reason`` says the image may lack a change the kernel did not apply,
        so a loaded image is reloaded whatever crash_hotplug says.
        ``unknown_events``: events on ``subsystems`` may have happened unseen (lost, or
        while kdumpd was away), so the decision must assume any action, a removal too.
        """
        self._touch(now)
        if due_now:
            self._due_at = now
        if missed:
            self._missed = reason
        subsystems = tuple(subsystems)
        self._subsystems.update(subsystems)
        if unknown_events:
            self._actions.update((s, ANY_ACTION) for s in subsystems if s in SUBSYSTEMS)
        if reason not in self._reasons:
            self._reasons.append(reason)

    def defer(self, burst: Burst, not_before: float) -> None:
        """Put a taken burst back, to be decided again no earlier than ``not_before``.

        Whatever arrived meanwhile joins it; the next decision knows a 0 was seen.
        """
        if self._first_at is None or burst.started_at < self._first_at:
            self._first_at = burst.started_at
            self._first = burst.first or self._first
        self._last_at = max(self._last_at, burst.started_at)
        self._last = self._last or burst.last
        self._count += burst.events
        self._subsystems.update(burst.subsystems)
        self._reasons = list(dict.fromkeys([*burst.reasons, *self._reasons]))
        self._zero_seen = True
        self._missed = self._missed or burst.missed
        self._actions.update(burst.actions)
        self._follow_up = self._follow_up or burst.follow_up
        self._not_before = max(self._not_before, not_before)

    def deadline(self) -> float | None:
        """Monotonic time at which the pending burst is due; None if nothing can be due."""
        if self._first_at is None or self.running:
            return None
        if self._follow_up:
            quiet, longest = self.follow_up_quiet_s, self.follow_up_max_delay_s
        else:
            quiet, longest = self.quiet_s, self.max_delay_s
        due = min(self._last_at + quiet, self._first_at + longest)
        if self._due_at is not None:
            due = min(due, self._due_at)
        return max(due, self._not_before)

    def take(self, now: float) -> Burst | None:
        """Hand out the pending burst if it is due at ``now``, and start a new one."""
        deadline = self.deadline()
        if deadline is None or now < deadline or self._first_at is None:
            return None
        burst = Burst(
            events=self._count,
            subsystems=frozenset(self._subsystems),
            first=self._first,
            last=self._last,
            started_at=self._first_at,
            reasons=tuple(self._reasons),
            zero_seen=self._zero_seen,
            missed=self._missed,
            actions=frozenset(self._actions),
            follow_up=self._follow_up,
        )
        self._reset()
        return burst

    def reload_started(self) -> None:
        self.running = True

    def reload_finished(self, now: float) -> None:
        """Our load ended at ``now``: events until ``now + grace_s`` are follow-ups."""
        self.running = False
        self._follow_up_until = now + self.grace_s
