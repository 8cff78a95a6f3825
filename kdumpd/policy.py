"""The decision: given the subsystems a burst touched and what sysfs says now, reload or not.

Pure: no I/O, no clock. Every branch gives a reason a human can read in the journal.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from kdumpd.sysfs import ABSENT, OK, Snapshot, Value


@dataclass(frozen=True)
class Decision:
    reload: bool
    reason: str
    warnings: tuple[str, ...] = ()


def kernel_updates(value: Value) -> bool:
    """True when crash_hotplug says the kernel rewrites the elfcorehdr itself."""
    return value.kind == OK and value.text == "1"


def decide(subsystems: Collection[str], snapshot: Snapshot, *, owed: bool = False) -> Decision:
    """Decide for a burst of events on ``subsystems`` (a non-empty subset of cpu, memory).

    ``owed``: a failed reload of ours left no crash kernel loaded; we owe one back, so
    "nothing loaded" is no reason to skip.
    """
    warnings: list[str] = []
    loaded = snapshot.crash_loaded
    if loaded.kind == ABSENT:
        return Decision(False, "kernel has no crash kernel support (kexec_crash_loaded absent)")
    if loaded.kind == OK and loaded.text == "0":
        if owed:
            return Decision(True, "the crash kernel our failed reload unloaded is still missing")
        return Decision(False, "no crash kernel loaded: nothing to keep current")
    if not (loaded.kind == OK and loaded.text == "1"):
        # Fail safe: when we cannot tell, assume a crash kernel is there to keep current.
        warnings.append(
            f"kexec_crash_loaded reads {_show(loaded)}; assuming a crash kernel is loaded"
        )

    stale: list[str] = []
    for subsystem in sorted(subsystems):
        value = snapshot.crash_hotplug.get(subsystem, Value("", ABSENT))
        if kernel_updates(value):
            continue
        if value.kind == ABSENT:
            stale.append(f"{subsystem}: crash_hotplug absent")
        elif value.kind == OK and value.text == "0":
            stale.append(f"{subsystem}: crash_hotplug=0")
        else:
            warnings.append(f"{subsystem}/crash_hotplug reads {_show(value)}; reloading to be safe")
            stale.append(f"{subsystem}: crash_hotplug {_show(value)}")
    if stale:
        return Decision(True, "; ".join(stale) + ": the elfcorehdr is stale", tuple(warnings))
    return Decision(False, "crash_hotplug=1: the kernel updates the elfcorehdr", tuple(warnings))


def _show(value: Value) -> str:
    if value.kind == OK:
        return repr(value.text[:40])
    return f"{value.kind} ({value.text})" if value.text else value.kind
