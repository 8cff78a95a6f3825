"""Shared steps of the VM scenarios: booting guests with the .deb, bursts and what
kdumpd decided on them, pollers for the windows, panics and dump checks.

The scenarios are in test_*.py by topic, their fixtures in conftest.py.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdumpd import journal_ids
from kdumpd.config import RuleConfig

from . import driver as d
from . import dumpcheck as dc
from .guest import GuestError, Vm, VmConfig, make_payload
from .image import REPO, Image
from .results import BurstResult, RunResults, ScenarioResult

DECISIONS = {journal_ids.RELOAD_DONE, journal_ids.RELOAD_FAILED, journal_ids.SKIPPED,
             journal_ids.WOULD_RELOAD}


SCENARIOS = 21  # scenario() calls in a full run: 1-20, scenario 10 twice


QUIET_S = 0.25  # [events] quiet_ms of the guest's config


# udev's timestamps are not kdumpd's: a pause this close to quiet_ms at udev may be longer
# than quiet_ms when kdumpd receives the events, and so may end a burst (seen once: a
# 0.25 s pause, two reloads, each one correct).
GAP_MARGIN_S = 0.05


BURST_TIMEOUT_S = 90.0  # events -> all accounted for in kdumpd's journal


WORKDIR = Path(os.environ.get("KDUMPD_VM_WORKDIR", "/tmp/kdumpd-vm"))


DISTRO_RULES = "/root/distro-rules/50-kdump-tools.rules"


KDUMP_CONFIG_STUB = """#!/bin/sh
# Stand-in for kdump-tools' kdump-config: records that the distribution's rule ran it.
echo "$(date +%s.%N) $*" >> /run/kdump-config.calls
"""


RUNNING: list[Vm] = []


STANDIN_WRAPPER = """#!/usr/bin/python3
import sys
from kdumpd.cli import main
sys.exit(main())
"""


@dataclass
class Package:
    """What gets installed in the guest: the .deb, or (development only) a stand-in."""

    description: str
    payload: dict[str, Path | bytes]
    install: str  # guest shell commands, run with the payload mounted at /mnt/payload


def build_deb() -> Path:
    """``make deb`` in the working tree; the newest out/deb/kdumpd_*.deb."""
    try:
        done = subprocess.run(["make", "-C", str(REPO), "deb"], capture_output=True,
                              text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("make deb did not finish in 900 s")
    debs = sorted(glob.glob(str(REPO / "out" / "deb" / "kdumpd_*.deb")), key=os.path.getmtime)
    if done.returncode != 0 or not debs:
        pytest.fail(f"make deb failed (exit {done.returncode}), no out/deb/kdumpd_*.deb:\n"
                    f"{(done.stdout + done.stderr)[-3000:]}")
    return Path(debs[-1])


@dataclass
class Guest:
    vm: Vm
    release: str
    hotplug: d.Hotplug

    def config(self, **kwargs: str) -> d.KdumpdConfig:
        return d.KdumpdConfig(kernel=f"/boot/vmlinuz-{self.release}",
                              initrd=f"/boot/initrd-small-{self.release}.img", **kwargs)


def boot(image: Image, kernel: str, files: dict[str, Path | bytes], results: RunResults,
         prepare: Callable[[Guest], None], *, devices: tuple[str, ...] = (),
         machine: str = VmConfig.machine, memory: str = VmConfig.memory) -> Iterator[Guest]:
    """Boot ``kernel`` with ``files`` on the payload disk (mounted at /mnt/payload) and
    the QEMU ``devices``, run ``prepare`` in it, yield it; stop it afterwards.

    A guest still running from an earlier fixture is stopped first: two TCG guests on
    the two cores would slow each other down.
    """
    while RUNNING:
        RUNNING.pop().stop()
    workdir = WORKDIR / kernel
    workdir.mkdir(parents=True, exist_ok=True)
    payload = make_payload(files, workdir / "payload.ext4")
    k = image.kernels[kernel]
    vm = Vm(VmConfig(kernel=k, root_image=image.root, payload=payload, workdir=workdir,
                     devices=devices, machine=machine, memory=memory))
    RUNNING.append(vm)
    try:
        start_with_one_retry(vm, results)
        results.boots[f"{kernel} ({k.release})"] = vm.boot_s
        guest = Guest(vm, k.release, d.Hotplug(vm))
        vm.sh.run("mkdir -p /mnt/payload && mount -o ro /dev/vdb /mnt/payload")
        prepare(guest)
        yield guest
    except GuestError as error:
        pytest.fail(f"guest with kernel {k.release}: {error}\n--- serial console tail:\n"
                    f"{vm.serial_tail()}")
    finally:
        vm.stop()
        problems = vm.kernel_problems()
        if problems:
            results.notes.append(f"guest kernel {k.release} logged: " + " / ".join(problems[:5]))


def boot_with_kdumpd(
    image: Image, kernel: str, package: Package, results: RunResults,
    extra: dict[str, Path | bytes] | None = None, *, devices: tuple[str, ...] = (),
    machine: str = VmConfig.machine, memory: str = VmConfig.memory,
) -> Iterator[Guest]:
    """Boot ``kernel`` (on QEMU's ``machine``, with its ``devices`` and ``memory``),
    install ``package`` in the guest, enable and start kdumpd."""
    def install_and_start(guest: Guest) -> None:
        vm = guest.vm
        # Install first: the package's own conffile must not meet ours (dpkg would ask).
        vm.sh.run(package.install, timeout=180)
        d.configure_kdumpd(vm, guest.config(load="plain"))
        vm.sh.run("systemctl enable kdumpd", timeout=60)
        d.restart_kdumpd(vm)

    files = {**package.payload, "kdump-config": KDUMP_CONFIG_STUB.encode(), **(extra or {})}
    yield from boot(image, kernel, files, results, install_and_start, devices=devices,
                    machine=machine, memory=memory)


def start_with_one_retry(vm: Vm, results: RunResults) -> None:
    """Boot; if the guest kernel died before the shell came up, boot once more.

    A panic while booting is QEMU's or the kernel's business, not kdumpd's; it is
    still written to RESULTS.md. Any other boot failure fails at once.
    """
    try:
        vm.start()
    except GuestError:
        problems = vm.kernel_problems()
        if not any("panic" in line or "Oops" in line for line in problems):
            raise
        vm.stop()
        results.notes.append("boot retried after the guest kernel died while booting: "
                             + " / ".join(problems[:3]))
        vm.serial_log.rename(vm.serial_log.with_suffix(".failed-boot.log"))
        vm.start()


# -- bursts ----------------------------------------------------------------------------------


def accounted(entries: list[d.JournalEntry]) -> int:
    """Events kdumpd has decided on (each decision message says how many)."""
    return sum(e.events for e in entries if e.message_id in DECISIONS)


def run_burst(guest: Guest, name: str, action: Callable[[], object]) -> BurstResult:
    """Do ``action``; wait until kdumpd decided on every event udev saw; summarise."""
    vm = guest.vm
    before = d.crash_state(vm)
    cursor = d.journal_cursor(vm)
    d.start_udev_monitor(vm)
    action()
    events = d.stop_udev_monitor(vm)
    entries = d.wait_journal(vm, cursor, lambda es: accounted(es) >= len(events),
                             timeout=BURST_TIMEOUT_S)
    after = d.crash_state(vm)
    decisions = [e for e in entries if e.message_id in DECISIONS]
    done = [e for e in decisions if e.message_id == journal_ids.RELOAD_DONE]
    latency = None
    times = sorted(e.monotonic_s for e in events)
    if events and decisions:
        latency = decisions[-1].monotonic_s - times[0]
    return BurstResult(
        burst=name,
        udev_events=len(events),
        kdumpd_events=accounted(entries),
        decisions=len(decisions),
        reloads=len(done),
        failed=sum(e.message_id == journal_ids.RELOAD_FAILED for e in decisions),
        before=before,
        after=after,
        reload_ms=[int(e.get("KDUMPD_RELOAD_DURATION_MS", "0")) for e in done],
        latency_s=latency,
        span_s=times[-1] - times[0] if times else 0.0,
        max_gap_s=max((b - a for a, b in zip(times, times[1:])), default=0.0),
        slow_gaps=sum(b - a > QUIET_S - GAP_MARGIN_S for a, b in zip(times, times[1:])),
        reasons=[strip_counts(e.get("MESSAGE")) for e in entries
                 if e.message_id not in (journal_ids.RELOAD_DONE,)],
        udev_subsystems={e.subsystem for e in events},
        udev_devpaths={e.devpath for e in events},
        kdumpd_subsystems={s for e in decisions for s in e.get("KDUMPD_SUBSYSTEM").split(",")
                           if s},
        kdumpd_devpaths={e.get("KDUMPD_DEVPATH") for e in decisions},
        kdumpd_crash_hotplug=sorted({e.get("KDUMPD_CRASH_HOTPLUG") for e in entries
                                     if e.get("KDUMPD_CRASH_HOTPLUG")}),
    )


def strip_counts(message: str) -> str:
    """A message with its numbers and device paths generalised, for the reasons list."""
    return re.sub(r"\d+ event\(s\)", "N event(s)", message)


def restart_with(guest: Guest, config: d.KdumpdConfig) -> None:
    d.configure_kdumpd(guest.vm, config)
    d.restart_kdumpd(guest.vm)


def said(burst: BurstResult) -> str:
    """What kdumpd logged for ``burst``, for assertion messages."""
    return (f"{burst.burst}: {burst.udev_events} udev events, {burst.reloads} reload(s), "
            f"{burst.failed} failed, {burst.slow_gaps} pause(s) near or over quiet_ms, "
            f"crash_hotplug {burst.before.hotplug()} -> {burst.after.hotplug()}, "
            f"kexec_crash_loaded -> {burst.after.loaded}; "
            "kdumpd said: " + " | ".join(burst.reasons)
            + (" -- a kexec load failed inside the unit's sandbox? See 'Findings' in "
               "tests/vm/README.md" if burst.failed else ""))


def assert_one_reload_per_burst(burst: BurstResult) -> None:
    """Exactly one reload when the events came without a pause longer than quiet_ms.

    Under TCG on a busy host the kernel can take longer than the quiet period between
    two events of one DIMM (offlining migrates pages); kdumpd then rightly sees more
    than one burst, at most one more per such pause.
    """
    assert burst.failed == 0, said(burst)
    assert 1 <= burst.reloads <= 1 + burst.slow_gaps, said(burst)


def assert_kdumpd_read(burst: BurstResult, value: str) -> None:
    """kdumpd's KDUMPD_CRASH_HOTPLUG says it read ``value`` for every subsystem."""
    parts = [p for field in burst.kdumpd_crash_hotplug for p in field.split(",")]
    assert parts, f"no KDUMPD_CRASH_HOTPLUG field: {said(burst)}"
    assert all(p.endswith(f"={value}") for p in parts), (
        f"kdumpd read {burst.kdumpd_crash_hotplug}, expected {value}: {said(burst)}")


def assert_accounted(burst: BurstResult) -> None:
    assert burst.udev_events >= 2, f"{burst.burst}: udev saw too few events: {burst}"
    assert burst.kdumpd_events == burst.udev_events, (
        f"{burst.burst}: kdumpd decided on {burst.kdumpd_events} of {burst.udev_events} events"
    )
    # The structured fields name the subsystems and (last) devices udev reported (and
    # what kdumpd saw change while its own load ran, if anything did).
    assert burst.udev_subsystems <= burst.kdumpd_subsystems, said(burst)
    assert burst.kdumpd_devpaths <= burst.udev_devpaths, said(burst)


def dimm_burst(guest: Guest) -> Callable[[], object]:
    return guest.hotplug.add_dimm


def cpu_cycle_burst(guest: Guest) -> Callable[[], object]:
    return lambda: guest.hotplug.cpu_offline_online(1)


def two_dimms_burst(guest: Guest) -> Callable[[], object]:
    """Two DIMMs in a row: events of two devices, one burst."""
    def add_two() -> None:
        guest.hotplug.add_dimm()
        guest.hotplug.add_dimm()
    return add_two


def cpu_add_burst(guest: Guest) -> Callable[[], object]:
    return guest.hotplug.add_cpu_online


# -- the distribution's rule and the unit's drop-ins ----------------------------------------

KEXEC_LOAD_DROPIN = "/usr/share/kdumpd/kexec-load.conf"  # shipped by the package
DROPIN_DIR = "/etc/systemd/system/kdumpd.service.d"
TOOLS_DROPIN = "/usr/share/kdumpd/distro-tools.conf"  # for the kdump-config/kdumpctl backends
STATUS_COUNTS = re.compile(r"events (\d+), skipped (\d+), reloads (\d+)")


UNIT_FILE = "/usr/lib/systemd/system/kdumpd.service"  # as the .deb installs it
PROBE_UNIT = "kdumpd-sandbox-probe"
# The daemon's own lifecycle lines, which a one-shot command must not copy; the runtime
# directory too (stopping the probe would remove /run/kdumpd, the daemon's).
NOT_SANDBOX = ("Type=", "NotifyAccess=", "ExecStart=", "ExecReload=", "Restart",
               "WatchdogSec=", "KillMode=", "TimeoutStopSec=", "RuntimeDirectory")


def in_the_units_sandbox(vm: Vm, argv: str) -> str:
    """Run ``kdumpd <argv>`` as a one-shot service with the [Service] sandbox of the
    installed kdumpd.service line for line (User, capabilities, ProtectKernelModules=, the
    read-only and inaccessible paths, the syscall filter); its standard output, or an
    AssertionError with its journal when it failed."""
    unit = vm.sh.run(f"cat {UNIT_FILE}").output
    section = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
    kept = [line for line in section.splitlines()
            if line.strip() and not line.startswith(("#", *NOT_SANDBOX))]
    out = f"/run/{PROBE_UNIT}.out"
    probe = "\n".join(["[Service]", "Type=oneshot", f"ExecStart=/usr/bin/kdumpd {argv}",
                       f"StandardOutput=truncate:{out}", *kept, ""])
    vm.sh.write_file(f"/run/systemd/system/{PROBE_UNIT}.service", probe)
    started = vm.sh.run(f"systemctl daemon-reload && systemctl start {PROBE_UNIT}",
                        timeout=120, check=False)
    try:
        assert started.ok, (started.output, vm.sh.run(
            f"journalctl -u {PROBE_UNIT} -n 20 -o cat --no-pager", check=False).output)
        return vm.sh.run(f"cat {out}").output
    finally:
        vm.sh.run(f"rm -f /run/systemd/system/{PROBE_UNIT}.service {out}; "
                  f"systemctl daemon-reload; systemctl reset-failed {PROBE_UNIT} 2>/dev/null",
                  check=False)


def kdump_config_calls(guest: Guest) -> int:
    out = guest.vm.sh.run("cat /run/kdump-config.calls 2>/dev/null | wc -l").output
    return int(out.strip() or "0")


def cpu_cycle_calls(guest: Guest) -> int:
    """CPU1 offline+online with udev settled; how often the distro rule ran kdump-config."""
    guest.vm.sh.run("rm -f /run/kdump-config.calls")
    guest.hotplug.cpu_offline_online(1)
    guest.vm.sh.run("udevadm settle -t 30")
    return kdump_config_calls(guest)


# -- the invariant across restarts, kills and races (issues "never lose", "never miss") ----

POLLER = r"""
import signal, sys, time
path = sys.argv[1] if len(sys.argv) > 1 else "/sys/kernel/kexec_crash_loaded"
stop = False
def end(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, end)
samples, zero_since, windows, last = 0, None, [], time.monotonic()
gaps = []
with open("/tmp/poller.ready", "w"):
    pass
while not stop:
    with open(path) as f:
        value = f.read(1)
    now = time.monotonic()
    gaps.append(now - last)
    last = now
    samples += 1
    if value == "0" and zero_since is None:
        zero_since = now
    elif value == "1" and zero_since is not None:
        windows.append(now - zero_since)
        zero_since = None
if zero_since is not None:
    windows.append(-1.0)  # still without a crash kernel at the end
gaps.sort()
print(f"samples={samples} median_us={gaps[len(gaps) // 2] * 1e6:.0f} "
      f"windows_ms={','.join(f'{w * 1000:.1f}' for w in windows) or 'none'}")
"""


def start_poller(vm: Vm, path: str = "/sys/kernel/kexec_crash_loaded") -> None:
    """Start sampling ``path`` in the guest (see POLLER); returns once it samples."""
    vm.sh.write_file("/tmp/poller.py", POLLER)
    vm.sh.run(f"rm -f /tmp/poller.ready; python3 /tmp/poller.py {path} > /tmp/poller.out 2>&1 & "
              "echo $! > /tmp/poller.pid; "
              "until [ -e /tmp/poller.ready ]; do sleep 0.05; done")


def stop_poller(vm: Vm) -> str:
    """Stop the poller; its summary (samples, median interval, windows while it read 0)."""
    vm.sh.run("kill -TERM $(cat /tmp/poller.pid); while kill -0 $(cat /tmp/poller.pid) "
              "2>/dev/null; do sleep 0.05; done")
    return vm.sh.run("cat /tmp/poller.out").output.strip()


def poll_window(vm: Vm, command: str, timeout: float = 120,
                path: str = "/sys/kernel/kexec_crash_loaded") -> str:
    """Run ``command`` in the guest while ``path`` is sampled; the poller's summary."""
    start_poller(vm, path)
    try:
        vm.sh.run(command, timeout=timeout)
    finally:
        summary = stop_poller(vm)
    return summary


def polled_windows_s(summary: str) -> list[float]:
    """The windows without a crash kernel in a poller summary (see POLLER), in seconds."""
    text = summary.rsplit("windows_ms=", 1)[-1].split(maxsplit=1)[0]
    return [] if text == "none" else [float(ms) / 1000 for ms in text.split(",")]


METRICS_FILE = "/var/lib/prometheus/node-exporter/kdumpd.prom"  # [metrics] textfile_dir "auto"


def read_metrics(vm: Vm, wanted: Callable[[dict[str, float]], bool],
                 timeout: float = 30) -> dict[str, float]:
    """kdumpd.prom parsed with prometheus_client's own parser, once ``wanted`` holds
    (kdumpd writes it right after each decision, in the loop: not quite at once)."""
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + timeout
    while True:
        text = vm.sh.run(f"cat {METRICS_FILE} 2>/dev/null || true").output
        values = {sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())
                                        if k == "subsystem"): sample.value
                  for family in text_string_to_metric_families(text)
                  for sample in family.samples}
        if wanted(values) or time.monotonic() > deadline:
            return values
        time.sleep(0.5)


