"""The decision: given the subsystems a burst touched and what sysfs says now, reload or not.

Pure: no I/O, no clock. Every branch gives a reason a human can read in the journal.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from kdumpd import arch as arch_facts
from kdumpd.scheduler import ANY_ACTION
from kdumpd.sysfs import ABSENT, OK, Snapshot, Value

# Per architecture (arch.py has the facts and their sources): s390's dump kernel builds
# the header itself, so no event needs a reload; x86's own update leaves a hot-removed
# range in the header, so a memory removal needs a reload even when the kernel keeps the
# image current; powerpc's update also removes the range, so crash_hotplug=1 is the whole
# truth there, and a panic on a CPU that a plain -c image does not know loses the whole
# dump, which the reason says (the reload after any CPU event is the same as elsewhere).
HEADER_BUILT_BY_DUMP_KERNEL = arch_facts.S390
REMOVAL_LEAVES_RANGE = arch_facts.X86
REASON_S390 = ("the dump kernel builds its ELF core header itself on this architecture "
               "(s390, elfcorehdr_alloc()): no reload needed")
STALE_AFTER_REMOVE = ("memory: hot-remove, which the kernel's own update does not take out "
                      "of the header on x86")
WHOLE_DUMP_LOST = ("a panic on a CPU this image does not know would lose the whole dump on "
                   "this architecture")


@dataclass(frozen=True)
class Decision:
    reload: bool
    reason: str
    warnings: tuple[str, ...] = ()
    confirm: bool = False  # read crash_hotplug once more before acting (a 0 may be transient)
    wait_for_load: bool = False  # decide again once a load under way has ended (load_wait.py)
    # The reload is for what the ELF core header cannot show, so a header read back as
    # current does not cancel it: powerpc's plain image after a CPU event, whose dump
    # kernel's device tree (loaded with it) lacks the CPU a panic may run on.
    beyond_header: bool = False


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
    ``arch``: the machine (``uname -m``): see arch.py.
    """
    facts = arch_facts.facts(arch)
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
    if facts.header_built_by_dump_kernel:
        return Decision(False, REASON_S390, tuple(warnings))
    # powerpc: what the header cannot show (a CPU missing from the dump kernel's device
    # tree) is why any reload over CPUs must run whatever the header read back says.
    fdt_matters = facts.unknown_cpu_loses_dump
    if missed:
        return Decision(True, missed, tuple(warnings),
                        beyond_header=fdt_matters and "cpu" in subsystems)
    if not subsystems:
        return Decision(False, "a crash kernel is loaded", tuple(warnings))

    stale: list[str] = []
    zeros = 0
    removed = facts.removal_leaves_range and any(
        pair in actions for pair in (("memory", "remove"), ("memory", ANY_ACTION)))
    for subsystem in sorted(subsystems):
        value = snapshot.crash_hotplug.get(subsystem, Value("", ABSENT))
        if kernel_updates(value):
            if subsystem == "memory" and removed:
                stale.append(STALE_AFTER_REMOVE)
            continue
        lost = f" ({WHOLE_DUMP_LOST})" if subsystem == "cpu" and \
            facts.unknown_cpu_loses_dump else ""
        if value.kind == ABSENT:
            stale.append(f"{subsystem}: crash_hotplug absent{lost}")
        elif value.kind == OK and value.text == "0":
            stale.append(f"{subsystem}: crash_hotplug=0{lost}")
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
    return Decision(True, reason, tuple(warnings),
                    beyond_header=fdt_matters and any(p.startswith("cpu:") for p in stale))


def _show(value: Value) -> str:
    if value.kind == OK:
        return repr(value.text[:40])
    return f"{value.kind} ({value.text})" if value.text else value.kind
