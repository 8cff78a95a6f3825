"""The decision: given the subsystems a burst touched and what sysfs says now, reload or not.

Pure: no I/O, no clock. Every branch gives a reason a human can read in the journal.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from kdumpd.scheduler import ANY_ACTION
from kdumpd.sysfs import ABSENT, OK, Snapshot, Value

# Per architecture, from the kernel's sources (torvalds/linux, 6.6-6.12):
#
# - s390: the dump kernel builds the ELF core header itself from the memory and CPUs it
#   finds (arch/s390/kernel/crash_dump.c, elfcorehdr_alloc()); the loaded image holds no
#   header to go stale, and there is no crash_hotplug attribute (openSUSE's s390x kdump
#   installs no reload rules). No event needs a reload.
# - x86: the kernel's own update (crash_hotplug=1) rebuilds the header from the System
#   RAM resources (arch_crash_handle_hotplug_event() -> walk_system_ram_res()), and it
#   runs for MEM_ONLINE and MEM_OFFLINE only (crash_memhp_notifier()). An offlined block
#   keeps its resource until it is removed, and nothing rebuilds the header at removal:
#   after a DIMM hot-remove the header still lists the removed range (seen in the Debian
#   13 guest: a PT_LOAD for the 512 MiB that no longer existed). A memory removal
#   therefore needs a reload even when the kernel keeps the image current.
# - powerpc: its update also removes the range (and rewrites the FDT): crash_hotplug=1
#   is the whole truth there, as on the other architectures.
HEADER_BUILT_BY_DUMP_KERNEL = ("s390", "s390x")
REMOVAL_LEAVES_RANGE = ("x86_64", "i386", "i486", "i586", "i686")
REASON_S390 = ("the dump kernel builds its ELF core header itself on this architecture "
               "(s390, elfcorehdr_alloc()): no reload needed")
STALE_AFTER_REMOVE = ("memory: hot-remove, which the kernel's own update does not take out "
                      "of the header on x86")


@dataclass(frozen=True)
class Decision:
    reload: bool
    reason: str
    warnings: tuple[str, ...] = ()
    confirm: bool = False  # read crash_hotplug once more before acting (a 0 may be transient)
    wait_for_load: bool = False  # decide again once a load under way has ended (load_wait.py)


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
    actions: Collection[tuple[str, str]] = (),
    arch: str = "x86_64",
) -> Decision:
    """Decide for a burst on ``subsystems`` (cpu, memory; empty for a request without events).

    ``owed``: a failed reload of ours left no crash kernel loaded; we owe one back, so
    "nothing loaded" is no reason to skip.
    ``missed``: why the kernel may have missed an update whatever crash_hotplug says (the
    events arrived while a load held the kexec lock); a loaded image is then reloaded.
    ``zero_seen``: a 0 was already read again for this burst, or the last read for the
    same image gave 0 too. A single 0 can be transient (crash_hotplug reads 0 while anyone
    holds the kexec lock; kexec_crash_loaded while x86 swaps in an updated header), so a
    first 0 of either asks for confirmation instead of acting on it.
    ``actions``: the (subsystem, action) pairs of the burst (``ANY_ACTION``: unknown).
    ``arch``: the machine (``uname -m``): see the table above.
    """
    warnings: list[str] = []
    loaded = snapshot.crash_loaded
    if loaded.kind == ABSENT:
        return Decision(False, "kernel has no crash kernel support (kexec_crash_loaded absent)")
    if is_unloaded(loaded):
        if owed:
            return Decision(True, "the crash kernel our failed reload unloaded is still missing")
        if missed:
            # The lock holder that made the kernel skip is usually a load, and every load
            # frees the old image first: the one it installs may predate the change.
            return Decision(False, "no crash kernel is loaded now: waiting for the load "
                            "under way to end (its image may predate the change)",
                            wait_for_load=True)
        if subsystems and not zero_seen:
            # x86 sets the image to NULL for an instant while it updates the header.
            return Decision(False, "kexec_crash_loaded reads 0: confirming (a 0 can be "
                            "transient)", confirm=True)
        return Decision(False, "no crash kernel loaded: nothing to keep current")
    if not is_loaded(loaded):
        # Fail safe: when we cannot tell, assume a crash kernel is there to keep current.
        warnings.append(
            f"kexec_crash_loaded reads {_show(loaded)}; assuming a crash kernel is loaded"
        )
    if arch in HEADER_BUILT_BY_DUMP_KERNEL:
        return Decision(False, REASON_S390, tuple(warnings))
    if missed:
        return Decision(True, missed, tuple(warnings))
    if not subsystems:
        return Decision(False, "a crash kernel is loaded", tuple(warnings))

    stale: list[str] = []
    zeros = 0
    removed = arch in REMOVAL_LEAVES_RANGE and any(
        pair in actions for pair in (("memory", "remove"), ("memory", ANY_ACTION)))
    for subsystem in sorted(subsystems):
        value = snapshot.crash_hotplug.get(subsystem, Value("", ABSENT))
        if kernel_updates(value):
            if subsystem == "memory" and removed:
                stale.append(STALE_AFTER_REMOVE)
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
