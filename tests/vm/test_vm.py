"""End to end: kdumpd from the .deb, as a systemd service, in a real Linux under QEMU.

One guest with Debian 13's kernel 6.12 runs scenarios 1-5 in order (each starts by
stopping kdumpd and setting up the crash kernel it needs); scenario 6 boots the same image
with Debian 12's kernel 6.1, which has no crash_hotplug attributes. Every decision is read
from kdumpd's structured journal, every state from sysfs. tests/vm/RESULTS.md is
rewritten at the end of the session.

Run with ``make vm-test`` (or ``KDUMPD_VM=1 pytest tests/vm``); needs root. If the Debian
mirror cannot be reached the image build fails and so does the test: it never passes
without booting.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdumpd import journal_ids

from . import driver as d
from . import dumpcheck as dc
from .guest import GuestError, Vm, VmConfig, make_payload
from .image import REPO, BuildError, Image, get_image
from .results import BurstResult, RunResults, ScenarioResult

DECISIONS = {journal_ids.RELOAD_DONE, journal_ids.RELOAD_FAILED, journal_ids.SKIPPED,
             journal_ids.WOULD_RELOAD}
SCENARIOS = 18  # scenario() calls in a full run: 1-17, scenario 10 twice
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


# -- session fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def run_results() -> Iterator[RunResults]:
    results = RunResults()
    yield results
    results.total_s = time.time() - results.started
    if not results.scenarios:
        return
    # Only a run of every scenario replaces the committed RESULTS.md; a partial run
    # (pytest -k ...) writes next to the QEMU logs.
    if len(results.scenarios) == SCENARIOS:
        results.write()
    else:
        WORKDIR.mkdir(parents=True, exist_ok=True)
        results.write(WORKDIR / "RESULTS.md")


@pytest.fixture(scope="session")
def image(run_results: RunResults) -> Image:
    if os.geteuid() != 0:
        pytest.fail("the VM tests need root (debootstrap, chroot)")
    try:
        built = get_image()
    except BuildError as error:
        pytest.fail(f"cannot build the guest image: {error}")
    run_results.build = {k.removesuffix("_s"): v for k, v in built.timings.items()}
    run_results.build_cold = built.cold
    return built


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


@pytest.fixture(scope="session")
def package(run_results: RunResults) -> Package:
    if os.environ.get("KDUMPD_VM_STANDIN") == "1":
        run_results.package = "STAND-IN (working tree copied, not the .deb)"
        return Package(
            "stand-in",
            {"kdumpd": REPO / "kdumpd", "kdumpd.service": REPO / "units" / "kdumpd.service",
             "kdumpd-wrapper": STANDIN_WRAPPER.encode()},
            "cp -r /mnt/payload/kdumpd /usr/lib/python3/dist-packages/ && "
            "install -m 0755 /mnt/payload/kdumpd-wrapper /usr/bin/kdumpd && "
            "install -m 0644 /mnt/payload/kdumpd.service /usr/lib/systemd/system/ && "
            "systemctl daemon-reload",
        )
    deb = build_deb()
    run_results.package = f"{deb.name} (make deb), installed with dpkg -i in the guest"
    return Package(deb.name, {"kdumpd.deb": deb},
                   "dpkg -i /mnt/payload/kdumpd.deb && systemctl daemon-reload && "
                   "dpkg -s kdumpd | grep -E '^(Status|Version):' && kdumpd --version")


@dataclass
class Guest:
    vm: Vm
    release: str
    hotplug: d.Hotplug

    def config(self, **kwargs: str) -> d.KdumpdConfig:
        return d.KdumpdConfig(kernel=f"/boot/vmlinuz-{self.release}",
                              initrd=f"/boot/initrd-small-{self.release}.img", **kwargs)


def boot(image: Image, kernel: str, files: dict[str, Path | bytes], results: RunResults,
         prepare: Callable[[Guest], None]) -> Iterator[Guest]:
    """Boot ``kernel`` with ``files`` on the payload disk (mounted at /mnt/payload), run
    ``prepare`` in it, yield it; stop it afterwards.

    A guest still running from an earlier fixture is stopped first: two TCG guests on
    the two cores would slow each other down.
    """
    while RUNNING:
        RUNNING.pop().stop()
    workdir = WORKDIR / kernel
    workdir.mkdir(parents=True, exist_ok=True)
    payload = make_payload(files, workdir / "payload.ext4")
    k = image.kernels[kernel]
    vm = Vm(VmConfig(kernel=k, root_image=image.root, payload=payload, workdir=workdir))
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
    extra: dict[str, Path | bytes] | None = None,
) -> Iterator[Guest]:
    """Boot ``kernel``, install ``package`` in the guest, enable and start kdumpd."""
    def install_and_start(guest: Guest) -> None:
        vm = guest.vm
        # Install first: the package's own conffile must not meet ours (dpkg would ask).
        vm.sh.run(package.install, timeout=180)
        d.configure_kdumpd(vm, guest.config(load="plain"))
        vm.sh.run("systemctl enable kdumpd", timeout=60)
        d.restart_kdumpd(vm)

    files = {**package.payload, "kdump-config": KDUMP_CONFIG_STUB.encode(), **(extra or {})}
    yield from boot(image, kernel, files, results, install_and_start)


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


@pytest.fixture(scope="module")
def trixie(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    yield from boot_with_kdumpd(image, "trixie", package, run_results)


@pytest.fixture()
def scenario(
    request: pytest.FixtureRequest, run_results: RunResults
) -> Iterator[Callable[[str, str, str], ScenarioResult]]:
    """Make the test's :class:`ScenarioResult`; its outcome is filled in afterwards."""
    made: list[ScenarioResult] = []
    started = time.monotonic()

    def make(name: str, kernel: str, setup: str) -> ScenarioResult:
        made.append(run_results.scenario(name, kernel, setup))
        return made[-1]

    yield make
    report = getattr(request.node, "rep_call", None)
    for result in made:
        result.duration_s = time.monotonic() - started
        result.outcome = report.outcome if report is not None else "error"


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