HANDOVER = str(RuleConfig().handover)  # the shipped configuration's hand-over file


def watch_files(vm: Vm, *paths: str) -> None:
    """Sample in the guest, in a loop, whether every one of ``paths`` exists."""
    test = " && ".join(f"[ -e {path} ]" for path in paths)
    vm.sh.run("touch /run/files-watch; nohup sh -c 'while [ -e /run/files-watch ]; do "
              f"{test} && echo 1 || echo 0; done > /root/files-samples' >/dev/null 2>&1 &")


def stop_watch(vm: Vm) -> dict[str, int]:
    """Stop :func:`watch_files`: how many samples saw every file ("1") or not ("0")."""
    vm.sh.run("rm -f /run/files-watch; sleep 1")
    samples = vm.sh.run("sort /root/files-samples | uniq -c").output.split()
    return dict(zip(samples[1::2], (int(n) for n in samples[0::2])))


def fresh_state(vm: Vm) -> None:
    """Forget kdumpd's state, as at the first start of a boot."""
    vm.sh.run("rm -f /var/lib/kdumpd/state.json")


def start_fresh(guest: Guest, flags: list[str], *, load: str) -> None:
    """Stop kdumpd, load the crash kernel with ``kexec -p <flags>``, forget kdumpd's state
    and start it with load mode ``load``: a scenario that owes nothing to the ones before."""
    d.stop_kdumpd(guest.vm)
    d.kexec_load(guest.vm, guest.release, flags)
    fresh_state(guest.vm)
    restart_with(guest, guest.config(load=load))


