"""Decisions per crash kernel kind, on one Debian 13 guest (kernel 6.12): a plain
``kexec_load`` image, kdumpd's own reload, a ``kexec_file_load`` image, no crash kernel,
and ``kdumpd status`` beside the distribution's udev rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from kdumpd import journal_ids

from . import driver as d
from .guest import Vm
from .harness import (
    DISTRO_RULES,
    DROPIN_DIR,
    KEXEC_LOAD_DROPIN,
    STATUS_COUNTS,
    Guest,
    assert_accounted,
    assert_kdumpd_read,
    assert_one_reload_per_burst,
    cpu_add_burst,
    cpu_cycle_burst,
    cpu_cycle_calls,
    dimm_burst,
    polled_windows_s,
    read_metrics,
    restart_with,
    run_burst,
    said,
    settle_kdumpd,
    start_poller,
    stop_poller,
)


def test_1_plain_kexec_load_reloads_once_per_burst(trixie: Guest, scenario: Callable) -> None:
    result = scenario(
        "1. plain kexec_load (crash_hotplug=0): one reload per burst that needs one",
        trixie.release,
        "Crash kernel loaded with `kexec -p -c` (kexec_load); kdumpd load mode \"plain\" so "
        "every reload leaves crash_hotplug=0 again. First burst with the unit as shipped "
        "(kdumpd must refuse kexec_load there without unloading); then with the package's "
        f"{KEXEC_LOAD_DROPIN} installed as its README says. A DIMM and a hot-added CPU "
        "need a reload each; a CPU going offline and online again does not: the `-c` "
        "header has a note for every present CPU, and kdumpd reads it back (crash_hotplug=0 "
        "said otherwise until it did).",
    )
    vm = trixie.vm
    d.stop_kdumpd(vm)
    d.kexec_load(vm, trixie.release, ["-c"])
    restart_with(trixie, trixie.config(load="plain"))
    refused = run_burst(trixie, "DIMM hot-add 512 MiB, unit as shipped", dimm_burst(trixie))
    result.bursts.append(refused)

    vm.sh.run(f"mkdir -p {DROPIN_DIR} && cp {KEXEC_LOAD_DROPIN} {DROPIN_DIR}/ && "
              "systemctl daemon-reload")
    try:
        d.restart_kdumpd(vm)
        settle_kdumpd(vm)  # the start reloads the image the refused burst left stale
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
        if burst.burst.startswith("CPU1 offline+online"):
            assert burst.reloads == 0 and burst.failed == 0, said(burst)
            assert any("read back, is current" in r for r in burst.reasons), said(burst)
        else:
            assert_one_reload_per_burst(burst)
        assert burst.after.loaded == "1", said(burst)
        assert (burst.after.cpu, burst.after.memory) == ("0", "0")


def test_2_own_reload_enables_crash_hotplug(trixie: Guest, scenario: Callable) -> None:
    result = scenario(
        "2. kdumpd's own reload (load auto) leaves crash_hotplug=1", trixie.release,
        "Crash kernel loaded with `kexec -p -c`; kdumpd backend kexec, load mode \"auto\".",
    )
    vm = trixie.vm
    d.stop_kdumpd(vm)
    d.kexec_load(vm, trixie.release, ["-c"])
    # Metrics on (the node exporter's directory exists), exposure counted from zero.
    vm.sh.run("mkdir -p /var/lib/prometheus/node-exporter; rm -f /var/lib/kdumpd/state.json")
    restart_with(trixie, trixie.config(load="auto"))
    start_poller(vm)
    first = run_burst(trixie, "DIMM hot-add 512 MiB", dimm_burst(trixie))
    polled = polled_windows_s(stop_poller(vm))
    result.bursts.append(first)
    metrics = read_metrics(vm, lambda m: m.get("kdumpd_reloads_total", 0) >= 1)
    status = json.loads(vm.sh.run("kdumpd status --json", check=False).output)
    exposure = status["exposure"]
    result.notes.append(
        f"after the DIMM: the harness polled {len(polled)} window(s) without a crash kernel, "
        f"{sum(polled):.3f} s; kdumpd.prom: no_crash_kernel "
        f"{metrics.get('kdumpd_no_crash_kernel_seconds_total')} s, stale "
        f"{metrics.get('kdumpd_stale_seconds_total')} s, reloads "
        f"{metrics.get('kdumpd_reloads_total')}, last reload "
        f"{metrics.get('kdumpd_last_reload_duration_seconds')} s, loaded "
        f"{metrics.get('kdumpd_crash_kernel_loaded')}, keeps current memory "
        f"{metrics.get('kdumpd_kernel_keeps_current{subsystem=memory}')}; status: {exposure}")
    second = run_burst(trixie, "CPU1 offline+online", cpu_cycle_burst(trixie))
    result.bursts.append(second)
    assert_accounted(first)
    assert (first.before.cpu, first.before.memory) == ("0", "0")
    assert first.reloads == 1 and first.failed == 0, said(first)
    assert first.after.loaded == "1"
    assert (first.after.cpu, first.after.memory) == ("1", "1")
    # The metrics and status show the reload and its window, and agree with the poll:
    # kdumpd counts its whole reload (kexec's start included), never less than the window.
    assert len(polled) == 1, polled
    counted = metrics["kdumpd_no_crash_kernel_seconds_total"]
    assert polled[0] - 0.05 <= counted < polled[0] + 1.5, (polled, metrics)
    assert metrics["kdumpd_reloads_total"] == 1 == exposure["reloads"], (metrics, exposure)
    assert abs(exposure["no_crash_kernel_s"] - counted) < 0.01, (exposure, metrics)
    assert counted <= metrics["kdumpd_stale_seconds_total"], metrics  # stale from the event
    assert metrics["kdumpd_crash_kernel_loaded"] == 1, metrics
    assert metrics["kdumpd_kernel_keeps_current{subsystem=memory}"] == 1, metrics
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


# Scenario 20: the capacity warning of the measured rules (kdumpd/capacity.py), with the
# figures they predict. The dump kernel must not have acpi_no_memhotplug here: kdumpd's own image
# gets it (growth_safe), so this runs with growth_safe = false and an append without it.
TAKES_APPEND = d.CRASH_APPEND.replace(" acpi_no_memhotplug", "")
ACPI_MEMORY = ("python3 -c 'from pathlib import Path; from kdumpd.capacity_facts import "
               "acpi_memory_bytes; print(acpi_memory_bytes(Path(\"/\")))'")
MIB = 1 << 20


def capacity_now(vm: Vm) -> dict[str, object]:
    out = vm.sh.run("kdumpd status --json", timeout=120).output
    found: dict[str, object] = json.loads(out[out.index("{"):])["capacity"]
    return found


def test_20_the_capacity_warning_comes_where_the_measured_rule_puts_it(
    trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "20. capacity: the warning for a dump kernel that takes hot-added memory",
        trixie.release,
        "crashkernel=256M; a `-s` image whose command line lacks acpi_no_memhotplug, kdumpd "
        "with growth_safe = false (so it keeps that image). kdumpd's measured rules: such a "
        "dump kernel fails with any memory taken (vm-long: 3 and 6 GiB, makedumpfile filled "
        "the disk), and needs 208 MiB + 1/64 of the memory in ACPI memory slots not to "
        "die (Debian's died at 5.5 GiB). One DIMM up to exactly 3 GiB: kdumpd's journal warns "
        "once (MESSAGE_ID CAPACITY_SHORT), naming acpi_no_memhotplug, with 256 MiB asked "
        "(enough); 512 MiB more: `kdumpd status` asks 264 MiB (short), no second journal "
        "warning.",
    )
    vm = trixie.vm
    d.stop_kdumpd(vm)
    vm.sh.run(f"kexec -p -u; kexec -p -s /boot/vmlinuz-{trixie.release} "
              f"--initrd=/boot/initrd-small-{trixie.release}.img '--append={TAKES_APPEND}'",
              timeout=120)
    toml = trixie.config(load="auto", append=TAKES_APPEND).toml().replace(
        "verify_header = true", "verify_header = true\ngrowth_safe = false")
    vm.sh.write_file("/etc/kdumpd/kdumpd.toml", toml)
    d.restart_kdumpd(vm)
    taken = int(vm.sh.run(ACPI_MEMORY).output.strip())
    assert 0 <= taken < 3 << 30, f"{taken / MIB:.0f} MiB in ACPI slots already: no room"
    cursor = d.journal_cursor(vm)
    first = run_burst(trixie, f"DIMM of {((3 << 30) - taken) // MIB} MiB: 3 GiB in ACPI slots",
                      lambda: trixie.hotplug.add_dimm(((3 << 30) - taken) // MIB))
    at_3 = capacity_now(vm)
    short = run_burst(trixie, "DIMM hot-add 512 MiB: 3.5 GiB in ACPI slots", dimm_burst(trixie))
    at_3_5 = capacity_now(vm)
    warned = [e.get("MESSAGE") for e in d.journal_since(vm, cursor)
              if e.message_id == journal_ids.CAPACITY_SHORT]
    result.bursts += [first, short]
    result.notes += [f"before: {taken / MIB:.0f} MiB in ACPI memory slots",
                     f"at 3 GiB in ACPI slots: status capacity {at_3}",
                     f"at 3.5 GiB: status capacity {at_3_5}",
                     f"kdumpd's journal (CAPACITY_SHORT): {warned}"]
    assert at_3["recommended_bytes"] == 256 * MIB, at_3  # 208 + 3 GiB / 64: enough
    assert "takes the 3.0 GiB in ACPI memory slots" in str(at_3["warning"]), at_3
    assert at_3_5["recommended_bytes"] == 264 * MIB, at_3_5  # 208 + 3.5 GiB / 64: short
    assert "asks for 264 MiB: a dump may fail" in str(at_3_5["warning"]), at_3_5
    assert len(warned) == 1 and warned[0] == at_3["warning"], (warned, at_3)
    assert "add acpi_no_memhotplug to its command line" in warned[0], warned
    assert "until the disk was full, and failed" in warned[0], warned
    assert first.failed == short.failed == 0, (said(first), said(short))
    # The later modules' guests are fresh; this one's kdumpd goes back to its defaults.
    restart_with(trixie, trixie.config(load="auto"))