# -- scenarios on 6.12 -----------------------------------------------------------------------


KEXEC_LOAD_DROPIN = "/usr/share/kdumpd/kexec-load.conf"  # shipped by the package
DROPIN_DIR = "/etc/systemd/system/kdumpd.service.d"
TOOLS_DROPIN = "/usr/share/kdumpd/distro-tools.conf"  # for the kdump-config/kdumpctl backends


def test_1_plain_kexec_load_reloads_once_per_burst(trixie: Guest, scenario: Callable) -> None:
    result = scenario(
        "1. plain kexec_load (crash_hotplug=0): one reload per burst", trixie.release,
        "Crash kernel loaded with `kexec -p -c` (kexec_load); kdumpd load mode \"plain\" so "
        "every reload leaves crash_hotplug=0 again. First burst with the unit as shipped "
        "(kdumpd must refuse kexec_load there without unloading); then with the package's "
        f"{KEXEC_LOAD_DROPIN} installed as its README says.",
    )
    vm = trixie.vm
    d.stop_kdumpd(vm)
    d.kexec_load(vm, trixie.release, ["-c"])
    restart_with(trixie, trixie.config(load="plain"))
    refused = run_burst(trixie, "CPU1 offline+online, unit as shipped", cpu_cycle_burst(trixie))
    result.bursts.append(refused)

    vm.sh.run(f"mkdir -p {DROPIN_DIR} && cp {KEXEC_LOAD_DROPIN} {DROPIN_DIR}/ && "
              "systemctl daemon-reload")
    try:
        d.restart_kdumpd(vm)
        for name, action in (("DIMM hot-add 512 MiB", dimm_burst(trixie)),
                             ("CPU1 offline+online", cpu_cycle_burst(trixie)),
                             ("CPU hot-add (QMP) + online", cpu_add_burst(trixie))):
            result.bursts.append(run_burst(trixie, f"{name}, with kexec-load.conf", action))
    finally:
        # The other scenarios run the unit as shipped.
        vm.sh.run(f"rm -f {DROPIN_DIR}/kexec-load.conf && systemctl daemon-reload")

    assert_accounted(refused)
    assert refused.reloads == 0 and refused.failed >= 1, said(refused)
    assert refused.after.loaded == "1", f"kdumpd unloaded the crash kernel: {said(refused)}"
    for burst in result.bursts[1:]:
        assert_accounted(burst)
        assert burst.before.loaded == "1"
        assert (burst.before.cpu, burst.before.memory) == ("0", "0")
        assert_kdumpd_read(burst, "0")
        assert_one_reload_per_burst(burst)
        assert burst.after.loaded == "1", said(burst)
        assert (burst.after.cpu, burst.after.memory) == ("0", "0")


def test_2_own_reload_enables_crash_hotplug(trixie: Guest, scenario: Callable) -> None:
    result = scenario(
        "2. kdumpd's own reload (load auto) leaves crash_hotplug=1", trixie.release,
        "Crash kernel loaded with `kexec -p -c`; kdumpd backend kexec, load mode \"auto\".",
    )
    d.stop_kdumpd(trixie.vm)
    d.kexec_load(trixie.vm, trixie.release, ["-c"])
    restart_with(trixie, trixie.config(load="auto"))
    first = run_burst(trixie, "DIMM hot-add 512 MiB", dimm_burst(trixie))
    result.bursts.append(first)
    second = run_burst(trixie, "CPU1 offline+online", cpu_cycle_burst(trixie))
    result.bursts.append(second)
    assert_accounted(first)
    assert (first.before.cpu, first.before.memory) == ("0", "0")
    assert first.reloads == 1 and first.failed == 0, said(first)
    assert first.after.loaded == "1"
    assert (first.after.cpu, first.after.memory) == ("1", "1")
    assert_accounted(second)
    assert_kdumpd_read(second, "1")
    assert second.reloads == 0 and second.failed == 0, said(second)
    assert second.after.loaded == "1"


def test_3_file_load_needs_no_reload(trixie: Guest, scenario: Callable) -> None:
    result = scenario(
        "3. crash kernel loaded with kexec_file_load: no reload", trixie.release,
        "Crash kernel loaded with `kexec -p -s` (kexec_file_load).",
    )
    d.stop_kdumpd(trixie.vm)
    d.kexec_load(trixie.vm, trixie.release, ["-s"])
    restart_with(trixie, trixie.config(load="auto"))
    for name, action in (("DIMM hot-add 512 MiB", dimm_burst(trixie)),
                         ("CPU1 offline+online", cpu_cycle_burst(trixie))):
        result.bursts.append(run_burst(trixie, name, action))
    for burst in result.bursts:
        assert_accounted(burst)
        assert (burst.before.cpu, burst.before.memory) == ("1", "1")
        assert_kdumpd_read(burst, "1")
        assert burst.reloads == 0 and burst.failed == 0, said(burst)
        assert burst.after.loaded == "1"
        assert (burst.after.cpu, burst.after.memory) == ("1", "1")


def test_4_no_crash_kernel_no_reload(trixie: Guest, scenario: Callable) -> None:
    result = scenario(
        "4. no crash kernel loaded: no reload", trixie.release,
        "`kexec -p -u` before kdumpd starts.",
    )
    d.stop_kdumpd(trixie.vm)
    d.kexec_unload(trixie.vm)
    restart_with(trixie, trixie.config(load="auto"))
    for name, action in (("DIMM hot-add 512 MiB", dimm_burst(trixie)),
                         ("CPU1 offline+online", cpu_cycle_burst(trixie))):
        result.bursts.append(run_burst(trixie, name, action))
    for burst in result.bursts:
        assert_accounted(burst)
        assert burst.reloads == 0 and burst.failed == 0, said(burst)
        assert burst.after.loaded == "0"