def messages(entries: list[d.JournalEntry]) -> list[str]:
    return [e.get("MESSAGE") for e in entries]


def guest_argv_str(argv: list[str]) -> str:
    from .guest import guest_argv

    return guest_argv(argv)


PANIC_BOOT_TIMEOUT_S = 300.0


def verify_loaded(vm: Vm) -> dict[str, object]:
    """`kdumpd verify --json` in the guest: the loaded header read back (loaded_header.py)."""
    done = vm.sh.run("kdumpd verify --json", check=False, timeout=120)
    lines = [line for line in done.output.splitlines() if line.startswith("{")]
    assert lines, f"kdumpd verify printed no JSON: {done.output[-500:]}"
    header: dict[str, object] = json.loads(lines[-1])
    return header


def panic(vm: Vm, reader_path: str, reader: str
          ) -> tuple[dc.Before, float, dict[str, object]]:
    """Record RAM and CPUs and the loaded header read back (`kdumpd verify`), put
    ``reader`` in the guest, panic; return what was recorded and the seconds until the
    crash kernel's shell answered."""
    vm.sh.run("udevadm settle -t 60", timeout=90)
    ram, reserved = dc.parse_iomem(vm.sh.run("cat /proc/iomem").output)
    before = dc.Before(ram, reserved,
                       dc.count_cpus(vm.sh.run("cat /sys/devices/system/cpu/online").output))
    header = verify_loaded(vm)
    vm.sh.write_file(reader_path, reader)
    assert d.crash_state(vm).loaded == "1", "no crash kernel loaded before the panic"
    vm.sh.run("sync")
    panicked = time.monotonic()
    vm.sh.send("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger")
    vm.sh.wait_ready(PANIC_BOOT_TIMEOUT_S)
    up_s = time.monotonic() - panicked
    assert vm.sh.run("test -e /proc/vmcore", check=False).ok, "not in a crash kernel"
    return before, up_s, header


