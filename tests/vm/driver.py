"""What the scenarios do in a booted guest: load crash kernels, hotplug, read kdumpd.

Functions take the :class:`~tests.vm.guest.Vm` they act on; none keeps hidden state.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .guest import GuestError, Vm, guest_argv

CRASH_APPEND = "root=/dev/vda console=ttyS0 irqpoll nr_cpus=1 reset_devices acpi_no_memhotplug"
HOTPLUG_ACTIONS = ("add", "remove", "online", "offline")
JOURNAL_FIELDS = (
    "MESSAGE", "MESSAGE_ID", "PRIORITY", "KDUMPD_SUBSYSTEM", "KDUMPD_ACTION",
    "KDUMPD_DEVPATH", "KDUMPD_CRASH_HOTPLUG", "KDUMPD_EVENTS", "KDUMPD_RELOAD_DURATION_MS",
)


# -- kernel state ------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashState:
    """What sysfs says about the crash kernel; ``None`` for an absent attribute."""

    loaded: str | None
    cpu: str | None
    memory: str | None

    def hotplug(self) -> str:
        return f"cpu={self.cpu or 'absent'} memory={self.memory or 'absent'}"


def crash_state(vm: Vm) -> CrashState:
    out = vm.sh.run(
        "for f in /sys/kernel/kexec_crash_loaded /sys/devices/system/cpu/crash_hotplug "
        "/sys/devices/system/memory/crash_hotplug; do "
        'if [ -e "$f" ]; then printf "%s\\n" "$(cat "$f")"; else echo -; fi; done'
    ).output.split()
    loaded, cpu, memory = (None if v == "-" else v for v in out[:3])
    return CrashState(loaded, cpu, memory)


def kexec_load(vm: Vm, release: str, flags: Iterable[str]) -> float:
    """Unload, then load the small crash kernel with kexec ``flags``; seconds taken."""
    argv = ["kexec", "-p", *flags, f"/boot/vmlinuz-{release}",
            f"--initrd=/boot/initrd-small-{release}.img", f"--append={CRASH_APPEND}"]
    started = time.monotonic()
    vm.sh.run("kexec -p -u; " + guest_argv(argv), timeout=120)
    return time.monotonic() - started


def kexec_unload(vm: Vm) -> None:
    vm.sh.run("kexec -p -u", timeout=60)


# -- hotplug -----------------------------------------------------------------------------


CPU_ADDED = "/run/kdumpd-vm-cpu-added"


class Hotplug:
    """QMP-driven DIMM and CPU hot-add, sysfs-driven CPU offline/online."""

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self._dimms = 0
        self._cpus = 0

    def add_dimm(self, size_mib: int = 512) -> str:
        """Hot-add a DIMM of ``size_mib``; the guest onlines its blocks itself."""
        self._dimms += 1
        name = f"dimm{self._dimms}"
        self.vm.monitor.execute("object-add", **{"qom-type": "memory-backend-ram",
                                                 "id": f"mem-{name}",
                                                 "size": size_mib << 20})
        self.vm.monitor.execute("device_add", driver="pc-dimm", id=name,
                                memdev=f"mem-{name}")
        return name

    def remove_dimm(self, name: str, timeout: float = 60.0) -> None:
        """Ask the guest to give DIMM ``name`` back; wait until QEMU has unplugged it.

        Works when the blocks are movable (see BASE_APPEND); otherwise the guest refuses
        and this raises after ``timeout`` seconds.
        """
        self.vm.monitor.execute("device_del", id=name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            devices = self.vm.monitor.execute("query-memory-devices")
            if all(dev.get("data", {}).get("id") != name for dev in devices):
                self.vm.monitor.execute("object-del", id=f"mem-{name}")
                return
            time.sleep(0.5)
        raise GuestError(f"DIMM {name} still plugged {timeout:.0f} s after device_del")

    def add_cpu_online(self, timeout: float = 30.0) -> int:
        """Hot-add one CPU and online it; its number.

        Debian has no auto-online rule, so a waiter in the guest onlines the new CPU as soon
        as its sysfs directory appears: the add and online events are milliseconds apart,
        as an auto-online rule or an administrator's script makes them. Polling from the host
        put 0.2-0.7 s between them, around kdumpd's quiet period in these tests (250 ms),
        so "one burst" depended on the host's speed.
        """
        present = " ".join(map(str, self.online_cpus(present=True)))
        waiter = (
            f"n=0; while [ $n -lt {int(timeout * 50)} ]; do n=$((n+1)); "
            "for d in /sys/devices/system/cpu/cpu[0-9]*; do c=${d##*/cpu}; "
            f'case " {present} " in *" $c "*) continue;; esac; '
            '[ -e "$d/online" ] || continue; '
            f'if echo 1 > "$d/online"; then echo $c > {CPU_ADDED}; exit 0; fi; '
            f"echo online-failed > {CPU_ADDED}; exit 1; done; sleep 0.02; done; "
            f"echo none > {CPU_ADDED}"
        )
        slots = self.vm.monitor.execute("query-hotpluggable-cpus")
        free = [slot for slot in slots if "qom-path" not in slot]
        if not free:
            raise GuestError("no free CPU slot left")
        slot = free[-1]
        self.vm.sh.run(f"rm -f {CPU_ADDED}; (setsid sh -c '{waiter}' >/dev/null 2>&1 &)")
        self._cpus += 1
        try:
            self.vm.monitor.execute("device_add", driver=slot["type"],
                                    id=f"hotcpu{self._cpus}", **slot["props"])
        except Exception:
            self.vm.sh.run("pkill -f 'n=0; while' || true", check=False)  # the waiter
            raise
        deadline, added = time.monotonic() + timeout + 10, ""
        while time.monotonic() < deadline:
            added = self.vm.sh.run(f"cat {CPU_ADDED} 2>/dev/null", check=False).output.strip()
            if added.isdigit():
                return int(added)
            if added:
                break
            time.sleep(0.5)
        raise GuestError(f"hot-added CPU did not come online in the guest within {timeout:.0f} s"
                         f" (waiter said {added or 'nothing'})")

    def online_cpus(self, present: bool = False) -> list[int]:
        """CPU numbers online (or present) in the guest."""
        which = "present" if present else "online"
        text = self.vm.sh.run(f"cat /sys/devices/system/cpu/{which}").output.strip()
        cpus: list[int] = []
        for part in text.split(","):
            low, _, high = part.partition("-")
            cpus.extend(range(int(low), int(high or low) + 1))
        return cpus

    def set_cpu_online(self, cpu: int, online: bool) -> None:
        self.vm.sh.run(f"echo {int(online)} > /sys/devices/system/cpu/cpu{cpu}/online")

    def cpu_offline_online(self, cpu: int = 1) -> None:
        """Offline then online ``cpu`` in one guest command: one burst of two events."""
        path = f"/sys/devices/system/cpu/cpu{cpu}/online"
        self.vm.sh.run(f"echo 0 > {path} && echo 1 > {path}")


# -- udev's view ----------------------------------------------------------------------------

MONITOR_LOG = "/run/kdumpd-vm-udev.log"
MONITOR_LINE = re.compile(r"^UDEV\s+\[([\d.]+)\]\s+(\w+)\s+(\S+)\s+\((cpu|memory)\)")


@dataclass(frozen=True)
class UdevEvent:
    monotonic_s: float  # guest CLOCK_MONOTONIC, as udevadm monitor prints it
    action: str
    devpath: str
    subsystem: str


def start_udev_monitor(vm: Vm) -> None:
    """Record udev's cpu/memory events (after rules) until :func:`stop_udev_monitor`."""
    vm.sh.run(
        f"rm -f {MONITOR_LOG}; (setsid udevadm monitor --udev -s cpu -s memory "
        f"> {MONITOR_LOG} 2>&1 & echo $! > /run/kdumpd-vm-udev.pid); sleep 1"
    )


