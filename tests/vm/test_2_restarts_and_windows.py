"""Restarts, kills and the windows without a crash kernel, on one Debian 13 guest:
kdumpd stopped, killed and upgraded mid-reload; the window per load mode; a hotplug
during kdumpd's own load.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

from kdumpd import journal_ids

from . import driver as d
from .harness import (
    HANDOVER,
    Guest,
    fresh_state,
    guest_argv_str,
    messages,
    poll_window,
    run_burst,
    said,
    start_fresh,
    start_poller,
    stop_poller,
    stop_watch,
    verify_loaded,
    watch_files,
)


def test_7_restarts_and_kills_keep_a_current_crash_kernel(
    trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "7. never lose the crash kernel: hotplug while stopped, stop during a reload, "
        "SIGKILL with an owed image", trixie.release,
        "Crash kernel loaded with `kexec -p -c` (crash_hotplug=0); kdumpd load auto (file "
        "under the shipped unit). (a) stop kdumpd, hot-add a DIMM, start; (b) a DIMM "
        "hot-add (which the `-c` header lacks) starts kdumpd's reload, `systemctl stop "
        "kdumpd` as soon as the load syscall freed "
        "the old image; (c) with kdumpd running: `kexec -p -u` and a state file saying "
        "kdumpd owes the image (what a reload that failed inside the syscall leaves), then "
        "SIGKILL; systemd restarts kdumpd.",
    )
    vm = trixie.vm
    start_fresh(trixie, ["-c"], load="auto")

    # (a) hotplug while kdumpd is not running
    d.stop_kdumpd(vm)
    at_stop = vm.sh.run(f"test -e {HANDOVER} && echo present || echo absent").output.strip()
    assert at_stop == "absent", "a final stop must hand reloads back to the distribution"
    trixie.hotplug.add_dimm()
    vm.sh.run("udevadm settle -t 30")
    cursor = d.journal_cursor(vm)
    d.restart_kdumpd(vm)
    entries = d.wait_journal(vm, cursor, lambda es: any(
        e.message_id in (journal_ids.RELOAD_DONE, journal_ids.RELOAD_FAILED) for e in es),
        timeout=60)
    after = d.crash_state(vm)
    said_a = messages(entries)
    reloads = sum(e.message_id == journal_ids.RELOAD_DONE for e in entries)
    result.notes.append(f"(a) after the restart: {reloads} reload(s); crash state "
                        f"{after.hotplug()}, loaded {after.loaded}; kdumpd said: "
                        + " | ".join(said_a))
    assert reloads == 1, said_a
    assert any("hardware changed while kdumpd was not running" in m and "reloading" in m
               for m in said_a), said_a
    assert after.loaded == "1" and (after.cpu, after.memory) == ("1", "1")

    # (b) stop while a reload runs
    d.stop_kdumpd(vm)
    d.kexec_load(vm, trixie.release, ["-c"])  # crash_hotplug=0 again, same hardware
    fresh_state(vm)
    d.restart_kdumpd(vm)
    cursor = d.journal_cursor(vm)
    started = time.monotonic()
    # A DIMM: the -c header lacks it (a CPU offline+online would not: the header has a
    # note for every present CPU, and kdumpd reads that back and does not reload).
    trixie.hotplug.add_dimm()
    vm.sh.run("timeout 30 sh -c 'until [ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 0 ]; "
              "do :; done'; systemctl stop kdumpd", timeout=120)
    stop_s = time.monotonic() - started
    after = d.crash_state(vm)
    entries = d.journal_since(vm, cursor)
    said_b = messages(entries)
    result.notes.append(f"(b) stop issued inside the load; stop returned after {stop_s:.1f} s "
                        f"(from the CPU burst); afterwards loaded {after.loaded}, "
                        f"{after.hotplug()}; kdumpd said: " + " | ".join(said_b))
    assert after.loaded == "1" and any(
        e.message_id == journal_ids.RELOAD_DONE for e in entries), said_b

    # (c) SIGKILL while kdumpd owes the image it unloaded
    d.restart_kdumpd(vm)
    boot_id = vm.sh.run("cat /proc/sys/kernel/random/boot_id").output.strip()
    vm.sh.run("kexec -p -u")
    vm.sh.write_file("/var/lib/kdumpd/state.json", json.dumps(
        {"version": 1, "boot_id": boot_id, "owed": True, "fingerprint": "", "hardware": "",
         "last_load": None}))
    cursor = d.journal_cursor(vm)
    # From here on, through the SIGKILL's automatic restart and a `systemctl restart`, the
    # hand-over file must never be missing (a sample loop in the guest counts the misses).
    watch_files(vm, HANDOVER)
    vm.sh.run("systemctl kill -s KILL kdumpd")
    entries = d.wait_journal(vm, cursor, lambda es: any(
        e.message_id == journal_ids.RELOAD_DONE for e in es), timeout=60)
    after = d.crash_state(vm)
    said_c = messages(entries)
    restarts = d.unit_state(vm).get("NRestarts", "?")
    result.notes.append(f"(c) after SIGKILL (NRestarts={restarts}): loaded {after.loaded}, "
                        f"{after.hotplug()}; kdumpd said: " + " | ".join(said_c))
    assert after.loaded == "1", said_c
    assert any("restoring the crash kernel kdumpd unloaded" in m for m in said_c), said_c
    d.restart_kdumpd(vm)
    counts = stop_watch(vm)
    result.notes.append(f"(c) hand-over file through the SIGKILL restart and a `systemctl "
                        f"restart`: present in {counts.get('1', 0)} samples, missing in "
                        f"{counts.get('0', 0)}")
    assert counts.get("1", 0) > 0 and counts.get("0", 0) == 0, counts


def test_8_window_without_a_crash_kernel_per_load_mode(
    trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "8. the window without a crash kernel during a reload, per load mode", trixie.release,
        "kexec_crash_loaded polled in a tight Python loop in the guest while one reload runs "
        "over a `kexec -p -c` image. kdumpd: `kdumpd reload` (the CLI, as root outside the "
        "unit, so kexec_load can work) with load mode file and hotplug, kdumpd stopped, "
        "`verify_header = false` (the header read back is current, so kdumpd would rightly "
        "not reload: this measures the load). "
        "Distributions: `kexec -p -u` then `kexec -p -s` (what kdumpctl and kdump-config "
        "reload do).",
    )
    vm = trixie.vm
    d.stop_kdumpd(vm)
    kernel = f"/boot/vmlinuz-{trixie.release}"
    initrd = f"/boot/initrd-small-{trixie.release}.img"
    load_s = guest_argv_str(["kexec", "-p", "-s", kernel, f"--initrd={initrd}",
                             f"--append={d.CRASH_APPEND}"])
    runs: dict[str, list[str]] = {}
    for _ in range(3):
        for mode in ("file", "hotplug"):
            measured = dataclasses.replace(trixie.config(load=mode), verify_header=False)
            # Its own state directory, root's (one under the world-writable /tmp is refused:
            # anyone could have made it first).
            config = measured.toml() + "[state]\ndir = \"/run/kdumpd-cli\"\n"
            vm.sh.write_file(f"/tmp/kdumpd-{mode}.toml", config)
            d.kexec_load(vm, trixie.release, ["-c"])
            runs.setdefault(f"kdumpd, load {mode}", []).append(
                poll_window(vm, f"kdumpd reload --config /tmp/kdumpd-{mode}.toml"))
            state = d.crash_state(vm)
            assert state.loaded == "1" and state.memory == "1", (mode, state)
        d.kexec_load(vm, trixie.release, ["-c"])
        runs.setdefault("unload, then kexec -p -s", []).append(
            poll_window(vm, f"kexec -p -u; {load_s}"))
    # How long crash_hotplug reads 0 while the kernel's own elfcorehdr update holds the
    # kexec lock (what kdumpd's confirmation interval must outlast).
    d.kexec_load(vm, trixie.release, ["-s"])
    own = [poll_window(vm, "for i in 1 2 3; do echo 0 > /sys/devices/system/cpu/cpu1/online; "
                           "echo 1 > /sys/devices/system/cpu/cpu1/online; done",
                       path="/sys/devices/system/cpu/crash_hotplug")]
    start_poller(vm, "/sys/devices/system/memory/crash_hotplug")
    trixie.hotplug.add_dimm()
    vm.sh.run("sleep 2; udevadm settle -t 30; sleep 1", timeout=60)
    own.append(stop_poller(vm))
    for name, lines in runs.items():
        result.notes.append(f"{name}: " + " ; ".join(lines))
    result.notes.append("crash_hotplug while the kernel updates a `-s` image itself (CPU1 "
                        "offline+online x3; idle; a DIMM hot-add): " + " ; ".join(own))
    for name, lines in runs.items():
        for line in lines:
            assert "windows_ms=" in line and "-1.0" not in line, (name, line)


def test_9_hotplug_during_kdumpds_own_load_is_decided_by_what_is_loaded(
    trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "9. a DIMM hot-add while kdumpd's own hotplug-capable load runs", trixie.release,
        "Crash kernel loaded with `kexec -p -c`; kdumpd load auto (file under the unit, a "
        "1.8 s syscall in the guest). A DIMM hot-add starts kdumpd's reload; a second DIMM "
        "is added as soon as the load syscall freed the old image. The kernel skips its "
        "own elfcorehdr update while the load holds the kexec lock, and crash_hotplug reads "
        "1 afterwards: kdumpd reads the header its load left back and reloads once more "
        "only if it lacks the second DIMM (kexec_file_load builds the header inside the "
        "syscall, after freeing the old image, so it may already have it). After it the "
        "header read back must be current.",
    )
    vm = trixie.vm
    # Its own configuration, not an earlier scenario's; fresh state: the earlier scenarios
    # changed the hardware, and no start-up decision is wanted.
    start_fresh(trixie, ["-c"], load="auto")
    vm.sh.run("dmesg -C")

    def dimm_then_dimm_inside_the_load() -> None:
        trixie.hotplug.add_dimm()
        vm.sh.run("timeout 30 sh -c 'until [ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 0 ]; "
                  "do :; done'", timeout=60)
        trixie.hotplug.add_dimm()

    burst = run_burst(trixie, "a DIMM, then a DIMM during kdumpd's load",
                      dimm_then_dimm_inside_the_load)
    result.bursts.append(burst)
    kernel_log = vm.sh.run("dmesg | grep -i 'kdump image may be inaccurate' || true").output
    header = verify_loaded(vm)
    result.notes.append("kernel log during the load: "
                        + (kernel_log.strip() or "(no 'kdump image may be inaccurate' line)")
                        + f"; the header read back afterwards: {header['verdict']} "
                        f"({header['why']})")
    assert burst.failed == 0, said(burst)
    assert burst.reloads in (1, 2), said(burst)
    if burst.reloads == 2:  # the first load's header lacked the second DIMM
        assert any("held the kexec lock" in r or "changed while our load ran" in r
                   for r in burst.reasons), said(burst)
    assert header["verdict"] == "current", header
    assert burst.after.loaded == "1"