def header_agrees(header: dict[str, object], dump: dict[str, object],
                  verdict: dc.Verdict) -> str:
    """The header read back before the panic against the dump it gave: the same PT_LOADs
    (when the dump's are its PT_LOADs) and the same verdict. Returns a line for
    RESULTS.md; raises AssertionError when they differ."""
    read_back = sorted((int(a), int(b) + 1)
                       for a, b in header["header_loads"])  # type: ignore[attr-defined]
    loads = sorted((int(a), int(b)) for a, b in dump["loads"])  # type: ignore[attr-defined]
    line = (f"`kdumpd verify` before the panic: {header['verdict']} ({header['why']}), "
            f"read in {header['read_s']} s, {len(read_back)} PT_LOADs")
    assert header["verdict"] == ("current" if verdict.ok else "stale"), (line, verdict)
    if dump.get("ptload", True):
        assert read_back == loads, (line, read_back, loads)
        line += ", equal to the vmcore's"
    return line


def panic_and_check(guest: Guest) -> tuple[dc.Verdict, float, str]:
    """Record RAM and CPUs, panic, wait for the crash kernel's shell, read its vmcore.

    Returns the verdict, the seconds from the panic to the crash kernel's shell, and a
    summary line for RESULTS.md.
    """
    vm = guest.vm
    before, up_s, header = panic(vm, "/root/vmcore-reader.py", dc.VMCORE_READER)
    out = vm.sh.run("python3 /root/vmcore-reader.py", timeout=120).output
    dump = dc.parse_reader_output(out)
    verdict = dc.compare(before, dump)
    return verdict, up_s, (dc.summary(before, dump, verdict) + ". "
                           + header_agrees(header, dump, verdict))


