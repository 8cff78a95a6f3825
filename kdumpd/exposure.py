"""Exposure accounting: how long, this boot, a panic would have given no dump or an
incomplete one, and what kdumpd did about it. Kept in the state file, so a restart does
not reset it.

- ``no_crash_kernel_s``: time without any crash kernel while kdumpd ran. Its own loads
  count with their whole duration (a bound: the kernel frees the old image at the start
  of the load syscall, and the kexec process also parses before it), and so does the time
  from a reload that left no crash kernel until one is loaded again.
- ``stale_s``: from the first event of a burst that needed a reload until a current image
  was loaded (through failed attempts).
- ``longest_gap_s``: the longest single stretch without a crash kernel counted above.
- ``reloads``, ``reloads_avoided`` (bursts the kernel's own update kept current),
  ``failures`` (reloads that failed after all retries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Exposure:
    no_crash_kernel_s: float = 0.0
    stale_s: float = 0.0
    reloads: int = 0
    reloads_avoided: int = 0
    failures: int = 0
    longest_gap_s: float = 0.0

    def avoided(self) -> Exposure:
        return replace(self, reloads_avoided=self.reloads_avoided + 1)

    def loaded(self, *, ok: bool, stale_s: float, gap_s: float) -> Exposure:
        """A reload finished: ``stale_s`` it ended (0 when it failed), ``gap_s`` without
        a crash kernel it caused or ended."""
        return replace(
            self,
            reloads=self.reloads + ok,
            failures=self.failures + (not ok),
            stale_s=round(self.stale_s + max(0.0, stale_s), 3),
            no_crash_kernel_s=round(self.no_crash_kernel_s + max(0.0, gap_s), 3),
            longest_gap_s=round(max(self.longest_gap_s, gap_s), 3),
        )

    def summary(self) -> str:
        return (f"no crash kernel {self.no_crash_kernel_s:.2f} s (longest "
                f"{self.longest_gap_s:.2f} s), stale {self.stale_s:.2f} s; reloads "
                f"{self.reloads}, avoided {self.reloads_avoided}, failed {self.failures}")


def from_json(document: Any) -> Exposure:
    """An Exposure from the state file's object; ValueError for anything else."""
    if document is None:
        return Exposure()
    if not isinstance(document, dict):
        raise ValueError("exposure is not an object")
    values: dict[str, Any] = {}
    for field in fields(Exposure):
        value = document.get(field.name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"exposure.{field.name} is not a finite count")
        values[field.name] = int(value) if field.type in (int, "int") else float(value)
    return Exposure(**values)


class ExposureClock:
    """When the current stretches of exposure began, on the monotonic clock: the first
    event of a burst that needs a reload (stale), a reload of ours that left no crash
    kernel (no crash kernel). A reload that works ends both."""

    def __init__(self) -> None:
        self._stale_since: float | None = None
        self._unloaded_since: float | None = None

    def stale_from(self, started_at: float) -> None:
        if self._stale_since is None:
            self._stale_since = started_at

    def reload_ended(self, exposure: Exposure, *, ok: bool, unloaded: bool,
                     duration_s: float, now: float) -> Exposure:
        """The exposure after a reload of ours that ended at ``now``; ``unloaded``: it
        left no crash kernel."""
        started = now - duration_s
        if ok:
            stale = now - self._stale_since if self._stale_since is not None else 0.0
            gap = now - (self._unloaded_since if self._unloaded_since is not None
                         else started)
            self._stale_since = self._unloaded_since = None
            return exposure.loaded(ok=True, stale_s=stale, gap_s=gap)
        if unloaded and self._unloaded_since is None:
            self._unloaded_since = started  # counted once a load works again
        return exposure.loaded(ok=False, stale_s=0.0, gap_s=0.0)
