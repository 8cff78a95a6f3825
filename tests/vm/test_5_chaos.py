"""A seeded chaos run: random hotplugs, restarts and kills, the invariant checked after
each step and a complete dump at the end.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

from . import driver as d
from .guest import GuestError
from .harness import (
    CHAOS_STEPS,
    DROPIN_DIR,
    KEXEC_LOAD_DROPIN,
    Guest,
    cpu_add_burst,
    fresh_state,
    invariant,
    panic_and_check,
    restart_with,
    settle_kdumpd,
)


def test_12_seeded_chaos_keeps_the_invariant_and_the_dump_complete(
    dumping_trixie: Guest, scenario: Callable
) -> None:
    guest = dumping_trixie
    seed = int(os.environ.get("KDUMPD_VM_CHAOS_SEED", str(int(time.time()))))
    result = scenario(
        f"12. chaos: {CHAOS_STEPS} random steps, seed {seed}", guest.release,
        "kdumpd load mode plain (kexec_load without --hotplug, with the kexec-load drop-in) "
        "so crash_hotplug stays 0 and every step needs kdumpd; steps drawn from: DIMM "
        "hot-add/remove, CPU offline/online/hot-add, restart, stop+start, stop during a "
        "reload, SIGKILL, a distribution load over kdumpd's. After each step and a quiet "
        "period: a crash kernel is loaded and it describes the hardware of now. Then a "
        "panic and the dump check. Reproduce with KDUMPD_VM_CHAOS_SEED="
        f"{seed} KDUMPD_VM_CHAOS_STEPS={CHAOS_STEPS} (make vm-chaos).",
    )
    print(f"chaos seed {seed}")
    rng = random.Random(seed)  # noqa: S311 - a reproducible test sequence, not a secret
    vm = guest.vm
    hp = guest.hotplug
    d.stop_kdumpd(vm)
    d.kexec_load(vm, guest.release, ["-c"])
    vm.sh.run(f"mkdir -p {DROPIN_DIR} && cp {KEXEC_LOAD_DROPIN} {DROPIN_DIR}/ && "
              "systemctl daemon-reload")
    fresh_state(vm)
    restart_with(guest, guest.config(load="plain"))
    dimms: list[str] = []
    load = " ".join(["kexec", "-p", "{flag}", f"/boot/vmlinuz-{guest.release}",
                     f"--initrd=/boot/initrd-small-{guest.release}.img",
                     f"'--append={d.CRASH_APPEND}'"])

    def cpu1(online: bool) -> None:
        hp.set_cpu_online(1, online)

    def stop_during_reload() -> None:
        vm.sh.run("echo 0 > /sys/devices/system/cpu/cpu1/online; "
                  "echo 1 > /sys/devices/system/cpu/cpu1/online; "
                  "timeout 20 sh -c 'until [ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 0 ]; "
                  "do :; done'; systemctl stop kdumpd; systemctl start kdumpd", timeout=120)

    steps: dict[str, Callable[[], object]] = {
        "DIMM hot-add": lambda: dimms.append(hp.add_dimm()),
        "DIMM hot-remove": lambda: hp.remove_dimm(dimms.pop(0)),
        "CPU1 offline": lambda: cpu1(False),
        "CPU1 online": lambda: cpu1(True),
        "CPU hot-add + online": cpu_add_burst(guest),
        "systemctl restart kdumpd": lambda: vm.sh.run("systemctl restart kdumpd", timeout=120),
        "systemctl stop, then start": lambda: vm.sh.run(
            "systemctl stop kdumpd; systemctl start kdumpd", timeout=120),
        "stop while a reload runs": stop_during_reload,
        "kill -9 kdumpd": lambda: vm.sh.run("systemctl kill -s KILL kdumpd; sleep 7"),
        "distribution load over kdumpd's (-s)": lambda: vm.sh.run(
            load.format(flag="-s"), timeout=120),
        "distribution load over kdumpd's (-c)": lambda: vm.sh.run(
            load.format(flag="-c"), timeout=120),
    }
    cpus_added = 0
    problems = []
    needed = 0
    for number in range(1, CHAOS_STEPS + 1):
        names = [n for n in steps
                 if not (n == "DIMM hot-remove" and not dimms)
                 and not (n == "DIMM hot-add" and len(dimms) >= 3)
                 and not (n == "CPU hot-add + online" and cpus_added >= 2)
                 # After a -s load the kernel keeps the image current and the steps left
                 # need nothing from kdumpd: only in the last third of the run.
                 and not (n.endswith("(-s)") and number <= CHAOS_STEPS * 2 // 3)]
        name = rng.choice(names)
        cpus_added += name == "CPU hot-add + online"
        # A step needs kdumpd unless the image the kernel keeps current (crash_hotplug 1,
        # after a distribution's -s load) was loaded before it.
        kernel_keeps = d.crash_state(vm).hotplug() == "cpu=1 memory=1"
        needed += not kernel_keeps
        started = time.monotonic()
        try:
            steps[name]()
        except GuestError as error:
            result.notes.append(f"step {number}: {name}: the guest refused ({error}); skipped")
            continue
        settle_kdumpd(vm)
        wrong = invariant(vm)
        state = d.crash_state(vm)
        result.notes.append(f"step {number}: {name} ({time.monotonic() - started:.0f} s): "
                            f"loaded {state.loaded}, {state.hotplug()}, "
                            f"kdumpd needed: {'no' if kernel_keeps else 'yes'}: "
                            + (f"INVARIANT BROKEN: {wrong}" if wrong else "invariant holds"))
        if wrong:
            problems.append(f"step {number} ({name}): {wrong}")
    result.notes.append(f"steps that needed kdumpd (crash_hotplug 0 before them): {needed} "
                        f"of {CHAOS_STEPS}")
    verdict, up_s, line = panic_and_check(guest)
    result.notes.append(f"panic after the last step: crash kernel shell after {up_s:.0f} s. "
                        f"{line}")
    assert not problems, problems
    assert verdict.ok, verdict.describe()
