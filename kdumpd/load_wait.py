"""How long kdumpd waits for someone else's load to end before it decides.

The kernel logs a skipped header update when a hotplug event finds the kexec lock held.
The usual holder is a load (anyone's: kdump-config, kdumpctl, an administrator's
``kexec -p``), and every load frees the old image first, so kexec_crash_loaded reads 0
until its syscall returns. The image that load installs may have been built before the
event: kdumpd must look again once the load is over, not conclude "nothing loaded".
A load's syscall took 1.8-3.4 s in the TCG guest (tests/vm/RESULTS.md); a load that
starts after the event builds a current header by itself, so the wait is bounded.
Pure: monotonic seconds in, deadlines out.
"""

from __future__ import annotations

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
