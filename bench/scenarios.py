"""The scenarios: sequences of hotplug events, as a plan of (offset, device kind, action).

Pure: a plan says when each event is due relative to the start and on which kind of
device; the emitter (real uevents) or the in-process driver picks concrete devices, reusing
memory blocks in turn when a burst is larger than the machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wave:
    """``count`` events starting ``offset_s`` after the scenario starts.

    ``interval_s`` 0 means as fast as possible (a burst); otherwise one event every
    ``interval_s`` (a paced stream).
    """

    count: int
    offset_s: float = 0.0
    interval_s: float = 0.0
    kind: str = "memory"  # "memory" | "cpu"
    action: str = "online"


@dataclass(frozen=True)
class Scenario:
    name: str
    waves: tuple[Wave, ...]
    crash_hotplug: str = "0"  # what the fake sysfs says for both subsystems
    receive_buffer: int = 128 * 1024 * 1024  # kdumpd's [events] receive_buffer_bytes
    peers: bool = True  # also run the two peer behaviours (not for kdumpd-only cases)
    quick: bool = False  # part of --quick
    variant: str = ""  # run kdumpd through bench.patched with this drain (a proposal)
    quiet_ms: int = 50  # kdumpd's [events] quiet_ms
    source: str = "udev"  # kdumpd's [events] source

    @property
    def events(self) -> int:
        return sum(w.count for w in self.waves)

    @property
    def needs_reload(self) -> bool:
        return self.crash_hotplug != "1"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("1 event", (Wave(1),), quick=True),
    Scenario("burst 64", (Wave(64),), quick=True),
    Scenario("burst 192", (Wave(192),)),
    Scenario("burst 3840", (Wave(3840),)),
    Scenario("paced 20/s for 10 s", (Wave(200, interval_s=0.05),)),
    Scenario("burst 64, crash_hotplug=1", (Wave(64),), crash_hotplug="1", quick=True),
    Scenario("burst 192, crash_hotplug=1", (Wave(192),), crash_hotplug="1"),
    Scenario("burst 3840, crash_hotplug=1", (Wave(3840),), crash_hotplug="1"),
    Scenario("two bursts of 64, 2 s apart", (Wave(64), Wave(64, offset_s=2.0))),
    Scenario("62 memory + 2 cpu add", (Wave(62), Wave(2, kind="cpu", action="add"))),
    # One DIMM of 4 blocks as the guest reports it: 4 add, then 4 online, over 0.2 s.
    Scenario("DIMM: 4 add + 4 online over 0.2 s",
             (Wave(4, interval_s=0.025, action="add"),
              Wave(4, offset_s=0.1, interval_s=0.025, action="online")), quick=True),
    # A CPU's add and online, 0.04 s apart (0.03-0.05 s in the guest with an online rule).
    Scenario("CPU add + online 0.04 s apart",
             (Wave(1, kind="cpu", action="add"), Wave(1, offset_s=0.04, kind="cpu",
                                                       action="online")), quick=True),
    Scenario("overflow: burst 3840, 4 KiB socket buffer", (Wave(3840),),
             receive_buffer=4096, peers=False, quick=True),
    # Proposals, measured with kdumpd's UdevSource.drain replaced (see bench/patched.py).
    # Drain A ("poll-error") is what kdumpd does since d332910, so only B is still run.
    Scenario("overflow, proposed drain B (receive until EAGAIN)", (Wave(3840),),
             receive_buffer=4096, peers=False, variant="receive"),
    Scenario("burst 3840, proposed drain B (receive until EAGAIN)", (Wave(3840),),
             peers=False, variant="receive"),
)

IN_PROCESS_EXTRA: tuple[Scenario, ...] = (
    # A 16 TiB machine onlining all of its 128 MiB memory blocks.
    Scenario("burst 131072 (16 TiB in 128 MiB blocks)", (Wave(131072),), quick=True),
)


# kdumpd alone with other quiet windows: what the window costs a single event, and where
# bursts start to split on this machine.
SWEEP_QUIET_MS = (25, 100, 250)
SWEEP: tuple[Scenario, ...] = tuple(
    Scenario(f"{base.name} [quiet {q} ms]", base.waves, peers=False, quiet_ms=q)
    for q in SWEEP_QUIET_MS
    for base in SCENARIOS
    if base.name in ("1 event", "burst 3840", "paced 20/s for 10 s", "62 memory + 2 cpu add")
)


# kdumpd reading the kernel's uevents directly instead of udevd's: no udevd processing lag.
KERNEL_SOURCE: tuple[Scenario, ...] = tuple(
    Scenario(f"{base.name} [source kernel]", base.waves, peers=False, source="kernel")
    for base in SCENARIOS
    if base.name in ("1 event", "burst 3840")
)


def plan(scenario: Scenario) -> list[tuple[float, str, str]]:
    """(offset_s, kind, action) for every event, in order of offset."""
    steps = [
        (w.offset_s + i * w.interval_s, w.kind, w.action)
        for w in scenario.waves
        for i in range(w.count)
    ]
    return sorted(steps, key=lambda s: s[0])  # stable: a burst keeps its order


def select(scenarios: tuple[Scenario, ...], *, quick: bool) -> list[Scenario]:
    return [s for s in scenarios if s.quick or not quick]
