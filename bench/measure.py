"""Pure measurement: the fake backend's log -> reloads and exposure; /proc parsing; stats.

The log has one JSON line per operation, ``{"op": "unload"|"load", "t": <unix seconds when
it started>, "ok": bool}``, written by kdumpd's fake backend and by the peers' reload script
alike, so the same code measures all three contestants.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LOAD_S = 0.5  # the fake load's duration: a load that started at t is in place at t + LOAD_S
# The peers' unload (`kexec -p -u`): it frees the image and returns; 70-120 ms in the Debian
# 13 guest under TCG (shared/docs/vm-facts.md), milliseconds on real hardware. The crash
# kernel is gone from its start until the end of the load after it.
UNLOAD_S = 0.1


@dataclass(frozen=True)
class Op:
    op: str  # "unload" | "load"
    t: float  # unix seconds when it started
    ok: bool


def parse_ops(lines: Iterable[str]) -> list[Op]:
    """Parse log lines, sorted by start time; blank and half-written lines are skipped."""
    ops = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("op") in ("unload", "load"):
            ops.append(Op(record["op"], float(record["t"]), bool(record.get("ok", True))))
    return sorted(ops, key=lambda o: o.t)


def reloads(ops: Sequence[Op]) -> int:
    """Unload+load cycles that ran: one per load."""
    return sum(1 for o in ops if o.op == "load")


def exposure(
    ops: Sequence[Op], first_event: float, last_event: float, *, needs_reload: bool,
    load_s: float = LOAD_S,
) -> float | None:
    """Seconds from the first event until a crash kernel loaded after the last event is in place.

    That is the end of the last successful load that started after the last event was
    emitted. Without such a load: 0.0 when no reload was needed (crash_hotplug=1: the kernel
    kept the crash kernel current), else None (the crash kernel stayed stale).
    """
    after = [o for o in ops if o.op == "load" and o.ok and o.t >= last_event]
    if not after:
        return None if needs_reload else 0.0
    return max(o.t for o in after) + load_s - first_event


def absent(ops: Sequence[Op], first_event: float, *, load_s: float = LOAD_S) -> float:
    """Seconds without any crash kernel from ``first_event`` on: inside every load (the
    syscall frees the old image first), and from an unload's start until the end of the
    load after it (for ever if none came)."""
    spans: list[tuple[float, float]] = []
    unloaded_at: float | None = None
    for op in ops:
        if op.op == "unload":
            unloaded_at = op.t if unloaded_at is None else unloaded_at
            continue
        start = op.t if unloaded_at is None else unloaded_at
        if op.ok:
            spans.append((start, op.t + load_s))
            unloaded_at = None
        else:
            unloaded_at = start  # a failed load leaves no crash kernel
    if unloaded_at is not None:
        spans.append((unloaded_at, math.inf))
    total, covered_to = 0.0, first_event
    for began, end in sorted(spans):
        start = max(began, covered_to)
        if end > start:
            total += end - start
            covered_to = end
    return total


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; values must not be empty."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cpu_seconds(stat_line: str, clock_ticks: int) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds."""
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat_line[stat_line.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the whole line
    return (utime + stime) / clock_ticks


def status_kib(status_text: str, key: str) -> int | None:
    """A ``kB`` value such as VmHWM or VmRSS from /proc/<pid>/status, in KiB."""
    for line in status_text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None