STATUS_COUNTS = re.compile(r"events (\d+), skipped (\d+), reloads (\d+)")


def kdump_config_calls(guest: Guest) -> int:
    out = guest.vm.sh.run("cat /run/kdump-config.calls 2>/dev/null | wc -l").output
    return int(out.strip() or "0")


def cpu_cycle_calls(guest: Guest) -> int:
    """CPU1 offline+online with udev settled; how often the distro rule ran kdump-config."""
    guest.vm.sh.run("rm -f /run/kdump-config.calls")
    guest.hotplug.cpu_offline_online(1)
    guest.vm.sh.run("udevadm settle -t 30")
    return kdump_config_calls(guest)


def test_5_status_and_distribution_rule(trixie: Guest, scenario: Callable) -> None:
    result = scenario(
        "5. READY, STATUS counts, and `kdumpd rule install` on Debian's kdump-tools rule",
        trixie.release,
        "Crash kernel loaded with `-s`; Debian's 50-kdump-tools.rules (from the trixie "
        "kdump-tools package) in /usr/lib/udev/rules.d with a stub kdump-config that "
        "records its calls.",
    )
    vm = trixie.vm
    d.stop_kdumpd(vm)
    d.kexec_load(vm, trixie.release, ["-s"])
    restart_with(trixie, trixie.config(load="auto"))
    burst = run_burst(trixie, "CPU1 offline+online", cpu_cycle_burst(trixie))
    result.bursts.append(burst)
    state = d.unit_state(vm)
    result.notes.append(f"systemctl show: {state}")
    assert state.get("ActiveState") == "active", state
    counts = STATUS_COUNTS.search(state.get("StatusText", ""))
    assert counts, f"STATUS has no counts: {state}"
    assert [int(c) for c in counts.groups()] == [burst.udev_events, burst.udev_events, 0]

    # The distribution's rule as shipped: kdump-config on every event, crash_hotplug or not.
    vm.sh.run(
        "install -m 0755 /mnt/payload/kdump-config /usr/sbin/kdump-config && "
        f"install -m 0644 {DISTRO_RULES} /usr/lib/udev/rules.d/50-kdump-tools.rules && "
        "udevadm control --reload"
    )
    d.stop_kdumpd(vm)
    baseline = cpu_cycle_calls(trixie)
    result.notes.append(f"shipped rule, kdumpd stopped, crash_hotplug=1: {baseline} "
                        "kdump-config call(s) for CPU1 offline+online")
    assert baseline >= 1, "the shipped rule should call kdump-config (test is meaningless)"

    install = vm.sh.run("kdumpd rule install --json", check=False, timeout=60)
    assert install.ok, install.output
    answer = json.loads(install.output)
    result.notes.append(f"`kdumpd rule install --json`: changed={answer.get('changed')} "
                        f"path={answer.get('path')} msg={answer.get('msg')!r}")
    changed = str(answer.get("path") or "")
    assert changed, f"`kdumpd rule install` named no file: {install.output}"
    verify = vm.sh.run(f"udevadm verify {changed}", check=False)
    result.notes.append(f"`udevadm verify {changed}`: exit {verify.status}: "
                        f"{verify.output.strip()[:300]}")
    assert verify.ok, verify.output
    vm.sh.run("udevadm control --reload")

    with_hotplug = cpu_cycle_calls(trixie)
    result.notes.append(f"rule installed, kdumpd stopped, crash_hotplug=1: {with_hotplug} "
                        "kdump-config call(s)")
    d.kexec_load(vm, trixie.release, ["-c"])
    without_hotplug = cpu_cycle_calls(trixie)
    result.notes.append(f"rule installed, kdumpd stopped, crash_hotplug=0 (`-c` load): "
                        f"{without_hotplug} kdump-config call(s)")
    d.restart_kdumpd(vm)
    handed_over = cpu_cycle_calls(trixie)
    result.notes.append(f"rule installed, kdumpd running, crash_hotplug=0: {handed_over} "
                        "kdump-config call(s) (kdumpd's hand-over file)")
    assert with_hotplug == 0, "with crash_hotplug=1 the distro rule must not reload"
    assert without_hotplug >= 1, "with crash_hotplug=0 and no kdumpd the distro rule must run"


# -- scenario on 6.1 -------------------------------------------------------------------------


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


def test_7_restarts_and_kills_keep_a_current_crash_kernel(
    trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "7. never lose the crash kernel: hotplug while stopped, stop during a reload, "
        "SIGKILL with an owed image", trixie.release,
        "Crash kernel loaded with `kexec -p -c` (crash_hotplug=0); kdumpd load auto (file "
        "under the shipped unit). (a) stop kdumpd, hot-add a DIMM, start; (b) a CPU burst "
        "starts kdumpd's reload, `systemctl stop kdumpd` as soon as the load syscall freed "
        "the old image; (c) with kdumpd running: `kexec -p -u` and a state file saying "
        "kdumpd owes the image (what a reload that failed inside the syscall leaves), then "
        "SIGKILL; systemd restarts kdumpd.",
    )
    vm = trixie.vm
    start_fresh(trixie, ["-c"], load="auto")

    # (a) hotplug while kdumpd is not running
    d.stop_kdumpd(vm)
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
    vm.sh.run("echo 0 > /sys/devices/system/cpu/cpu1/online; "
              "echo 1 > /sys/devices/system/cpu/cpu1/online; "
              "timeout 30 sh -c 'until [ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 0 ]; "
              "do :; done'; systemctl stop kdumpd", timeout=120)
    stop_s = time.monotonic() - started
    after = d.crash_state(vm)
    entries = d.journal_since(vm, cursor)
    said_b = messages(entries)
    result.notes.append(f"(b) stop issued inside the load; stop returned after {stop_s:.1f} s "
                        f"(from the CPU burst); afterwards loaded {after.loaded}, "
                        f"{after.hotplug()}; kdumpd said: " + " | ".join(said_b))
    assert after.loaded == "1", said_b
    assert any(e.message_id == journal_ids.RELOAD_DONE for e in entries), said_b

    # (c) SIGKILL while kdumpd owes the image it unloaded
    d.restart_kdumpd(vm)
    boot_id = vm.sh.run("cat /proc/sys/kernel/random/boot_id").output.strip()
    vm.sh.run("kexec -p -u")
    vm.sh.write_file("/var/lib/kdumpd/state.json", json.dumps(
        {"version": 1, "boot_id": boot_id, "owed": True, "fingerprint": "", "hardware": "",
         "last_load": None}))
    cursor = d.journal_cursor(vm)
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