def hotplug_then_dump(guest: Guest, result: ScenarioResult) -> dc.Verdict:
    result.bursts.append(run_burst(guest, "DIMM hot-add 512 MiB", dimm_burst(guest)))
    result.bursts.append(run_burst(guest, "CPU hot-add (QMP) + online", cpu_add_burst(guest)))
    verdict, up_s, line = panic_and_check(guest)
    result.notes.append(f"after `echo c > /proc/sysrq-trigger` the crash kernel's shell "
                        f"answered in {up_s:.0f} s. {line}")
    return verdict


SKIP_LINE = "kexec_trylock() failed"


def panic_and_check_after(guest: Guest, result: ScenarioResult) -> dc.Verdict:
    """Hotplug without anyone watching (no udev burst accounting: kdumpd is stopped)."""
    guest.hotplug.add_dimm()
    guest.vm.sh.run("udevadm settle -t 60", timeout=90)
    guest.hotplug.add_cpu_online()
    verdict, up_s, line = panic_and_check(guest)
    result.notes.append(f"crash kernel shell after {up_s:.0f} s. {line}")
    return verdict


# -- Debian's real kdump-tools beside kdumpd's default configuration -------------------


def kexec_parts(argv: list[str]) -> dict[str, str]:
    """kernel, initrd and command line of a `kexec -p ...` argv."""
    parts: dict[str, str] = {}
    for word in argv[1:]:
        for option in ("--initrd=", "--append=", "--command-line="):
            if word.startswith(option):
                value = word[len(option):]
                if option == "--initrd=":
                    parts["initrd"] = value
                else:
                    parts["append"] = " ".join(value.split())
                break
        else:
            if not word.startswith("-"):
                parts["kernel"] = word
    return parts


