"""Proof by dump: a real panic after hotplug, /proc/vmcore checked for missing and extra
memory (dumpcheck.py), with kdumpd, without it (the control), and after the kernel's
own skipped updates and a hot-remove.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kdumpd import journal_ids

from . import driver as d
from .guest import Vm
from .harness import (
    DROPIN_DIR,
    KEXEC_LOAD_DROPIN,
    SKIP_LINE,
    Guest,
    fresh_state,
    hotplug_then_dump,
    messages,
    panic_and_check,
    panic_and_check_after,
    restart_with,
    run_burst,
    said,
    settle_kdumpd,
    start_fresh,
    verify_loaded,
)

HEADER_CURRENT = "the loaded header, read back, is current"


@pytest.mark.parametrize("mode", ["auto", "hotplug"])
def test_10_dump_after_hotplug_is_complete_with_kdumpd(
    dumping_trixie: Guest, scenario: Callable, mode: str
) -> None:
    guest = dumping_trixie
    result = scenario(
        f"10. proof by dump: DIMM then CPU hot-add, kdumpd load mode {mode}, then a panic",
        guest.release,
        "Crash kernel loaded with `kexec -p -c` (crash_hotplug=0, kexec-tools' own header); "
        f"kdumpd backend kexec, load mode {mode}"
        + (" with the package's kexec-load.conf drop-in" if mode == "hotplug" else
           " (file under the shipped unit)")
        + ". After the hotplugs `echo c > /proc/sysrq-trigger`; in the crash kernel the "
        "PT_LOAD ranges of /proc/vmcore must cover every System RAM range of the first "
        "kernel (above 1 MiB, less the crash kernel's reservation) and its NT_PRSTATUS "
        "notes must number the online CPUs.",
    )
    vm = guest.vm
    d.stop_kdumpd(vm)
    d.kexec_load(vm, guest.release, ["-c"])
    if mode == "hotplug":
        vm.sh.run(f"mkdir -p {DROPIN_DIR} && cp {KEXEC_LOAD_DROPIN} {DROPIN_DIR}/ && "
                  "systemctl daemon-reload")
    fresh_state(vm)
    restart_with(guest, guest.config(load=mode))
    verdict = hotplug_then_dump(guest, result)
    assert result.bursts[0].reloads >= 1, said(result.bursts[0])
    assert verdict.ok, verdict.describe()


def test_11_dump_without_kdumpd_misses_the_hotplug_control(
    dumping_trixie: Guest, scenario: Callable
) -> None:
    guest = dumping_trixie
    result = scenario(
        "11. control: the same without kdumpd: the dump check must fail", guest.release,
        "kdumpd stopped, a `kexec -p -c` image that nobody reloads; DIMM then CPU hot-add, "
        "panic, the same check as scenario 10. It must find the DIMM's range and the new "
        "CPU missing, or the check could not tell a stale dump from a complete one.",
    )
    vm = guest.vm
    d.stop_kdumpd(vm)
    d.kexec_load(vm, guest.release, ["-c"])
    verdict = panic_and_check_after(guest, result)
    assert not verdict.ok, "the check passed a dump that nobody kept current"
    assert any(start >= 0x100000000 for start, _ in verdict.missing), verdict.describe()
    assert verdict.cpus_in_dump < verdict.cpus_expected, verdict.describe()


def test_17_the_kernels_skipped_updates_and_hot_remove_with_a_kernel_updated_image(
    dumping_trixie: Guest, scenario: Callable
) -> None:
    guest = dumping_trixie
    result = scenario(
        "17. what the kernel did: its skipped update, a hot-remove, then a panic",
        guest.release,
        "Crash kernel loaded with `kexec -p -s` (crash_hotplug=1: the kernel updates the "
        "header itself); kdumpd load auto. (1) `kdumpd status` in a loop during a DIMM "
        "hot-add: no skip line in the kernel log (status no longer reads "
        "kexec_crash_size). (2) a DIMM hot-add while `kexec -s -p` runs by hand in a loop, "
        "as a distribution's tool would: the kernel skips its update and logs it, kdumpd "
        "reads the line from the journal and reloads. (3) the first DIMM hot-removed "
        "(device_del): on x86 the kernel's own update keeps the removed range, so kdumpd "
        "reloads although crash_hotplug reads 1. Then a panic; the dump check fails on "
        "missing and on EXTRA ranges.",
    )
    vm = guest.vm
    start_fresh(guest, ["-s"], load="auto")
    vm.sh.run("dmesg -C")

    # (1) status polled during a hotplug the kernel handles itself.
    vm.sh.run("touch /run/kdumpd-status-loop; nohup sh -c 'while [ -e /run/kdumpd-status-loop ]; "
              "do kdumpd status >/dev/null 2>&1; done' >/dev/null 2>&1 &")
    first = guest.hotplug.add_dimm()
    vm.sh.run("udevadm settle -t 60; rm -f /run/kdumpd-status-loop; sleep 1", timeout=90)
    status_skips = vm.sh.run(f"dmesg | grep -c '{SKIP_LINE}' || true").output.strip()
    result.notes.append(f"(1) DIMM hot-add with `kdumpd status` in a loop: skip lines in "
                        f"the kernel log: {status_skips}")

    # (2) someone else's loads hold the kexec lock while a DIMM comes online.
    load = " ".join(["kexec", "-p", "-s", f"/boot/vmlinuz-{guest.release}",
                     f"--initrd=/boot/initrd-small-{guest.release}.img",
                     f"'--append={d.CRASH_APPEND}'"])
    cursor = d.journal_cursor(vm)
    vm.sh.write_file("/root/load-loop.sh", "#!/bin/sh\nwhile [ -e /run/kdumpd-load-loop ]; "
                     f"do {load} >>/root/load-loop.log 2>&1; done\n")
    vm.sh.run("dmesg -C; touch /run/kdumpd-load-loop; "
              "nohup sh /root/load-loop.sh >/dev/null 2>&1 &")
    vm.sh.run("sleep 1")
    guest.hotplug.add_dimm()
    vm.sh.run("udevadm settle -t 60; sleep 2; rm -f /run/kdumpd-load-loop; "
              "while pgrep -x kexec >/dev/null; do sleep 0.2; done", timeout=120)
    skipped = vm.sh.run(f"dmesg | grep '{SKIP_LINE}' || true").output.strip()
    loops = vm.sh.run("grep -c . /root/load-loop.log || true").output.strip()
    # The skip line marks the DIMM's burst as missed; kdumpd then reloads, or reads the
    # loaded header back and finds it current (the loop's last load began after the DIMM).
    entries = d.wait_journal(vm, cursor, lambda es: not skipped or any(
        e.message_id == journal_ids.RELOAD_DONE or HEADER_CURRENT in e.get("MESSAGE")
        for e in es), timeout=120)
    said_2 = messages(entries)
    reloads_2 = sum(e.message_id == journal_ids.RELOAD_DONE for e in entries)
    result.notes.append(f"(2) DIMM hot-add during a loop of foreign `kexec -s -p` loads: "
                        f"kernel: {skipped.splitlines()[0] if skipped else '(no skip line)'} "
                        f"({len(skipped.splitlines())} line(s); the loop's kexec printed "
                        f"{loops} line(s)); kdumpd: {reloads_2} "
                        "reload(s); it said: " + " | ".join(said_2))
    if skipped:
        assert any("kexec_trylock() failed" in m for m in said_2), said_2
        assert reloads_2 >= 1 or any(HEADER_CURRENT in m for m in said_2), said_2

    # (3) hot-remove with the kernel keeping the image current.
    burst = run_burst(guest, "DIMM hot-remove (device_del), crash_hotplug=1",
                      lambda: guest.hotplug.remove_dimm(first))
    result.bursts.append(burst)
    assert (burst.before.memory, burst.before.loaded) == ("1", "1"), said(burst)
    assert burst.reloads >= 1 and burst.failed == 0, said(burst)
    assert any("hot-remove" in r for r in burst.reasons), said(burst)
    verdict, up_s, line = panic_and_check(guest)
    result.notes.append(f"panic after the hot-remove: crash kernel shell after {up_s:.0f} s. "
                        f"{line}")
    assert status_skips == "0", "kdumpd status made the kernel skip its update"
    assert verdict.ok, verdict.describe()


READERS = "/run/kdumpd-readers"


def start_readers(vm: Vm, *, status: bool) -> None:
    """A 50 ms poller of both crash_hotplug files (a read during a load prints the kernel's
    skip line and reads 0), and `kdumpd status` every 0.5 s, until READERS is removed."""
    vm.sh.run(f"touch {READERS}; nohup sh -c 'while [ -e {READERS} ]; do cat "
              "/sys/devices/system/cpu/crash_hotplug /sys/devices/system/memory/crash_hotplug "
              ">/dev/null 2>&1; sleep 0.05; done' >/dev/null 2>&1 &")
    if status:
        vm.sh.run(f"nohup sh -c 'while [ -e {READERS} ]; do kdumpd status >/dev/null 2>&1; "
                  "sleep 0.5; done' >/dev/null 2>&1 &")


def skip_lines(vm: Vm) -> int:
    return int(vm.sh.run(f"dmesg | grep -c '{SKIP_LINE}' || true").output.strip() or 0)


def reloads_since(vm: Vm, cursor: str) -> tuple[int, list[str]]:
    entries = d.journal_since(vm, cursor)
    return sum(e.message_id == journal_ids.RELOAD_DONE for e in entries), messages(entries)


def test_18_proof_not_proxies_the_header_read_back_and_reader_storms(
    dumping_trixie: Guest, scenario: Callable
) -> None:
    guest = dumping_trixie
    result = scenario(
        "18. proof, not proxies: the loaded header read back, and readers of crash_hotplug",
        guest.release,
        "(1) kdumpd stopped, a `kexec -p -c` image, a DIMM hot-added: `kdumpd verify` must "
        "say stale (the DIMM missing); kdumpd started with no state for this boot reads the "
        "header back, reloads once, and `kdumpd verify` says current. (2) a `-c` image and "
        "a DIMM hot-add (one reload of kdumpd's) while a 50 ms poller reads both "
        "crash_hotplug files and `kdumpd status` runs every 0.5 s, for 20 s after it: at "
        "most one extra reload in all, whatever the kernel printed. (3) kdumpd stopped, "
        "three foreign `kexec -s -p` loads with the poller running (each read during a load "
        "prints the skip line), then kdumpd's first start of the boot with those lines in "
        "the journal and a current header: no reload.",
    )
    vm = guest.vm
    # (1) stale, then current, decided by the header read back.
    d.stop_kdumpd(vm)
    d.kexec_load(vm, guest.release, ["-c"])
    guest.hotplug.add_dimm()
    vm.sh.run("udevadm settle -t 60", timeout=90)
    before = verify_loaded(vm)
    fresh_state(vm)
    cursor = d.journal_cursor(vm)
    restart_with(guest, guest.config(load="auto"))
    settle_kdumpd(vm)
    after = verify_loaded(vm)
    reloads_1, said_1 = reloads_since(vm, cursor)
    result.notes.append(
        f"(1) before kdumpd: verify {before['verdict']} ({before['why']}, read in "
        f"{before['read_s']} s); kdumpd's start: {reloads_1} reload(s), it said: "
        + " | ".join(said_1[-4:]) + f"; after: verify {after['verdict']} ({after['why']})")
    assert before["verdict"] == "stale", before
    assert any(int(a) >= 1 << 32 for a, _ in before["ranges_missing"]), before  # type: ignore[attr-defined]
    assert reloads_1 == 1 and after["verdict"] == "current", (said_1, after)

    # (2) readers during and after one reload of kdumpd's.
    start_fresh(guest, ["-c"], load="auto")
    settle_kdumpd(vm)
    vm.sh.run("dmesg -C")
    cursor = d.journal_cursor(vm)
    start_readers(vm, status=True)
    guest.hotplug.add_dimm()
    vm.sh.run("udevadm settle -t 60; sleep 20", timeout=120)
    vm.sh.run(f"rm -f {READERS}; sleep 1")
    settle_kdumpd(vm)
    reloads_2, said_2 = reloads_since(vm, cursor)
    lines_2 = skip_lines(vm)
    header_2 = verify_loaded(vm)
    result.notes.append(
        f"(2) DIMM hot-add on a -c image with a 50 ms crash_hotplug poller and `kdumpd "
        f"status` every 0.5 s: kernel skip lines {lines_2}, kdumpd reloads {reloads_2}, "
        f"verify after: {header_2['verdict']}; kdumpd said: " + " | ".join(
            m for m in said_2 if "kexec_trylock" in m or "reload" in m)[:1500])
    assert 1 <= reloads_2 <= 2, said_2
    assert header_2["verdict"] == "current", header_2

    # (3) a boot's earlier reader lines and a current header at kdumpd's first start.
    d.stop_kdumpd(vm)
    start_readers(vm, status=False)
    for _ in range(3):
        d.kexec_load(vm, guest.release, ["-s"])
    vm.sh.run(f"rm -f {READERS}; sleep 1")
    lines_3 = skip_lines(vm)
    fresh_state(vm)
    cursor = d.journal_cursor(vm)
    restart_with(guest, guest.config(load="auto"))
    settle_kdumpd(vm)
    reloads_3, said_3 = reloads_since(vm, cursor)
    header_3 = verify_loaded(vm)
    result.notes.append(
        f"(3) kernel skip lines this boot before kdumpd's start: {lines_3}; kdumpd's start: "
        f"{reloads_3} reload(s), header {header_3['verdict']}; it said: "
        + " | ".join(m for m in said_3 if "kexec_trylock" in m or "header" in m)[:800])
    assert lines_3 >= 1, "no reader line was printed: the storm did not happen"
    assert reloads_3 == 0 and header_3["verdict"] == "current", (said_3, header_3)