def test_8_window_without_a_crash_kernel_per_load_mode(
    trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "8. the window without a crash kernel during a reload, per load mode", trixie.release,
        "kexec_crash_loaded polled in a tight Python loop in the guest while one reload runs "
        "over a `kexec -p -c` image. kdumpd: `kdumpd reload` (the CLI, as root outside the "
        "unit, so kexec_load can work) with load mode file and hotplug, kdumpd stopped. "
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
            config = trixie.config(load=mode).toml() + "[state]\ndir = \"/tmp/kdumpd-cli\"\n"
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


def guest_argv_str(argv: list[str]) -> str:
    from .guest import guest_argv

    return guest_argv(argv)


def test_9_hotplug_during_kdumpds_own_load_gives_one_more_reload(
    trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "9. a DIMM hot-add while kdumpd's own hotplug-capable load runs", trixie.release,
        "Crash kernel loaded with `kexec -p -c`; kdumpd load auto (file under the unit, a "
        "1.8 s syscall in the guest). A CPU burst starts kdumpd's reload; the DIMM is added "
        "as soon as the load syscall freed the old image. The kernel skips its own "
        "elfcorehdr update while the load holds the kexec lock, so kdumpd must reload once "
        "more although crash_hotplug reads 1 afterwards.",
    )
    vm = trixie.vm
    # Its own configuration, not an earlier scenario's; fresh state: the earlier scenarios
    # changed the hardware, and no start-up decision is wanted.
    start_fresh(trixie, ["-c"], load="auto")
    vm.sh.run("dmesg -C")

    def cpu_then_dimm_inside_the_load() -> None:
        vm.sh.run("echo 0 > /sys/devices/system/cpu/cpu1/online; "
                  "echo 1 > /sys/devices/system/cpu/cpu1/online; "
                  "timeout 30 sh -c 'until [ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 0 ]; "
                  "do :; done'", timeout=60)
        trixie.hotplug.add_dimm()

    burst = run_burst(trixie, "CPU1 offline+online, then a DIMM during kdumpd's load",
                      cpu_then_dimm_inside_the_load)
    result.bursts.append(burst)
    kernel_log = vm.sh.run("dmesg | grep -i 'kdump image may be inaccurate' || true").output
    result.notes.append("kernel log during the load: "
                        + (kernel_log.strip() or "(no 'kdump image may be inaccurate' line)"))
    assert burst.failed == 0, said(burst)
    assert burst.reloads == 2, said(burst)
    # Either kdumpd saw the events arrive during its load, or (they came later) it saw
    # the hardware change between the start and the end of its load.
    assert any("held the kexec lock" in r or "changed while our load ran" in r
               for r in burst.reasons), said(burst)
    assert burst.after.loaded == "1"


# -- proof by dump: a real panic, the crash kernel boots, its /proc/vmcore is read -----
# Each scenario boots a guest of its own (the panic ends it), after the shared one.


@pytest.fixture()
def dumping_trixie(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    yield from boot_with_kdumpd(image, "trixie", package, run_results)


PANIC_BOOT_TIMEOUT_S = 300.0


def panic(vm: Vm, reader_path: str, reader: str) -> tuple[dc.Before, float]:
    """Record RAM and CPUs, put ``reader`` in the guest, panic; return what was recorded
    and the seconds until the crash kernel's shell answered."""
    vm.sh.run("udevadm settle -t 60", timeout=90)
    ram, reserved = dc.parse_iomem(vm.sh.run("cat /proc/iomem").output)
    before = dc.Before(ram, reserved,
                       dc.count_cpus(vm.sh.run("cat /sys/devices/system/cpu/online").output))
    vm.sh.write_file(reader_path, reader)
    assert d.crash_state(vm).loaded == "1", "no crash kernel loaded before the panic"
    vm.sh.run("sync")
    panicked = time.monotonic()
    vm.sh.send("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger")
    vm.sh.wait_ready(PANIC_BOOT_TIMEOUT_S)
    up_s = time.monotonic() - panicked
    assert vm.sh.run("test -e /proc/vmcore", check=False).ok, "not in a crash kernel"
    return before, up_s


def panic_and_check(guest: Guest) -> tuple[dc.Verdict, float, str]:
    """Record RAM and CPUs, panic, wait for the crash kernel's shell, read its vmcore.

    Returns the verdict, the seconds from the panic to the crash kernel's shell, and a
    summary line for RESULTS.md.
    """
    vm = guest.vm
    before, up_s = panic(vm, "/root/vmcore-reader.py", dc.VMCORE_READER)
    out = vm.sh.run("python3 /root/vmcore-reader.py", timeout=120).output
    dump = dc.parse_reader_output(out)
    verdict = dc.compare(before, dump)
    return verdict, up_s, dc.summary(before, dump, verdict)


def hotplug_then_dump(guest: Guest, result: ScenarioResult) -> dc.Verdict:
    result.bursts.append(run_burst(guest, "DIMM hot-add 512 MiB", dimm_burst(guest)))
    result.bursts.append(run_burst(guest, "CPU hot-add (QMP) + online", cpu_add_burst(guest)))
    verdict, up_s, line = panic_and_check(guest)
    result.notes.append(f"after `echo c > /proc/sysrq-trigger` the crash kernel's shell "
                        f"answered in {up_s:.0f} s. {line}")
    return verdict


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


SKIP_LINE = "kexec_trylock() failed"


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
    entries = d.wait_journal(vm, cursor, lambda es: not skipped or any(
        e.message_id == journal_ids.RELOAD_DONE for e in es), timeout=120)
    said_2 = messages(entries)
    reloads_2 = sum(e.message_id == journal_ids.RELOAD_DONE for e in entries)
    result.notes.append(f"(2) DIMM hot-add during a loop of foreign `kexec -s -p` loads: "
                        f"kernel: {skipped.splitlines()[0] if skipped else '(no skip line)'} "
                        f"({len(skipped.splitlines())} line(s); the loop's kexec printed "
                        f"{loops} line(s)); kdumpd: {reloads_2} "
                        "reload(s); it said: " + " | ".join(said_2))
    if skipped:
        assert any("kexec_trylock() failed" in m for m in said_2), said_2
        assert reloads_2 >= 1, said_2

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


@pytest.fixture(scope="module")
def kdump_tools_trixie(image: Image, package: Package,
                       run_results: RunResults) -> Iterator[Guest]:
    """A fresh trixie guest shared by scenario 13, which installs Debian's kdump-tools, and
    scenario 16, which runs the role there (one boot and one kdump initramfs build less)."""
    yield from boot_with_kdumpd(image, "trixie", package, run_results,
                                extra={"collection": REPO / "ansible"})


def test_13_debian_kdump_tools_with_kdumpds_default_configuration(
    kdump_tools_trixie: Guest, scenario: Callable
) -> None:
    guest = kdump_tools_trixie
    result = scenario(
        "13. Debian's kdump-tools and kdumpd's default configuration", guest.release,
        "Debian's real kdump-tools (trixie's .deb, `dpkg -i`; its postinst builds the kdump "
        "initramfs) and kdumpd with an empty configuration (backend auto, the package's unit, "
        "rule state runtime: the override in /run/udev/rules.d while kdumpd runs). "
        "(1) kdump-tools' own load (kexec_file_load, crash_hotplug=1); "
        "(2) `KDUMP_KEXEC_ARGS=\"-c\"` and `kdump-config reload` (crash_hotplug=0): kdumpd "
        "must reload once per burst with kdump-tools' kernel, initrd and command line "
        "(compared with the command kdump-config keeps in /var/crash/kexec_cmd), and the "
        "distribution's rule must not reload (it stands down while kdumpd runs); "
        "(3) backend \"kdump-config\" in the package's unit with its distro-tools.conf "
        "drop-in, kdump-tools loaded with -c: one `kdump-config reload` per burst, "
        "crash kernel loaded after it.",
    )
    vm = guest.vm
    d.stop_kdumpd(vm)
    installed = vm.sh.run("dpkg -i /root/debs/kdump-tools_*.deb 2>&1 | tail -5; "
                          "ls -l /var/lib/kdump/", timeout=900, check=False)
    result.notes.append("kdump-tools installed: " + " / ".join(
        line.strip() for line in installed.output.splitlines()[-4:]))
    vm.sh.run("test -e /var/lib/kdump/vmlinuz && test -e /var/lib/kdump/initrd.img")
    vm.sh.write_file("/etc/kdumpd/kdumpd.toml", "# kdumpd's defaults\n")
    # dpkg's postinst may have started kdump-tools already: reload is unload + load.
    vm.sh.run("kdump-config reload", timeout=300)
    own = d.crash_state(vm)
    d.restart_kdumpd(vm)
    status = vm.sh.run("kdumpd status").output
    result.notes.append("kdumpd status: " + " / ".join(
        line.strip() for line in status.splitlines() if line.strip().startswith(
            ("backend", "family", "kernel:", "initrd:", "append:", "warning:"))))
    first = run_burst(guest, "DIMM hot-add, kdump-tools' own load", dimm_burst(guest))
    result.bursts.append(first)

    vm.sh.run("echo 'KDUMP_KEXEC_ARGS=\"-c\"' >> /etc/default/kdump-tools && "
              "kdump-config reload", timeout=300)
    distro_cmd = vm.sh.run("cat /var/crash/kexec_cmd").output.strip()
    before_calls = kexec_cmd_written(vm)
    second = run_burst(guest, "DIMM hot-add, kdump-tools loaded with -c", dimm_burst(guest))
    result.bursts.append(second)
    third = run_burst(guest, "CPU hot-add (QMP) + online", cpu_add_burst(guest))
    result.bursts.append(third)
    after_calls = kexec_cmd_written(vm)
    ours = vm.sh.run("journalctl -u kdumpd -o cat | grep 'loading the crash kernel: ' | "
                     "tail -1").output.strip().split("loading the crash kernel: ", 1)[-1]
    result.notes.append(f"kdump-config's load: {distro_cmd}")
    result.notes.append(f"kdumpd's load: {ours}")
    assert (own.loaded, own.cpu, own.memory) == ("1", "1", "1"), own
    assert first.reloads == 0 and first.failed == 0, said(first)
    assert (second.before.cpu, second.before.memory) == ("0", "0"), said(second)
    assert second.reloads == 1 and second.failed == 0, said(second)
    assert second.after.loaded == "1" and (second.after.cpu, second.after.memory) == ("1", "1")
    assert third.reloads == 0 and third.failed == 0, said(third)
    theirs = kexec_parts(shlex.split(distro_cmd))
    mine = kexec_parts(shlex.split(ours))
    assert mine == theirs, (mine, theirs)
    assert before_calls == after_calls, "the distribution's rule reloaded beside kdumpd"
    # No surprise on install: the override lives in /run while kdumpd runs, never in /etc.
    layers = vm.sh.run("grep -c 'BEGIN kdumpd managed block' "
                       "/run/udev/rules.d/50-kdump-tools.rules; "
                       "test ! -e /etc/udev/rules.d/50-kdump-tools.rules && echo no-etc",
                       check=False).output.split()
    d.stop_kdumpd(vm)
    gone = vm.sh.run("test ! -e /run/udev/rules.d/50-kdump-tools.rules && echo gone",
                     check=False).output.strip()
    result.notes.append(f"rules while running: /run override {layers}; after stop: {gone}")
    assert layers == ["1", "no-etc"], layers
    assert gone == "gone", "the runtime override outlived kdumpd"

    kdump_config_backend_burst(guest, result)
    d.restart_kdumpd(vm)


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


def test_16_the_ansible_role_converges_on_a_real_host(kdump_tools_trixie: Guest,
                                                      scenario: Callable) -> None:
    guest = kdump_tools_trixie  # after scenario 13: kdump-tools is installed
    vm = guest.vm
    # The role installs kdumpd: take away scenario 13's (purge: config and state too).
    vm.sh.run("systemctl stop kdumpd && dpkg --purge kdumpd >/dev/null && "
              "! command -v kdumpd && test ! -e /etc/kdumpd && "
              "dpkg -s kdump-tools | grep -q '^Status: install ok installed' && "
              "mkdir -p /root/collections/ansible_collections/kdumpd && "
              "cp -r /mnt/payload/collection /root/collections/ansible_collections/kdumpd/kdumpd",
              timeout=300)
    result = scenario(
        "16. The Ansible role on a real Debian 13 host", guest.release,
        "The trixie guest of scenario 13 (Debian's kdump-tools installed) with kdumpd "
        "purged; ansible-core from trixie "
        "runs the collection's role against localhost: (1) the .deb, backend kdump-config, "
        "rule state present; (2) the same again, which must change nothing. After (1) "
        "kdumpd must be active and enabled, run with the package's distro-tools.conf "
        "drop-in (systemd reloaded by the restart handler) and the backend kdump-config, "
        "and the block must be in /etc/udev/rules.d. (Switching the backend back, which "
        "removes the drop-in, is tested in tests/ansible; a third run here costs 2.5 min.)",
    )
    tools = "{reload: {backend: kdump-config}}"
    first, first_s, first_recap = converge(vm, tools)
    active = vm.sh.run("systemctl is-active kdumpd; systemctl is-enabled kdumpd; "
                       "systemctl show -P DropInPaths kdumpd; "
                       "systemctl show -P NeedDaemonReload kdumpd; "
                       "kdumpd status --json", check=False).output
    block = vm.sh.run("grep -c 'BEGIN kdumpd managed block' "
                      "/etc/udev/rules.d/50-kdump-tools.rules", check=False).output.strip()
    second, second_s, second_recap = converge(vm, tools)
    status = json.loads(active[active.index("{"):])
    result.notes += [
        f"first run ({first_s:.0f} s): {first_recap}",
        f"second run ({second_s:.0f} s): {second_recap}",
        "after the first run: " + " / ".join(active[:active.index("{")].split())
        + f"; status backend {status.get('backend')!r}; blocks in /etc: {block}",
    ]
    assert first["changed"] > 0 and first["failed"] == 0, first_recap
    assert active.split()[:4] == ["active", "enabled",
                                  "/etc/systemd/system/kdumpd.service.d/distro-tools.conf",
                                  "no"], active  # started after systemd read the drop-in
    assert status.get("backend") == "kdump-config", status
    assert block == "1", block
    assert second["changed"] == 0 and second["failed"] == 0, second_recap


# -- Debian's kdump-tools across a reboot, then its own dump path ---------------------------


@pytest.fixture(scope="module")
def rebooted_kdump_tools_trixie(image: Image, package: Package,
                                run_results: RunResults) -> Iterator[Guest]:
    """A trixie guest on a disk that survives a power-off (a qcow2 overlay of the image
    instead of snapshot=on): kdumpd's .deb and Debian's real kdump-tools installed and
    enabled on the first boot, kdumpd's default configuration, `systemctl poweroff`;
    yielded on its second boot. Scenario 15 checks that boot, scenario 14 then dumps from
    the same guest (one boot and one kdump initramfs build less than a guest each)."""
    while RUNNING:
        RUNNING.pop().stop()
    workdir = WORKDIR / "reboot"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    overlay = workdir / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(image.root), str(overlay)], check=True, timeout=60)
    payload = make_payload(dict(package.payload), workdir / "payload.ext4")
    k = image.kernels["trixie"]
    vm = Vm(VmConfig(kernel=k, root_image=image.root, payload=payload, overlay=overlay,
                     workdir=workdir / "first"))
    RUNNING.append(vm)
    started = time.monotonic()
    try:
        start_with_one_retry(vm, run_results)
        vm.sh.run("mkdir -p /mnt/payload && mount -o ro /dev/vdb /mnt/payload && "
                  f"{package.install}", timeout=180)
        vm.sh.run("dpkg -i /root/debs/kdump-tools_*.deb >/dev/null 2>&1; "
                  "test -e /var/lib/kdump/initrd.img && systemctl is-enabled kdump-tools "
                  "kdumpd", timeout=900)
        vm.sh.write_file("/etc/kdumpd/kdumpd.toml", "# kdumpd's defaults\n")
        vm.sh.send("sync; systemctl poweroff")
        vm.wait_exit(300)
        vm.stop()
        RUNNING.remove(vm)
        vm = Vm(VmConfig(kernel=k, root_image=image.root, payload=payload, overlay=overlay,
                         workdir=workdir / "second"))
        RUNNING.append(vm)
        start_with_one_retry(vm, run_results)
        run_results.boots[f"trixie ({k.release}) after a power-off"] = vm.boot_s
        vm.sh.run("mkdir -p /mnt/payload && mount -o ro /dev/vdb /mnt/payload")
        run_results.notes.append(
            "scenarios 15 and 14's guest: two boots, kdumpd's and kdump-tools' installs and "
            f"a power-off took {time.monotonic() - started:.0f} s before scenario 15")
        yield Guest(vm, k.release, d.Hotplug(vm))
    except GuestError as error:
        pytest.fail(f"rebooting guest: {error}\n--- serial console tail:\n"
                    f"{vm.serial_tail()}")
    finally:
        vm.stop()
        if vm in RUNNING:
            RUNNING.remove(vm)
        problems = vm.kernel_problems()
        if problems:
            run_results.notes.append(f"guest kernel {k.release} logged: "
                                     + " / ".join(problems[:5]))