def kexec_cmd_written(vm: Vm) -> str:
    """When kdump-config last loaded: it rewrites /var/crash/kexec_cmd at every load."""
    return vm.sh.run("stat -c %Y /var/crash/kexec_cmd").output.strip()


def kdump_config_backend_burst(guest: Guest, result: ScenarioResult) -> None:
    """Scenario 13's part (3): the backend kdump-config, Debian's own reload, inside the
    package's unit widened by the drop-in it ships for the tool backends (what the Ansible
    role installs), kdump-tools loading with -c: one reload per burst, a crash kernel after.
    """
    vm = guest.vm
    vm.sh.run(f"mkdir -p {DROPIN_DIR} && cp {TOOLS_DROPIN} {DROPIN_DIR}/ && "
              "systemctl daemon-reload")
    try:
        vm.sh.write_file("/etc/kdumpd/kdumpd.toml", '[reload]\nbackend = "kdump-config"\n')
        vm.sh.run("kdump-config reload", timeout=300)  # kdumpd's reload left crash_hotplug=1
        d.restart_kdumpd(vm)
        before_tool = kexec_cmd_written(vm)
        fourth = run_burst(guest, "DIMM hot-add, backend kdump-config with distro-tools.conf",
                           dimm_burst(guest))
        result.bursts.append(fourth)
        after_tool = kexec_cmd_written(vm)
    finally:  # the later scenarios on this guest expect the defaults
        vm.sh.run(f"rm -f {DROPIN_DIR}/distro-tools.conf && systemctl daemon-reload")
        vm.sh.write_file("/etc/kdumpd/kdumpd.toml", "# kdumpd's defaults\n")
    assert (fourth.before.cpu, fourth.before.memory) == ("0", "0"), said(fourth)
    assert fourth.reloads == 1 and fourth.failed == 0, said(fourth)
    assert fourth.after.loaded == "1", said(fourth)
    assert before_tool != after_tool, "kdump-config did not load (kexec_cmd unchanged)"


