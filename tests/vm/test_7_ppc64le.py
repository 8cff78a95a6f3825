"""ppc64le (pseries) scenario: kdumpd's .deb under systemd in a POWER guest, a real panic.

Runs only with ``KDUMPD_VM_PPC64LE=1`` (``make vm-ppc64le``), never in ``make vm-test``:
its own guest (pseries.py) and about 20 minutes for the first image build.

Scenario P1, a ``--hotplug`` image: a plain ``kexec -c -p`` image is loaded by hand
(what a distribution's kdump may leave), a 1 GiB DIMM is hot-added: kdumpd replaces the
stale image once, in load mode ``auto``, which on this kernel (no kexec_file_load) must
be ``kexec -c -p --hotplug`` under the shipped unit (no kexec-load drop-in); a second
DIMM then needs 0 reloads (the kernel updates the header); a panic boots the crash
kernel and /proc/vmcore is checked for missing and extra ranges and the CPUs.
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


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[pseries.PseriesVm]:
    started = time.monotonic()
    image = pseries.build()
    print(f"image {image.dir} ready in {time.monotonic() - started:.0f} s: {image.manifest}")
    deb = build_deb()
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