def test_15_after_a_reboot_kdumpd_starts_once_kdump_tools_has_loaded(
    rebooted_kdump_tools_trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "15. a reboot with Debian's kdump-tools and kdumpd both enabled", "trixie",
        "A guest whose disk survives a power-off (a qcow2 overlay of the image instead of "
        "snapshot=on): kdumpd's .deb and Debian's real kdump-tools installed and enabled, "
        "kdumpd's default configuration, then `systemctl poweroff` and a second boot. On "
        "that boot kdump-tools.service must have loaded the crash kernel before kdumpd "
        "started (the unit's After=), kdumpd must find it loaded and reload nothing, and "
        "its runtime rules override must be in /run, none in /etc.",
    )
    vm = rebooted_kdump_tools_trixie.vm
    vm.sh.run("systemctl is-system-running --wait", timeout=300, check=False)
    times = {}
    for unit, prop in (("kdump-tools", "ActiveEnterTimestampMonotonic"),
                       ("kdumpd", "ExecMainStartTimestampMonotonic")):
        value = vm.sh.run(f"systemctl show -P {prop} {unit}").output.strip()
        times[unit] = int(value or 0)
    state = d.crash_state(vm)
    journal = vm.sh.run("journalctl -b -u kdumpd -o cat --no-pager").output
    loads = journal.count("loading the crash kernel: ")
    layers = vm.sh.run("ls /run/udev/rules.d/ /etc/udev/rules.d/ 2>&1", check=False).output
    result.notes.append(
        f"second boot: kdump-tools active at {times['kdump-tools'] / 1e6:.1f} s, kdumpd "
        f"started at {times['kdumpd'] / 1e6:.1f} s (monotonic); kexec_crash_loaded "
        f"{state.loaded}, crash_hotplug {state.hotplug()}; loads by kdumpd: {loads}; "
        "rules directories: " + " ".join(layers.split()))
    assert 0 < times["kdump-tools"] <= times["kdumpd"], times
    assert state.loaded == "1", state
    assert loads == 0, journal[-2000:]
    assert "50-kdump-tools.rules" in vm.sh.run("ls /run/udev/rules.d/").output
    assert not vm.sh.run("test -e /etc/udev/rules.d/50-kdump-tools.rules",
                         check=False).ok