# -- the Ansible role on a real host ---------------------------------------------------------

ROLE_PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: kdumpd.kdumpd.kdumpd
      vars:
        kdumpd_package: /mnt/payload/kdumpd.deb
        kdumpd_rule_state: present
        kdumpd_settings: {settings}
"""


def converge(vm: Vm, settings: str) -> tuple[dict[str, int], float, str]:
    """Run the role in the guest; its PLAY RECAP counters, the time, the output's tail."""
    vm.sh.write_file("/root/site.yml", ROLE_PLAYBOOK.format(settings=settings))
    started = time.monotonic()
    run = vm.sh.run("ANSIBLE_COLLECTIONS_PATH=/root/collections ANSIBLE_NOCOLOR=1 "
                    "ansible-playbook -i localhost, -e ansible_python_interpreter=/usr/bin/python3 "
                    "/root/site.yml", timeout=900, check=False)
    took = time.monotonic() - started
    recap = next((line for line in run.output.splitlines() if line.startswith("localhost")
                  and "ok=" in line), "").split(":", 1)[-1].strip()
    counters = {k: int(v) for k, v in (item.split("=") for item in recap.split())}
    assert run.ok and counters, run.output[-3000:]
    return counters, took, recap


# The dump kernel's boot must not reboot (QEMU runs with -no-reboot, and the root disk's
# snapshot would be gone) and must give the test its shell back: kdump-tools' init script
# sources /etc/default/kdump-tools after setting PATH, so a shell function there stands in
# for its `reboot -f`; a drop-in pulls the test's console shell into the dump boot.
NO_REBOOT = ('reboot() { echo "kdumpd-vm: reboot after the dump suppressed for the test"; }\n')


