"""ppc64le (pseries) scenarios: kdumpd's .deb under systemd in a POWER guest, real panics.

Runs only with ``KDUMPD_VM_PPC64LE=1`` (``make vm-ppc64le``), never in ``make vm-test``:
its own guest (pseries.py) and about 12 minutes for the first image build. Each scenario
boots its own guest, installs the .deb, runs kdumpd under the shipped unit (no kexec-load
drop-in) in load mode ``auto``, and ends with a real panic whose /proc/vmcore is checked
for missing and extra ranges and for the CPUs (dumpcheck.compare).

P1, a ``--hotplug`` image (``kexec -c -p --hotplug``, as kexec-tools >= 2.0.28 loads
it): kdumpd restarted while a DIMM is hot-added (issue #31's scenario 3), two CPU cores
hot-added, a second DIMM hot-added and removed, a core removed, a CPU offlined and
onlined: 0 reloads, each burst decided by ``crash_hotplug=1`` (the kernel updates the
header, and on POWER takes removed memory out of it too); the dump has the first DIMM,
not the removed one, and the CPUs online.

P2, a plain ``-c`` image (crash_hotplug 0/0): a hot-added CPU core, for which the
kernel sends only ``online``: kdumpd replaces the image once, by ``-c -p --hotplug``,
saying that a panic on that CPU would lose the whole dump; then kdumpd stopped, the
plain image loaded again by hand and a DIMM hot-added while kdumpd is down: one reload
at its start ("the hardware changed while kdumpd was not running"). kexec-tools leaves
the DIMM out of that header (it lies above the device tree's linux,memory-limit): kdumpd
reads the header back, says so once and does not load again; a second DIMM's event makes
the kernel rebuild the header, which kdumpd then reads back as current; a panic on the
hot-added CPU reaches the crash kernel, the dump is complete, and its PT_LOADs are the
ones kdumpd read back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kdumpd import journal_ids

from . import driver as d
from . import dumpcheck as dc
from . import pseries
from .harness import HANDOVER, build_deb, messages, stop_watch, watch_files

pytestmark = pytest.mark.skipif(os.environ.get("KDUMPD_VM_PPC64LE") != "1",
                                reason="the ppc64le guest: KDUMPD_VM_PPC64LE=1 "
                                       "(make vm-ppc64le)")

DIMM_BLOCKS = 4  # 1 GiB in 256 MiB memory blocks
PLAIN = "kexec -c -p"
HOTPLUG = "kexec -c -p --hotplug"


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


@dataclass
class Log:
    """What a scenario saw, printed at its end (the evidence for RESULTS-ppc64le.md)."""

    name: str
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(f"{self.name}: {line}", flush=True)


def install_kdumpd(vm: pseries.PseriesVm, load: str) -> None:
    """The .deb, kdumpd's configuration, and a crash kernel loaded by hand with ``load``
    (what the distribution's kdump left); then kdumpd (re)started under systemd."""
    vm.sh.run("dmesg -n 1; dpkg -i /mnt/payload/kdumpd.deb && systemctl daemon-reload && "
              "kdumpd --version", timeout=300)
    d.configure_kdumpd(vm, d.KdumpdConfig("/boot/vmlinux", "/boot/initrd.img",
                                          append=pseries.CRASH_APPEND))
    load_by_hand(vm, load)
    d.restart_kdumpd(vm)


def load_by_hand(vm: pseries.PseriesVm, load: str) -> None:
    vm.sh.run(f"{load} /boot/vmlinux --initrd=/boot/initrd.img "
              f"--append='{pseries.CRASH_APPEND}'", timeout=300)
    keeps = "1" if "--hotplug" in load else "0"
    assert d.crash_state(vm) == d.CrashState("1", keeps, keeps), load


def online_blocks(vm: pseries.PseriesVm) -> int:
    return int(vm.sh.run("cat /sys/devices/system/memory/memory*/online | grep -c 1",
                         check=False).output.strip() or 0)


def wait_blocks(vm: pseries.PseriesVm, want: int, started: float) -> float:
    deadline = started + 120
    while online_blocks(vm) != want:
        assert time.monotonic() < deadline, f"memory blocks online: not {want} in 120 s"
        time.sleep(0.5)
    return time.monotonic() - started


def add_dimm(vm: pseries.PseriesVm, hotplug: d.Hotplug) -> tuple[str, float]:
    """A 1 GiB DIMM hot-added; its name and the seconds until its blocks were online."""
    want = online_blocks(vm) + DIMM_BLOCKS
    started = time.monotonic()
    name = hotplug.add_dimm(1024)
    return name, wait_blocks(vm, want, started)


def remove_dimm(vm: pseries.PseriesVm, hotplug: d.Hotplug, name: str) -> float:
    """DIMM ``name`` hot-removed (the kernel offlines it itself); the seconds it took."""
    want = online_blocks(vm) - DIMM_BLOCKS
    started = time.monotonic()
    hotplug.remove_dimm(name, timeout=120)
    return wait_blocks(vm, want, started)


def cpus_online(vm: pseries.PseriesVm) -> str:
    return vm.sh.run("cat /sys/devices/system/cpu/online").output.strip()


def wait_cpus(vm: pseries.PseriesVm, before: str, started: float, what: str) -> float:
    deadline = started + 120
    while cpus_online(vm) == before:
        assert time.monotonic() < deadline, f"the core did not {what} in 120 s"
        time.sleep(0.5)
    return time.monotonic() - started


def add_cpu_core(vm: pseries.PseriesVm) -> tuple[int, str, float]:
    """Hot-add the next free ``power9_v2.0-spapr-cpu-core``; the kernel onlines it by
    itself. Its CPU number (one thread per core), its QOM id and the seconds until it
    was online."""
    before = cpus_online(vm)
    free = [c for c in vm.monitor.execute("query-hotpluggable-cpus") if "qom-path" not in c]
    core = min(free, key=lambda c: c["props"]["core-id"])
    core_id = core["props"]["core-id"]
    started = time.monotonic()
    vm.monitor.execute("device_add", driver=core["type"], id=f"core{core_id}",
                       **{"core-id": core_id})
    return dc.count_cpus(before), f"core{core_id}", wait_cpus(vm, before, started, "online")


def remove_cpu_core(vm: pseries.PseriesVm, qom_id: str) -> float:
    before = cpus_online(vm)
    started = time.monotonic()
    vm.monitor.execute("device_del", id=qom_id)
    return wait_cpus(vm, before, started, "go away")


def decided(vm: pseries.PseriesVm, cursor: str, log: Log, what: str,
            timeout: float = 120) -> list[d.JournalEntry]:
    """kdumpd's entries after ``cursor`` once it decided a burst (a reload done or
    failed, or none needed), logged under ``what``."""
    ids = (journal_ids.RELOAD_DONE, journal_ids.RELOAD_FAILED, journal_ids.SKIPPED)
    entries = d.wait_journal(vm, cursor, lambda es: any(e.message_id in ids for e in es),
                             timeout=timeout)
    said = [m for m in messages(entries) if m]
    log.add(f"{what}: kdumpd said: " + " | ".join(said))
    return entries


def reloads(entries: list[d.JournalEntry]) -> int:
    return sum(e.message_id == journal_ids.RELOAD_DONE for e in entries)


def kept_current(vm: pseries.PseriesVm, cursor: str, log: Log, what: str) -> None:
    """The burst after ``cursor`` was decided with no reload: crash_hotplug said 1."""
    entries = decided(vm, cursor, log, what)
    assert reloads(entries) == 0, messages(entries)
    skipped = [e.get("MESSAGE") for e in entries if e.message_id == journal_ids.SKIPPED]
    assert skipped and all("crash_hotplug=1" in m for m in skipped), messages(entries)
    assert d.crash_state(vm) == d.CrashState("1", "1", "1")


def panic_and_check(vm: pseries.PseriesVm, log: Log, cpu: int | None = None, *,
                    header: dict[str, object] | None = None) -> None:
    """RAM and CPUs now; a panic (on ``cpu``); the crash kernel's /proc/vmcore compared,
    and with what ``kdumpd verify`` read back (``header``) before the panic."""
    ram, _ = dc.parse_iomem(vm.sh.run("cat /proc/iomem").output)
    before = dc.Before(ram, [pseries.device_tree_reservation(vm)],
                       dc.count_cpus(cpus_online(vm)))
    vm.sh.run("sync")
    panicked = time.monotonic()
    trigger = "echo c > /proc/sysrq-trigger"
    vm.sh.send(trigger if cpu is None else f"taskset -c {cpu} sh -c '{trigger}'")
    vm.sh.wait_ready(600)
    up_s = time.monotonic() - panicked
    assert vm.sh.run("test -e /proc/vmcore", check=False).ok, "not in a crash kernel"
    dump = pseries.read_vmcore(vm)
    verdict = dc.compare(before, dump)
    on = "" if cpu is None else f" on CPU {cpu}"
    log.add(f"panic{on}: the crash kernel's shell {up_s:.0f} s later; "
            f"{dc.summary(before, dump, verdict)}; scenario "
            f"{time.monotonic() - log.started:.0f} s")
    assert verdict.ok, verdict.describe()
    if header is not None:  # what kdumpd read back is what the dump holds
        read_back = sorted((a, b + 1) for a, b in header["header_loads"])  # type: ignore
        dumped = sorted((int(a), int(b)) for a, b in dump["loads"])  # type: ignore
        same = "equal" if read_back == dumped else "DIFFER from"
        log.add(f"PT_LOADs read back by kdumpd verify {same} the dump's")
        assert read_back == dumped, (read_back, dumped)


def test_p1_hotplug_image_add_remove_restart_no_reload_and_a_complete_dump(
    guest: pseries.PseriesVm,
) -> None:
    vm, log = guest, Log("P1")
    install_kdumpd(vm, HOTPLUG)
    status = vm.sh.run("kdumpd status", timeout=120).output
    log.add("kdumpd status:\n" + status)
    assert "kexec_file_load: no (CONFIG_KEXEC_FILE is not set in /boot/config-" in status
    assert "reserved 512 MiB" in status
    hotplug = d.Hotplug(vm)
    d.start_udev_monitor(vm)

    # Issue #31's scenario 3: restarted while a DIMM is hot-added. The hand-over file
    # (the distribution's rules stand down while it exists) must never be missing.
    cursor = d.journal_cursor(vm)
    watch_files(vm, HANDOVER)
    vm.sh.run("(systemctl restart kdumpd >/dev/null 2>&1 &)")
    _, online_s = add_dimm(vm, hotplug)
    vm.sh.run("timeout 90 sh -c 'until systemctl is-active -q kdumpd; do sleep 0.2; done'")
    entries = d.wait_journal(vm, cursor, lambda es: False, timeout=8, grace_s=0)
    counts = stop_watch(vm)
    log.add(f"restart beside DIMM 1 (online in {online_s:.1f} s): {reloads(entries)} "
            f"reload(s); hand-over file present in {counts.get('1', 0)} samples, missing "
            f"in {counts.get('0', 0)}; kdumpd said: " + " | ".join(messages(entries)))
    assert reloads(entries) == 0, messages(entries)
    assert counts.get("1", 0) > 0 and counts.get("0", 0) == 0, counts
    assert d.crash_state(vm) == d.CrashState("1", "1", "1")

    cores: list[tuple[int, str]] = []
    for _ in range(2):
        cursor = d.journal_cursor(vm)
        cpu, qom_id, took = add_cpu_core(vm)
        cores.append((cpu, qom_id))
        kept_current(vm, cursor, log, f"CPU core {qom_id} added (CPU {cpu} online in "
                                      f"{took:.1f} s)")
    cursor = d.journal_cursor(vm)
    dimm2, took = add_dimm(vm, hotplug)
    kept_current(vm, cursor, log, f"DIMM 2 added (online in {took:.1f} s)")
    cursor = d.journal_cursor(vm)
    took = remove_dimm(vm, hotplug, dimm2)
    kept_current(vm, cursor, log, f"DIMM 2 removed (gone in {took:.1f} s)")
    cursor = d.journal_cursor(vm)
    cpu, qom_id = cores.pop()
    took = remove_cpu_core(vm, qom_id)
    kept_current(vm, cursor, log, f"CPU core {qom_id} removed (CPU {cpu} gone in "
                                  f"{took:.1f} s)")
    cursor = d.journal_cursor(vm)
    hotplug.cpu_offline_online(1)
    kept_current(vm, cursor, log, "CPU 1 offline and online")
    events = d.stop_udev_monitor(vm)
    log.add("udev events: " + ", ".join(sorted({f"{e.subsystem} {e.action}"
                                               for e in events})))
    assert {(e.subsystem, e.action) for e in events} >= {
        ("memory", "add"), ("memory", "online"), ("memory", "offline"),
        ("memory", "remove"), ("cpu", "online"), ("cpu", "offline")}
    # The dump: DIMM 1 and cores' CPUs in, DIMM 2 and the removed core's CPU out.
    panic_and_check(vm, log)


def test_p2_plain_image_is_replaced_once_per_burst_and_a_panic_on_the_new_cpu_dumps(
    guest: pseries.PseriesVm,
) -> None:
    vm, log = guest, Log("P2")
    install_kdumpd(vm, PLAIN)
    hotplug = d.Hotplug(vm)
    d.start_udev_monitor(vm)
    cursor = d.journal_cursor(vm)
    cpu, qom_id, online_s = add_cpu_core(vm)
    entries = decided(vm, cursor, log, f"CPU core {qom_id} added (CPU {cpu} online in "
                                       f"{online_s:.1f} s)", timeout=300)
    events = d.stop_udev_monitor(vm)
    cpu_events = sorted({(e.action, e.devpath) for e in events if e.subsystem == "cpu"})
    log.add(f"udev cpu events: {cpu_events}")
    assert {action for action, _ in cpu_events} == {"online"}, cpu_events
    assert reloads(entries) == 1, messages(entries)
    assert any("whole dump" in m for m in messages(entries)), messages(entries)
    assert d.crash_state(vm) == d.CrashState("1", "1", "1")
    how = vm.sh.run("kdumpd status --json | python3 -c 'import json,sys; "
                    "print(json.load(sys.stdin)[\"last_load\"][\"how\"])'").output
    log.add(f"kdumpd's load: {how.strip()}")
    assert "-c -p --hotplug" in how, how

    # kdumpd stopped, the distribution's plain image loaded again, a DIMM while it is down.
    d.stop_kdumpd(vm)
    load_by_hand(vm, PLAIN)
    _, online_s = add_dimm(vm, hotplug)
    vm.sh.run("udevadm settle -t 30")
    cursor = d.journal_cursor(vm)
    d.restart_kdumpd(vm)
    entries = decided(vm, cursor, log, f"DIMM added while kdumpd was stopped (online in "
                                       f"{online_s:.1f} s), then started")
    assert reloads(entries) == 1, messages(entries)
    assert any("hardware changed while kdumpd was not running" in m
               for m in messages(entries)), messages(entries)
    assert d.crash_state(vm) == d.CrashState("1", "1", "1")
    # The hand-loaded image lacked the DIMM, and what kexec-tools built now lacks it too
    # (above linux,memory-limit): kdumpd reads both back, says each once as an error,
    # and does not load again (no load could mend it).
    unfixable = [e.get("MESSAGE") for e in entries
                 if e.message_id == journal_ids.HEADER_UNFIXABLE]
    assert [m.split(" lacks ")[0] for m in unfixable] == [
        "the loaded crash kernel", "the crash kernel loaded now"], messages(entries)
    check = verify(vm, log, "after kdumpd's load")
    assert check["verdict"] == "stale" and check["unfixable"], check
    # The next memory event: the kernel rebuilds the header with every DIMM.
    cursor = d.journal_cursor(vm)
    _, online_s = add_dimm(vm, hotplug)
    entries = decided(vm, cursor, log, f"DIMM 2 added (online in {online_s:.1f} s)")
    assert reloads(entries) == 0, messages(entries)
    check = verify(vm, log, "after DIMM 2")
    assert check["verdict"] == "current", check
    # The dump kernel's command line, read from the FDT's bootargs in the reservation.
    assert str(check["loaded_cmdline"]).split() == [
        *pseries.CRASH_APPEND.split(), f"elfcorehdr={int(str(check['header_address'])) // 1024}K"
    ], check
    panic_and_check(vm, log, cpu, header=check)


def verify(vm: pseries.PseriesVm, log: Log, when: str) -> dict[str, object]:
    """``kdumpd verify --json``: the loaded header read back through /proc/kcore."""
    out = vm.sh.run("kdumpd verify --json", check=False, timeout=120).output
    check: dict[str, object] = json.loads(out[out.index("{"):])
    log.add(f"kdumpd verify {when}: {check['verdict']}: {check['why']}"
            + (f"; {check['unfixable']}" if check.get("unfixable") else ""))
    return check
