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
    confirm: bool = False  # read crash_hotplug once more before acting (a 0 may be transient)


def kernel_updates(value: Value) -> bool:
    """True when crash_hotplug says the kernel rewrites the elfcorehdr itself."""
    return value.kind == OK and value.text == "1"


def is_loaded(value: Value) -> bool:
    return value.kind == OK and value.text == "1"


def is_unloaded(value: Value) -> bool:
    return value.kind == OK and value.text == "0"


def decide(
    subsystems: Collection[str],
    snapshot: Snapshot,
    *,
    owed: bool = False,
    missed: str = "",
    zero_seen: bool = False,
) -> Decision:
    """Decide for a burst on ``subsystems`` (cpu, memory; empty for a request without events).

    ``owed``: a failed reload of ours left no crash kernel loaded; we owe one back, so
    "nothing loaded" is no reason to skip.
    ``missed``: why the kernel may have missed an update whatever crash_hotplug says (the
    events arrived while a load held the kexec lock); a loaded image is then reloaded.
    ``zero_seen``: an earlier read of crash_hotplug already gave 0 for this burst. A single
    0 can be transient (the attribute reads 0 while anyone holds the kexec lock), so a
    first 0 asks for confirmation instead of a reload.
    """
    warnings: list[str] = []
    loaded = snapshot.crash_loaded
    if loaded.kind == ABSENT:
        return Decision(False, "kernel has no crash kernel support (kexec_crash_loaded absent)")
    if is_unloaded(loaded):
        if owed:
            return Decision(True, "the crash kernel our failed reload unloaded is still missing")
        return Decision(False, "no crash kernel loaded: nothing to keep current")
    if not is_loaded(loaded):
        # Fail safe: when we cannot tell, assume a crash kernel is there to keep current.
        warnings.append(
            f"kexec_crash_loaded reads {_show(loaded)}; assuming a crash kernel is loaded"
        )
    if missed:
        return Decision(True, missed, tuple(warnings))
    if not subsystems:
        return Decision(False, "a crash kernel is loaded", tuple(warnings))

    stale: list[str] = []
    zeros = 0
    for subsystem in sorted(subsystems):
        value = snapshot.crash_hotplug.get(subsystem, Value("", ABSENT))
        if kernel_updates(value):
            continue
        if value.kind == ABSENT:
            stale.append(f"{subsystem}: crash_hotplug absent")
        elif value.kind == OK and value.text == "0":
            stale.append(f"{subsystem}: crash_hotplug=0")
            zeros += 1
        else:
            warnings.append(f"{subsystem}/crash_hotplug reads {_show(value)}; reloading to be safe")
            stale.append(f"{subsystem}: crash_hotplug {_show(value)}")
    if not stale:
        return Decision(False, "crash_hotplug=1: the kernel updates the elfcorehdr",
                        tuple(warnings))
    reason = "; ".join(stale) + ": the elfcorehdr is stale"
    if zeros == len(stale) and not zero_seen:
        return Decision(False, "; ".join(stale) + ": confirming (a 0 can be transient)",
                        tuple(warnings), confirm=True)
    return Decision(True, reason, tuple(warnings))


def _show(value: Value) -> str:
    if value.kind == OK:
        return repr(value.text[:40])
    return f"{value.kind} ({value.text})" if value.text else value.kind