# The dump kernel's boot must not reboot (QEMU runs with -no-reboot, and the root disk's
# snapshot would be gone) and must give the test its shell back: kdump-tools' init script
# sources /etc/default/kdump-tools after setting PATH, so a shell function there stands in
# for its `reboot -f`; a drop-in pulls the test's console shell into the dump boot.
NO_REBOOT = ('reboot() { echo "kdumpd-vm: reboot after the dump suppressed for the test"; }\n')
DUMP_SHELL_DROPIN = "/etc/systemd/system/kdump-tools-dump.service.d/kdumpd-vm.conf"


def test_14_debian_kdump_tools_saves_a_complete_dump_after_kdumpds_reload(
    rebooted_kdump_tools_trixie: Guest, scenario: Callable
) -> None:
    guest = rebooted_kdump_tools_trixie  # scenario 15's: kdump-tools installed, rebooted
    result = scenario(
        "14. proof by dump through Debian's own dump path (kdump-tools-dump.service)",
        guest.release,
        "Scenario 15's guest after its reboot (kdump-tools installed before it). "
        "Debian's real kdump-tools loading with `KDUMP_KEXEC_ARGS=\"-c\"` (crash_hotplug=0), "
        "its default dump format (`makedumpfile -c -d 31`, kdump-compressed) and "
        "`acpi_no_memhotplug` added to its KDUMP_CMDLINE_APPEND (see the notes); kdumpd with its "
        "default configuration. DIMM then CPU hot-add (kdumpd reloads kdump-tools' image), "
        "`echo c > /proc/sysrq-trigger`; the crash kernel boots kdump-tools' initrd and "
        "kdump-tools-dump.service, whose makedumpfile saves the dump under /var/crash. "
        "The saved dump (after `makedumpfile -R`) must cover every System RAM range in its "
        "1st bitmap (the page frames of the vmcore's PT_LOAD ranges, before any filtering) "
        "and hold one NT_PRSTATUS per online CPU. Test scaffolding: the dump boot's "
        "final `reboot -f` is suppressed and the test's console shell started, so the "
        "saved file can be read in the same QEMU run.",
    )
    vm = guest.vm
    d.stop_kdumpd(vm)
    vm.sh.run("test -e /var/lib/kdump/vmlinuz && test -e /var/lib/kdump/initrd.img")
    # acpi_no_memhotplug, as Fedora's kdumpctl appends: without it the dump kernel (which
    # inherits memhp_default_state=online_movable from this guest's command line) onlines
    # the hot-added DIMM as its own memory, and makedumpfile then fails on that range
    # ("ioremap on RAM at 0x100000000"); Debian's kdump-tools does not add it. Seen here.
    vm.sh.run("printf '%s\\n' 'KDUMP_KEXEC_ARGS=\"-c\"' "
              "'KDUMP_CMDLINE_APPEND=\"reset_devices systemd.unit=kdump-tools-dump.service "
              "nr_cpus=1 irqpoll usbcore.nousb acpi_no_memhotplug\"' "
              ">> /etc/default/kdump-tools")
    vm.sh.run(f"printf '{NO_REBOOT}' >> /etc/default/kdump-tools")
    vm.sh.run(f"mkdir -p {os.path.dirname(DUMP_SHELL_DROPIN)} && printf "
              "'[Unit]\\nWants=vmshell.service\\n' > " + DUMP_SHELL_DROPIN +
              " && systemctl daemon-reload")
    vm.sh.run("kdump-config reload", timeout=300)
    fresh_state(vm)
    d.restart_kdumpd(vm)
    result.bursts.append(run_burst(guest, "DIMM hot-add 512 MiB", dimm_burst(guest)))
    result.bursts.append(run_burst(guest, "CPU hot-add (QMP) + online", cpu_add_burst(guest)))
    assert result.bursts[0].reloads == 1, said(result.bursts[0])

    before, up_s = panic(vm, "/root/kdump-reader.py", dc.KDUMP_READER)
    shell_at = time.monotonic()
    # kdump-tools writes dump-incomplete and renames it dump.<stamp> when makedumpfile is
    # done. (Looking for "dump." in the output also matched "kdump-tools-dump.service" in
    # the journal lines, and once read the directory before the dump was there.)
    progress = ("systemctl is-active kdump-tools-dump.service; "
                "journalctl -u kdump-tools-dump -o cat --no-pager | tail -4; ls /var/crash/2*/; "
                'for f in /var/crash/2*/dump.2*; do [ -e "$f" ] && echo "SAVED $f"; done')
    saved = vm.sh.run(progress, check=False, timeout=600)
    deadline = time.monotonic() + 900
    while "SAVED " not in saved.output and time.monotonic() < deadline:
        time.sleep(10)
        saved = vm.sh.run(progress, check=False, timeout=120)
    saved_s = up_s + time.monotonic() - shell_at  # from the panic
    result.notes.append("kdump-tools-dump.service: " + " / ".join(
        line.strip() for line in saved.output.splitlines() if line.strip()))
    assert "SAVED " in saved.output, saved.output
    failed = vm.sh.run("journalctl -u kdump-tools-dump -o cat --no-pager | "
                       "grep -c 'makedumpfile Failed'", check=False).output.strip()
    # kdump-tools reports "saved vmcore" even then (it checks the pipe's last command).
    assert failed == "0", "makedumpfile failed while kdump-tools saved the dump"
    out = vm.sh.run("f=$(ls /var/crash/2*/dump.2* | head -1) && ls -l $f && "
                    "makedumpfile -R /root/dump.kdump < $f >/dev/null && "
                    "python3 /root/kdump-reader.py /root/dump.kdump", timeout=1200).output
    dump = dc.parse_reader_output(out)
    verdict = dc.compare(before, dump)
    result.notes.append(f"crash kernel up {up_s:.0f} s after the panic, dump saved by "
                        f"{saved_s:.0f} s. Saved dump: " + dc.summary(before, dump, verdict))
    assert verdict.ok, verdict.describe()


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
    for number in range(1, CHAOS_STEPS + 1):
        names = [n for n in steps
                 if not (n == "DIMM hot-remove" and not dimms)
                 and not (n == "DIMM hot-add" and len(dimms) >= 3)
                 and not (n == "CPU hot-add + online" and cpus_added >= 2)]
        name = rng.choice(names)
        cpus_added += name == "CPU hot-add + online"
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
                            f"loaded {state.loaded}, {state.hotplug()}: "
                            + (f"INVARIANT BROKEN: {wrong}" if wrong else "invariant holds"))
        if wrong:
            problems.append(f"step {number} ({name}): {wrong}")
    verdict, up_s, line = panic_and_check(guest)
    result.notes.append(f"panic after the last step: crash kernel shell after {up_s:.0f} s. "
                        f"{line}")
    assert not problems, problems
    assert verdict.ok, verdict.describe()