def stop_udev_monitor(vm: Vm) -> list[UdevEvent]:
    """Stop the recorder; the hotplug events (add/remove/online/offline) it saw."""
    out = vm.sh.run(
        f"udevadm settle -t 30; sleep 0.5; kill $(cat /run/kdumpd-vm-udev.pid); cat {MONITOR_LOG}"
    ).output
    events = []
    for line in out.splitlines():
        match = MONITOR_LINE.match(line.strip())
        if match and match.group(2) in HOTPLUG_ACTIONS:
            events.append(UdevEvent(float(match.group(1)), match.group(2), match.group(3),
                                    match.group(4)))
    return events


# -- kdumpd ---------------------------------------------------------------------------------


@dataclass
class JournalEntry:
    fields: dict[str, Any]

    def get(self, name: str, default: str = "") -> str:
        value = self.fields.get(name, default)
        if isinstance(value, list):  # journalctl gives repeated fields as a list
            value = value[-1]
        return str(value) if value is not None else default

    @property
    def message_id(self) -> str:
        return self.get("MESSAGE_ID")

    @property
    def monotonic_s(self) -> float:
        """When it was logged, guest CLOCK_MONOTONIC seconds (same clock as udev's)."""
        return int(self.get("__MONOTONIC_TIMESTAMP", "0")) / 1e6

    @property
    def events(self) -> int:
        text = self.get("KDUMPD_EVENTS", "0")
        return int(text) if text.isdigit() else 0


