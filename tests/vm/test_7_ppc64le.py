"""ppc64le (pseries) scenario: kdumpd's .deb under systemd in a POWER guest, a real panic.

Runs only with ``KDUMPD_VM_PPC64LE=1`` (``make vm-ppc64le``), never in ``make vm-test``:
its own guest (pseries.py) and about 20 minutes for the first image build.

Scenario P1, a ``--hotplug`` image: a plain ``kexec -c -p`` image is loaded by hand
(what a distribution's kdump may leave), a 1 GiB DIMM is hot-added: kdumpd replaces the
stale image once, in load mode ``auto``, which on this kernel (no kexec_file_load) must
be ``kexec -c -p --hotplug`` under the shipped unit (no kexec-load drop-in); a second
DIMM then needs 0 reloads (the kernel updates the header); a panic boots the crash
kernel and /proc/vmcore is checked for missing and extra ranges and the CPUs.

Scenario P2, a plain ``-c`` image and a hot-added CPU core: the kernel sends only
``online``; kdumpd replaces the image once, saying why on POWER; a panic on the new CPU
then reaches the crash kernel and the dump is complete with that CPU's notes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import driver as d
from . import dumpcheck as dc
from . import pseries
from .harness import build_deb

pytestmark = pytest.mark.skipif(os.environ.get("KDUMPD_VM_PPC64LE") != "1",
                                reason="the ppc64le guest: KDUMPD_VM_PPC64LE=1 "
                                       "(make vm-ppc64le)")

RELOADS = "5a3e2172d2c74e88b7b24542a457f44b"  # journal_ids: a reload that worked
NO_RELOAD = "f645b1d272634a9a9fb84cf7d493a030"  # a burst the kernel's update kept current
DIMM_BLOCKS = 4  # 1 GiB in 256 MiB memory blocks


@pytest.fixture(scope="module")
def image() -> pseries.PseriesImage:
    started = time.monotonic()
    built = pseries.build()
    print(f"image {built.dir} ready in {time.monotonic() - started:.0f} s: {built.manifest}")
    return built


@pytest.fixture(scope="module")
def deb() -> Path:
    return build_deb()


@pytest.fixture
def guest(image: pseries.PseriesImage, deb: Path, tmp_path: Path
          ) -> Iterator[pseries.PseriesVm]:
    initrd = pseries.boot_initrd(image, {"/mnt/payload/kdumpd.deb": deb}, tmp_path)
    vm = pseries.PseriesVm(image, initrd, tmp_path / "vm")
    try:
        vm.start(timeout=600)
        print(f"booted to a shell in {vm.boot_s:.0f} s")
        yield vm
    finally:
        vm.stop()
        print(vm.serial_tail(1200))


def online_blocks(vm: pseries.PseriesVm) -> int:
    return int(vm.sh.run("cat /sys/devices/system/memory/memory*/online | grep -c 1",
                         check=False).output.strip() or 0)


def add_dimm_and_wait(vm: pseries.PseriesVm, hotplug: d.Hotplug) -> float:
    before = online_blocks(vm)
    started = time.monotonic()
    hotplug.add_dimm(1024)
    deadline = started + 120
    while online_blocks(vm) < before + DIMM_BLOCKS:
        assert time.monotonic() < deadline, "the DIMM's blocks did not come online"
        time.sleep(0.5)
    return time.monotonic() - started


def test_p1_hotplug_image_dimm_add_no_reload_and_a_complete_dump(
    guest: pseries.PseriesVm,
) -> None:
    vm = guest
    scenario_started = time.monotonic()
    vm.sh.run("dmesg -n 1; dpkg -i /mnt/payload/kdumpd.deb && systemctl daemon-reload && "
              "kdumpd --version", timeout=300)
    config = d.KdumpdConfig("/boot/vmlinux", "/boot/initrd.img",
                            append=pseries.CRASH_APPEND, verify_header=False)
    d.configure_kdumpd(vm, config)
    # What a distribution's kdump may have left: a plain kexec_load image (0/0).
    vm.sh.run("kexec -c -p /boot/vmlinux --initrd=/boot/initrd.img "
              f"--append='{pseries.CRASH_APPEND}'", timeout=300)
    assert d.crash_state(vm) == d.CrashState("1", "0", "0")
    d.restart_kdumpd(vm)
    # What /proc/kallsyms says of kexec_file_load on a kernel built without it (docs).
    print(vm.sh.run("grep -iE 'kexec_file|sys_kexec' /proc/kallsyms | head -20",
                    check=False).output)
    status = vm.sh.run("kdumpd status", timeout=120).output
    print(status)
    assert "kexec_file_load: no (CONFIG_KEXEC_FILE is not set in /boot/config-" in status
    assert "reserved 512 MiB" in status
    cursor = d.journal_cursor(vm)
    hotplug = d.Hotplug(vm)
    first_s = add_dimm_and_wait(vm, hotplug)
    entries = d.wait_journal(vm, cursor, lambda es: any(e.message_id == RELOADS
                                                        for e in es), timeout=300)
    reloads = [e for e in entries if e.message_id == RELOADS]
    print("\n".join(e.get("MESSAGE") for e in entries))
    assert len(reloads) == 1, [e.get("MESSAGE") for e in entries]
    assert d.crash_state(vm) == d.CrashState("1", "1", "1")  # now a --hotplug image
    last = vm.sh.run("kdumpd status --json | python3 -c 'import json,sys; "
                     "print(json.load(sys.stdin)[\"last_load\"][\"how\"])'").output
    assert "-c -p --hotplug" in last, last
    cursor = d.journal_cursor(vm)
    second_s = add_dimm_and_wait(vm, hotplug)
    entries = d.wait_journal(vm, cursor, lambda es: any(e.message_id == NO_RELOAD
                                                        for e in es), timeout=120)
    assert not [e for e in entries if e.message_id == RELOADS], \
        [e.get("MESSAGE") for e in entries]
    # The dump: RAM and CPUs now, then a panic and the crash kernel's /proc/vmcore.
    ram, _ = dc.parse_iomem(vm.sh.run("cat /proc/iomem").output)
    reserved = [pseries.device_tree_reservation(vm)]
    before = dc.Before(ram, reserved,
                       dc.count_cpus(vm.sh.run("cat /sys/devices/system/cpu/online").output))
    vm.sh.run("sync")
    panicked = time.monotonic()
    vm.sh.send("echo c > /proc/sysrq-trigger")
    vm.sh.wait_ready(600)
    up_s = time.monotonic() - panicked
    assert vm.sh.run("test -e /proc/vmcore", check=False).ok, "not in a crash kernel"
    dump = pseries.read_vmcore(vm)
    verdict = dc.compare(before, dump)
    print(f"P1: DIMM 1 online in {first_s:.1f} s, 1 reload ({reloads[0].get('MESSAGE')}); "
          f"DIMM 2 online in {second_s:.1f} s, 0 reloads; crash kernel shell "
          f"{up_s:.0f} s after the panic; {dc.summary(before, dump, verdict)}; scenario "
          f"{time.monotonic() - scenario_started:.0f} s")
    assert verdict.ok, verdict.describe()


def add_cpu_core(vm: pseries.PseriesVm) -> tuple[int, float]:
    """Hot-add the next free ``power9_v2.0-spapr-cpu-core``; the kernel onlines it by
    itself. Its CPU number and the seconds until it was online."""
    before = vm.sh.run("cat /sys/devices/system/cpu/online").output.strip()
    free = [c for c in vm.monitor.execute("query-hotpluggable-cpus") if "qom-path" not in c]
    core = min(free, key=lambda c: c["props"]["core-id"])
    core_id = core["props"]["core-id"]
    started = time.monotonic()
    vm.monitor.execute("device_add", driver=core["type"], id=f"core{core_id}",
                       **{"core-id": core_id})
    deadline = started + 120
    while vm.sh.run("cat /sys/devices/system/cpu/online").output.strip() == before:
        assert time.monotonic() < deadline, "the hot-added core did not come online"
        time.sleep(0.5)
    return dc.count_cpus(before), time.monotonic() - started


def test_p2_plain_image_is_replaced_after_a_cpu_hot_add_and_a_panic_on_it_dumps(
    guest: pseries.PseriesVm,
) -> None:
    """A plain -c image and a hot-added CPU: the kernel sends only ``online``; kdumpd
    replaces the image once (a panic on that CPU would never reach a plain image's crash
    kernel); a panic on the new CPU then gives a complete dump with its notes."""
    vm = guest
    scenario_started = time.monotonic()
    vm.sh.run("dmesg -n 1; dpkg -i /mnt/payload/kdumpd.deb && systemctl daemon-reload",
              timeout=300)
    d.configure_kdumpd(vm, d.KdumpdConfig("/boot/vmlinux", "/boot/initrd.img",
                                          append=pseries.CRASH_APPEND,
                                          verify_header=False))
    vm.sh.run("kexec -c -p /boot/vmlinux --initrd=/boot/initrd.img "
              f"--append='{pseries.CRASH_APPEND}'", timeout=300)
    assert d.crash_state(vm) == d.CrashState("1", "0", "0")
    d.restart_kdumpd(vm)
    d.start_udev_monitor(vm)
    cursor = d.journal_cursor(vm)
    cpu, online_s = add_cpu_core(vm)
    entries = d.wait_journal(vm, cursor, lambda es: any(e.message_id == RELOADS
                                                        for e in es), timeout=300)
    events = d.stop_udev_monitor(vm)
    print("\n".join(e.get("MESSAGE") for e in entries))
    cpu_events = sorted({(e.action, e.devpath) for e in events if e.subsystem == "cpu"})
    print(f"udev cpu events: {cpu_events}")
    assert {action for action, _ in cpu_events} == {"online"}, cpu_events
    reloads = [e for e in entries if e.message_id == RELOADS]
    assert len(reloads) == 1, [e.get("MESSAGE") for e in entries]
    decided = [e.get("MESSAGE") for e in entries if "whole dump" in e.get("MESSAGE")]
    assert decided, [e.get("MESSAGE") for e in entries]
    assert d.crash_state(vm) == d.CrashState("1", "1", "1")
    ram, _ = dc.parse_iomem(vm.sh.run("cat /proc/iomem").output)
    before = dc.Before(ram, [pseries.device_tree_reservation(vm)],
                       dc.count_cpus(vm.sh.run("cat /sys/devices/system/cpu/online").output))
    vm.sh.run("sync")
    panicked = time.monotonic()
    vm.sh.send(f"taskset -c {cpu} sh -c 'echo c > /proc/sysrq-trigger'")
    vm.sh.wait_ready(600)
    up_s = time.monotonic() - panicked
    assert vm.sh.run("test -e /proc/vmcore", check=False).ok, "not in a crash kernel"
    dump = pseries.read_vmcore(vm)
    verdict = dc.compare(before, dump)
    print(f"P2: CPU {cpu} online {online_s:.1f} s after device_add, udev cpu events "
          f"{cpu_events}, 1 reload ({reloads[0].get('MESSAGE')}; decided: {decided[0]}); "
          f"panic on CPU {cpu}: crash kernel shell {up_s:.0f} s later; "
          f"{dc.summary(before, dump, verdict)}; scenario "
          f"{time.monotonic() - scenario_started:.0f} s")
    assert verdict.ok, verdict.describe()
