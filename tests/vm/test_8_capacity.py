"""Capacity: where a real dump stops working as memory grows, and kdumpd's warning.

The long measurement (``make vm-long``, only with ``KDUMPD_VM_LONG=1``): per size a fresh
guest with ``crashkernel=256M``, kdumpd's own growth-safe load (its default command line
for a machine without a distribution kdump, the harness's small initrd), 0 to 64 GiB
hot-added in 8 GiB DIMMs, a real panic, and in the crash kernel makedumpfile
(``-c -d 31``, Debian kdump-tools' default) writing the dump to a file, awaited to its
end; the saved dump checked for missing and extra ranges (dumpcheck.py). With
``KDUMPD_VM_LONG_TAKES=1`` the control: kdumpd's command line without
``acpi_no_memhotplug`` (``growth_safe = false``), so the dump kernel takes the DIMMs as its
own, in 1 GiB DIMMs around the measured rule's threshold. Its figures go into
tests/vm/RESULTS.md by hand (the section "vm-long").
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from . import driver as d
from . import dumpcheck as dc
from .guest import GuestError, Vm
from .harness import (
    WORKDIR,
    Guest,
    Package,
    boot_with_kdumpd,
    fresh_state,
    panic,
    settle_kdumpd,
    verify_loaded,
)
from .image import Image
from .results import RunResults

LONG = os.environ.get("KDUMPD_VM_LONG") == "1"
LONG_SIZES_GIB = [int(s) for s in os.environ.get("KDUMPD_VM_LONG_SIZES", "0,16,64").split(",")
                  if s.strip()]
DIMM_GIB = 8  # each DIMM one QEMU memory backend, allocated lazily by the host
# KDUMPD_VM_LONG_TAKES=1: the control, a dump kernel that takes the hot-added memory as its
# own (kdumpd's default command line without acpi_no_memhotplug, growth_safe = false); its
# sizes in 1 GiB DIMMs, where capacity.py's measured rule has its threshold (3 GiB at 256M).
TAKES = os.environ.get("KDUMPD_VM_LONG_TAKES") == "1"
TAKES_APPEND = ("root=/dev/vda rw console=ttyS0 irqpoll nr_cpus=1 reset_devices "
                "cgroup_disable=memory mce=off numa=off udev.children-max=2 panic=10 "
                "transparent_hugepage=never cma=0 hugetlb_cma=0 novmcoredd "
                "kfence.sample_interval=0")
LONG_MEMORY = "2G,slots=16,maxmem=72G"
# A dump kernel command line kdumpd replaces at its start (it lacks acpi_no_memhotplug), so
# that the image loaded at the panic is kdumpd's own, whatever the size.
UNSAFE_APPEND = "root=/dev/vda console=ttyS0 irqpoll nr_cpus=1 reset_devices"
MAKEDUMPFILE = "makedumpfile -c -d 31"  # kdump-tools' MAKEDUMP_ARGS default
# Runs in the crash kernel: makedumpfile to a file, awaited, with its peak (VmHWM) and the
# lowest MemFree sampled every 0.2 s.
DUMP_SCRIPT = f"""
rm -f /var/crash/dump.kdump; mkdir -p /var/crash
start=$(date +%s.%N)
{MAKEDUMPFILE} /proc/vmcore /var/crash/dump.kdump > /root/makedumpfile.log 2>&1 &
pid=$!
peak=0; low=
while kill -0 $pid 2>/dev/null; do
  h=$(awk '/^VmHWM:/{{print $2}}' /proc/$pid/status 2>/dev/null)
  [ -n "$h" ] && [ "$h" -gt "$peak" ] && peak=$h
  f=$(awk '/^MemFree:/{{print $2}}' /proc/meminfo)
  if [ -z "$low" ] || [ "$f" -lt "$low" ]; then low=$f; fi
  sleep 0.2