DUMP_SHELL_DROPIN = "/etc/systemd/system/kdump-tools-dump.service.d/kdumpd-vm.conf"


# -- a seeded chaos run: random hotplug, restarts, kills and foreign loads -------------

CHAOS_STEPS = int(os.environ.get("KDUMPD_VM_CHAOS_STEPS", "6"))


FINGERPRINT = ("python3 -c 'import json, pathlib; from kdumpd.hardware import read_hardware; "
               "s = json.loads(pathlib.Path(\"/var/lib/kdumpd/state.json\").read_text()); "
               "print(s[\"fingerprint\"], read_hardware(pathlib.Path(\"/\")).fingerprint)'")


def settle_kdumpd(vm: Vm, timeout: float = 90.0) -> None:
    """Until udev settled, kdumpd is active and its journal was quiet for 3 s."""
    vm.sh.run("udevadm settle -t 60", timeout=90)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        active = vm.sh.run("systemctl is-active kdumpd", check=False).output.strip()
        cursor = d.journal_cursor(vm)
        if active == "active" and cursor == last:
            return
        last = cursor
        time.sleep(3.0)
    raise AssertionError(f"kdumpd did not settle in {timeout:.0f} s")


def invariant(vm: Vm) -> str:
    """'' when the invariant holds: a crash kernel is loaded and the kernel keeps it
    current, or it describes the hardware kdumpd recorded; else what is wrong."""
    state = d.crash_state(vm)
    if state.loaded != "1":
        return f"no crash kernel loaded ({state.hotplug()})"
    if (state.cpu, state.memory) == ("1", "1"):
        return ""
    recorded, current = (vm.sh.run(FINGERPRINT).output.split() + ["?", "?"])[:2]
    if recorded != current:
        return (f"crash_hotplug {state.hotplug()} and the image was loaded for other hardware "
                f"(recorded {recorded}, now {current})")
    return ""