# -- the old kernel last: booting it stops the trixie guest (one TCG guest at a time) --


@pytest.fixture()
def bookworm(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    yield from boot_with_kdumpd(image, "bookworm", package, run_results)


def test_6_old_kernel_without_crash_hotplug(bookworm: Guest, scenario: Callable) -> None:
    result = scenario(
        "6. Debian 12 kernel 6.1: crash_hotplug absent means reload, coalesced",
        bookworm.release,
        "Same image booted with bookworm's kernel; crash kernel loaded with `kexec -p -c`; "
        "kdumpd load mode \"auto\".",
    )
    d.stop_kdumpd(bookworm.vm)
    d.kexec_load(bookworm.vm, bookworm.release, ["-c"])
    restart_with(bookworm, bookworm.config(load="auto"))
    for name, action in (("DIMM hot-add 512 MiB", dimm_burst(bookworm)),
                         ("CPU1 offline+online", cpu_cycle_burst(bookworm)),
                         ("CPU hot-add (QMP) + online", cpu_add_burst(bookworm)),
                         ("DIMM hot-remove (QMP device_del)",
                          lambda: bookworm.hotplug.remove_dimm("dimm1")),
                         ("2 DIMMs hot-added back to back", two_dimms_burst(bookworm))):
        result.bursts.append(run_burst(bookworm, name, action))
    for burst in result.bursts:
        assert_accounted(burst)
        assert (burst.before.cpu, burst.before.memory) == (None, None)
        assert_kdumpd_read(burst, "absent")
        assert_one_reload_per_burst(burst)
        assert burst.after.loaded == "1"
        assert (burst.after.cpu, burst.after.memory) == (None, None)