done
wait $pid; rc=$?
end=$(date +%s.%N)
echo "MDF rc=$rc peak_kib=$peak low_memfree_kib=$low seconds=$(awk "BEGIN{{print $end - $start}}")"
"""


def kib(meminfo: str, key: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


@pytest.fixture()
def growing_trixie(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    """A fresh trixie guest with room for 64 GiB more (16 slots, maxmem 72G)."""
    yield from boot_with_kdumpd(image, "trixie", package, run_results, memory=LONG_MEMORY)


@pytest.mark.skipif(not LONG, reason="the long capacity measurement: make vm-long "
                                     "(KDUMPD_VM_LONG=1)")
@pytest.mark.parametrize("gib", LONG_SIZES_GIB)
def test_long_where_the_dump_stops_working_as_memory_grows(
    growing_trixie: Guest, scenario: Callable, gib: int
) -> None:
    guest = growing_trixie
    vm = guest.vm
    result = scenario(
        f"vm-long: {gib} GiB hot-added, crashkernel=256M, kdumpd's own load"
        + (" WITHOUT acpi_no_memhotplug (the control)" if TAKES else "")
        + ", makedumpfile awaited", guest.release,
        f"A fresh guest (-m {LONG_MEMORY}); a `kexec -p -c` image without "
        "acpi_no_memhotplug, replaced by kdumpd at its start with its own growth-safe image "
        "(kexec backend, default command line, the small initrd); "
        f"{gib // DIMM_GIB} DIMM(s) of {DIMM_GIB} GiB; a panic; in the crash kernel "
        f"`{MAKEDUMPFILE} /proc/vmcore <file>` awaited, the saved dump checked for missing "
        "and extra ranges.",
    )
    record: dict[str, object] = {"hot_added_gib": gib, "at": time.strftime("%F %T")}
    out = WORKDIR / f"capacity-{gib}{'-takes' if TAKES else ''}"
    try:
        start_kdumpd_over_a_hand_loaded_image(guest)
        started = time.monotonic()
        dimm = DIMM_GIB if gib % DIMM_GIB == 0 else 1
        for _ in range(gib // dimm):
            guest.hotplug.add_dimm(dimm * 1024)
        vm.sh.run("udevadm settle -t 1200", timeout=1300)
        settle_kdumpd(vm, timeout=900)
        record["hot_add_s"] = round(time.monotonic() - started, 1)
        loaded = str(verify_loaded(vm).get("loaded_cmdline") or "")
        record["loaded_cmdline"] = loaded
        record["takes"] = TAKES
        assert ("acpi_no_memhotplug" in loaded) != TAKES, loaded
        first = vm.sh.run("grep -E '^(MemTotal|MemFree):' /proc/meminfo").output
        record["first_kernel_memtotal_kib"] = kib(first, "MemTotal")
        record["first_kernel_memfree_kib"] = kib(first, "MemFree")
        status_out = vm.sh.run("kdumpd status --json", timeout=120).output
        status = json.loads(status_out[status_out.index("{"):])
        record["capacity"] = status.get("capacity")
        try:
            before, up_s, header = panic(vm, "/root/kdump-reader.py", dc.KDUMP_READER)
        except GuestError as error:
            record["crash_kernel_up"] = False
            record["why"] = str(error)[-300:]
            record["serial_tail"] = vm.serial_tail(3000)
            raise
        record["crash_kernel_up"] = True
        record["crash_kernel_up_s"] = round(up_s, 1)
        record["header_before"] = header.get("verdict")
        verdict = dump_in_the_crash_kernel(vm, before, record)
        assert verdict.ok, verdict.describe()
    finally:
        result.notes.append(json.dumps(record))
        out.mkdir(parents=True, exist_ok=True)
        with (WORKDIR / "capacity-long.jsonl").open("a") as jsonl:
            jsonl.write(json.dumps(record) + "\n")
        for name in ("serial.log", "console.log"):
            if (vm.dir / name).exists():
                shutil.copy2(vm.dir / name, out / name)


def start_kdumpd_over_a_hand_loaded_image(guest: Guest) -> None:
    """A `-c` image without acpi_no_memhotplug, then kdumpd with the small initrd: it
    replaces the image at its start with its growth-safe one, or (TAKES) keeps it until
    the first DIMM and then loads its own command line without the option."""
    vm = guest.vm
    d.stop_kdumpd(vm)
    small = f"/boot/initrd-small-{guest.release}.img"
    vm.sh.run(f"kexec -p -u; kexec -p -c /boot/vmlinuz-{guest.release} --initrd={small} "
              f"'--append={UNSAFE_APPEND}'", timeout=120)
    takes = (f'append = "{TAKES_APPEND}"\ngrowth_safe = false\n' if TAKES else "")
    vm.sh.write_file("/etc/kdumpd/kdumpd.toml",
                     f'[reload]\ninitrd = "{small}"\n{takes}\n[rule]\nstate = "ignore"\n')
    fresh_state(vm)
    d.restart_kdumpd(vm)
    settle_kdumpd(vm, timeout=180)
    if not TAKES:  # kdumpd replaced the image at its start
        loaded = str(verify_loaded(vm).get("loaded_cmdline") or "")
        assert "acpi_no_memhotplug" in loaded, loaded


def dump_in_the_crash_kernel(vm: Vm, before: dc.Before, record: dict[str, object]
                             ) -> dc.Verdict:
    """In the crash kernel: its memory, /proc/vmcore's PT_LOADs, makedumpfile to a file
    awaited (its time and peak), the saved dump's check; each figure into ``record``."""
    meminfo = vm.sh.run("grep -E '^(MemTotal|MemFree|MemAvailable):' /proc/meminfo").output
    record["crash_memtotal_kib"] = kib(meminfo, "MemTotal")
    record["crash_memfree_kib"] = kib(meminfo, "MemFree")
    record["crash_memavailable_kib"] = kib(meminfo, "MemAvailable")
    vm.sh.write_file("/root/vmcore-reader.py", dc.VMCORE_READER)
    vmcore = dc.parse_reader_output(vm.sh.run("python3 /root/vmcore-reader.py",
                                              timeout=300).output)
    record["vmcore_verdict"] = dc.summary(before, vmcore, dc.compare(before, vmcore))
    vm.sh.write_file("/root/dump.sh", DUMP_SCRIPT)
    ran = vm.sh.run("bash /root/dump.sh", timeout=3600, check=False).output
    line = next((x for x in ran.splitlines() if x.startswith("MDF ")), "MDF none")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    record["makedumpfile"] = fields
    record["makedumpfile_log"] = vm.sh.run("tail -c 1500 /root/makedumpfile.log",
                                           check=False).output
    record["crash_oom"] = vm.sh.run("dmesg | grep -iE 'out of memory|oom' | tail -3",
                                    check=False).output.strip()
    assert fields.get("rc") == "0", (line, record["makedumpfile_log"])
    saved = vm.sh.run("ls -l /var/crash/dump.kdump && python3 /root/kdump-reader.py "
                      "/var/crash/dump.kdump", timeout=1800).output
    record["saved_size"] = saved.splitlines()[0].split()[4]
    dump = dc.parse_reader_output(saved)
    verdict = dc.compare(before, dump)
    record["dump_verdict"] = dc.summary(before, dump, verdict)
    record["ok"] = verdict.ok
    return verdict