def journal_cursor(vm: Vm) -> str:
    """A cursor after the journal's current end (flushes what kdumpd logged so far)."""
    out = vm.sh.run("journalctl -n 0 --show-cursor -q -u kdumpd; true").output
    for line in out.splitlines():
        if line.startswith("-- cursor: "):
            return line.removeprefix("-- cursor: ").strip()
    # Empty journal for the unit: the cursor of the last entry of any unit.
    out = vm.sh.run("journalctl -n 1 -o json --output-fields=MESSAGE").output
    return str(json.loads(out.strip().splitlines()[-1])["__CURSOR"])


def journal_since(vm: Vm, cursor: str) -> list[JournalEntry]:
    """kdumpd's journal entries after ``cursor`` (structured, ``journalctl -o json``)."""
    out = vm.sh.run(
        guest_argv(["journalctl", "-u", "kdumpd", "-o", "json", f"--after-cursor={cursor}",
                    "--output-fields=" + ",".join(JOURNAL_FIELDS)]),
        timeout=60,
    ).output
    entries = []
    for line in out.splitlines():
        if line.strip().startswith("{"):
            entries.append(JournalEntry(json.loads(line)))
    return entries


def wait_journal(
    vm: Vm,
    cursor: str,
    done: Callable[[list[JournalEntry]], bool],
    timeout: float,
    grace_s: float = 3.0,
) -> list[JournalEntry]:
    """Poll the journal until ``done(entries)``, then ``grace_s`` more for late extras.

    Returns what was there at the end; the caller asserts (a timeout is not an error
    here, so the assertion shows what kdumpd did log).
    """
    deadline = time.monotonic() + timeout
    entries = journal_since(vm, cursor)
    while not done(entries) and time.monotonic() < deadline:
        time.sleep(1.0)
        entries = journal_since(vm, cursor)
    time.sleep(grace_s)
    return journal_since(vm, cursor)


@dataclass
class KdumpdConfig:
    kernel: str
    initrd: str
    load: str = "auto"
    rule_state: str = "ignore"
    rule_path: str = "auto"
    extra: dict[str, str] = field(default_factory=dict)
    # False: decide without reading the loaded header back (a measurement of the load
    # itself, where a current header would rightly mean no reload).
    verify_header: bool = True
    append: str = CRASH_APPEND  # the dump kernel's command line (pseries: pseries.py)

    def toml(self) -> str:
        return (
            "[events]\nsource = \"auto\"\nquiet_ms = 250\nmax_delay_ms = 3000\n\n"
            f"[reload]\nbackend = \"kexec\"\nkernel = \"{self.kernel}\"\n"
            f"initrd = \"{self.initrd}\"\nappend = \"{self.append}\"\n"
            f"load = \"{self.load}\"\ntimeout_s = 120\nretries = 3\n"
            f"verify_header = {'true' if self.verify_header else 'false'}\n\n"
            f"[rule]\nstate = \"{self.rule_state}\"\npath = \"{self.rule_path}\"\n"
        )


def configure_kdumpd(vm: Vm, config: KdumpdConfig) -> None:
    vm.sh.run("mkdir -p /etc/kdumpd && chmod 0755 /etc/kdumpd")
    vm.sh.write_file("/etc/kdumpd/kdumpd.toml", config.toml(), mode="0644")


def restart_kdumpd(vm: Vm) -> None:
    """Restart the unit; Type=notify: returns once kdumpd said READY=1 (bounded)."""
    result = vm.sh.run("systemctl restart kdumpd", timeout=90, check=False)
    if not result.ok:
        journal = vm.sh.run("journalctl -u kdumpd -n 40 --no-pager -o cat", check=False)
        raise GuestError(f"systemctl restart kdumpd: exit {result.status}\n"
                         f"{result.output}\n--- journal:\n{journal.output}")


def stop_kdumpd(vm: Vm) -> None:
    vm.sh.run("systemctl stop kdumpd", timeout=90)


def unit_state(vm: Vm) -> dict[str, str]:
    out = vm.sh.run("systemctl show -p StatusText,ActiveState,SubState,NRestarts kdumpd").output
    state = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key:
            state[key.strip()] = value.strip()
    return state
