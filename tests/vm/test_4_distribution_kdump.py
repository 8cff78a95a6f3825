"""Debian's own kdump-tools under kdumpd: its configuration, the Ansible role on a real
host, a reboot with kdump-tools loading first, and its dump path saving a complete dump;
then Fedora's and openSUSE's configuration read under the shipped unit (scenario 19).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdumpd.loaded_header import without_elfcorehdr
from tests.support import upstream

from . import driver as d
from . import dumpcheck as dc
from .guest import Vm
from .harness import (
    DUMP_SHELL_DROPIN,
    HANDOVER,
    NO_REBOOT,
    Guest,
    converge,
    cpu_add_burst,
    dimm_burst,
    fresh_state,
    header_agrees,
    in_the_units_sandbox,
    kdump_config_backend_burst,
    kexec_cmd_written,
    kexec_parts,
    panic,
    run_burst,
    said,
    settle_kdumpd,
    stop_watch,
    verify_loaded,
    watch_files,
)
from .results import ScenarioResult

RUNTIME_RULES = "/run/udev/rules.d/50-kdump-tools.rules"  # kdumpd's [rule] state "runtime"

# Scenario 14's growth: more than the 5.5 GiB that killed Debian's own dump kernel
# (crashkernel=256M, its default command line) in the runs; maxmem is 10G.
GROWTH_DIMMS = 3
GROWTH_DIMM_MIB = 2048


def growth_safe(append: str) -> str:
    """kdump-tools' command line as kdumpd's growth-safe load must pass it."""
    words = [w for w in append.split()
             if not w.startswith(("memhp_default_state", "memory_hotplug."))]
    return " ".join(words + ([] if "acpi_no_memhotplug" in words else ["acpi_no_memhotplug"]))


# The warning kdumpd logs once per replacement of an image whose dump kernel would not
# survive growth (the reason also appears inside its "reloading" and "reloaded" lines).
REPLACED = "the loaded dump kernel's command line lacks"


def settled_replacements(vm: Vm) -> str:
    """Once kdumpd is idle: how many times it replaced a loaded image for growth safety."""
    settle_kdumpd(vm)
    return vm.sh.run("journalctl -u kdumpd -o cat --no-pager | "
                     f"grep -c \"^{REPLACED}\" || true").output.strip()


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
    # kdump-tools' own image lacks acpi_no_memhotplug: kdumpd reads its command line back
    # and replaces it once, when quiet, with its growth-safe image (issue 29, point 4).
    replaced = settled_replacements(vm)
    status = vm.sh.run("kdumpd status").output
    result.notes.append(f"(1) at kdumpd's start, replacements of kdump-tools' image for "
                        f"growth safety: {replaced}; kdumpd status: " + " / ".join(
        line.strip() for line in status.splitlines() if line.strip().startswith(
            ("backend", "family", "kernel:", "initrd:", "append:", "added:", "removed:",
             "warning:", "loaded header:", "loaded command line:"))))
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
    # kdump-tools' own load, and kdumpd's one replacement of it at start.
    assert (own.loaded, own.cpu, own.memory, replaced) == ("1", "1", "1", "1"), (own, replaced)
    assert first.reloads == 0 and first.failed == 0, said(first)
    assert (second.before.cpu, second.before.memory) == ("0", "0"), said(second)
    assert second.reloads == 1 and second.failed == 0, said(second)
    assert second.after.loaded == "1" and (second.after.cpu, second.after.memory) == ("1", "1")
    assert third.reloads == 0 and third.failed == 0, said(third)
    theirs = kexec_parts(shlex.split(distro_cmd))
    mine = kexec_parts(shlex.split(ours))
    # kdumpd loads kdump-tools' image as kdump-config does, but growth-safe (x86 with ACPI
    # memory slots, as here): acpi_no_memhotplug added, the first kernel's memory-hotplug
    # options taken out, and nothing else changed.
    assert mine == {**theirs, "append": growth_safe(theirs["append"])}, (mine, theirs)
    assert "added: acpi_no_memhotplug (x86 with ACPI memory slots" in status, status
    assert before_calls == after_calls, "the distribution's rule reloaded beside kdumpd"
    # No surprise on install: the override lives in /run while kdumpd runs, never in /etc.
    layers = vm.sh.run(f"grep -c 'BEGIN kdumpd managed block' {RUNTIME_RULES}; "
                       "test ! -e /etc/udev/rules.d/50-kdump-tools.rules && echo no-etc",
                       check=False).output.split()
    # A restart (or a package upgrade's) keeps the override and the hand-over in place:
    # no event may reach kdump-tools' rule, which cannot reload under udevd here.
    watch_files(vm, HANDOVER, RUNTIME_RULES)
    d.restart_kdumpd(vm)
    kept = stop_watch(vm)
    d.stop_kdumpd(vm)
    gone = vm.sh.run(f"test ! -e {RUNTIME_RULES} && test ! -e {HANDOVER} && echo gone",
                     check=False).output.strip()
    result.notes.append(f"rules while running: /run override {layers}; through a restart: "
                        f"override and hand-over present in {kept.get('1', 0)} samples, "
                        f"missing in {kept.get('0', 0)}; after stop: {gone}")
    assert kept.get("1", 0) > 0 and kept.get("0", 0) == 0, kept
    assert layers == ["1", "no-etc"], layers
    assert gone == "gone", "the runtime override outlived kdumpd"

    kdump_config_backend_burst(guest, result)
    d.restart_kdumpd(vm)


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
    # The collection's fleet report against this host: its row, and the gate passes.
    # (Root already, and no sudo in the guest: the report's become is for ssh fleets.)
    report = vm.sh.run("ANSIBLE_COLLECTIONS_PATH=/root/collections ANSIBLE_NOCOLOR=1 "
                       "ansible-playbook -i localhost, -c local -e ansible_become=false "
                       "-e ansible_python_interpreter=/usr/bin/python3 "
                       "kdumpd.kdumpd.fleet_report", timeout=600, check=False)
    # One aligned row per host under a header line (the fleet_report filter plugin),
    # each a JSON string in ansible's debug output.
    header = re.search(r'"(HOST\s+STATE\s+LOADED\s.*?)",?\n', report.output)
    found = re.search(r'"(localhost\s+\S.*?)",?\n', report.output)
    row = found.group(1).replace('\\"', '"') if found else ""
    result.notes.append(f"fleet report (kdumpd.kdumpd.fleet_report): {' '.join(row.split())}"
                        if row else "fleet report: (no row)")
    assert report.ok, report.output[-3000:]
    assert header is not None and row, report.output[-3000:]

    def cell(name: str) -> str:  # the table is aligned: a value starts under its heading
        return row[header.group(1).index(name):].split()[0]

    assert (cell("STATE"), cell("LOADED"), cell("OWED")) == ("ok", "yes", "no"), row


def test_15_after_a_reboot_kdumpd_starts_once_kdump_tools_has_loaded(
    rebooted_kdump_tools_trixie: Guest, scenario: Callable
) -> None:
    result = scenario(
        "15. a reboot with Debian's kdump-tools and kdumpd both enabled", "trixie",
        "A guest whose disk survives a power-off (a qcow2 overlay of the image instead of "
        "snapshot=on): kdumpd's .deb and Debian's real kdump-tools installed and enabled, "
        "kdumpd's default configuration, then `systemctl poweroff` and a second boot. On "
        "that boot kdump-tools.service must have loaded the crash kernel before kdumpd "
        "started (the unit's After=), kdumpd must find it loaded and reload nothing but its "
        "one replacement of kdump-tools' image for growth safety, and its runtime rules "
        "override must be in /run, none in /etc.",
    )
    vm = rebooted_kdump_tools_trixie.vm
    vm.sh.run("systemctl is-system-running --wait", timeout=300, check=False)
    # kdumpd replaces kdump-tools' image once at its start (growth safety): read the crash
    # state once it is idle, not inside that load.
    settle_kdumpd(vm)
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
    # kdump-tools' image lacks acpi_no_memhotplug: one replacement, nothing more.
    replaced = sum(line.startswith(REPLACED) for line in journal.splitlines())
    assert loads == replaced <= 1, journal[-2000:]
    assert "50-kdump-tools.rules" in vm.sh.run("ls /run/udev/rules.d/").output
    assert not vm.sh.run("test -e /etc/udev/rules.d/50-kdump-tools.rules",
                         check=False).ok


def test_14_debian_kdump_tools_saves_a_complete_dump_after_kdumpds_reload(
    rebooted_kdump_tools_trixie: Guest, scenario: Callable
) -> None:
    guest = rebooted_kdump_tools_trixie  # scenario 15's: kdump-tools installed, rebooted
    result = scenario(
        "14. proof by dump through Debian's own dump path (kdump-tools-dump.service)",
        guest.release,
        "Scenario 15's guest after its reboot (kdump-tools installed before it). "
        "Debian's real kdump-tools loading with `KDUMP_KEXEC_ARGS=\"-c\"` (crash_hotplug=0), "
        "its default command line (which inherits memhp_default_state=online_movable and "
        "lacks acpi_no_memhotplug) and dump format (`makedumpfile -c -d 31`, "
        "kdump-compressed); kdumpd with its default configuration, whose growth-safe load "
        f"adds acpi_no_memhotplug. {GROWTH_DIMMS} DIMMs of {GROWTH_DIMM_MIB} MiB "
        f"({GROWTH_DIMMS * GROWTH_DIMM_MIB / 1024:.1f} GiB; 5.5 GiB killed Debian's own "
        "dump kernel) then a CPU hot-add (kdumpd reloads kdump-tools' image), "
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
    # Debian's default command line: without acpi_no_memhotplug the dump kernel (which
    # inherits memhp_default_state=online_movable from this guest's command line) onlines
    # hot-added DIMMs as its own memory: makedumpfile then failed on that range ("ioremap
    # on RAM at 0x100000000"), and 5.5 GiB of them killed it ("System is deadlocked on
    # memory"). kdumpd's growth-safe load must prevent both by itself.
    vm.sh.run("printf '%s\\n' 'KDUMP_KEXEC_ARGS=\"-c\"' >> /etc/default/kdump-tools")
    vm.sh.run(f"printf '{NO_REBOOT}' >> /etc/default/kdump-tools")
    vm.sh.run(f"mkdir -p {os.path.dirname(DUMP_SHELL_DROPIN)} && printf "
              "'[Unit]\\nWants=vmshell.service\\n' > " + DUMP_SHELL_DROPIN +
              " && systemctl daemon-reload")
    vm.sh.run("kdump-config reload", timeout=300)
    fresh_state(vm)
    d.restart_kdumpd(vm)
    result.bursts.append(run_burst(
        guest, f"{GROWTH_DIMMS} DIMMs of {GROWTH_DIMM_MIB} MiB hot-added",
        lambda: [guest.hotplug.add_dimm(GROWTH_DIMM_MIB) for _ in range(GROWTH_DIMMS)]))
    result.bursts.append(run_burst(guest, "CPU hot-add (QMP) + online", cpu_add_burst(guest)))
    # kdumpd replaced kdump-tools' image at its start (it lacks acpi_no_memhotplug) or
    # reloaded it in the first burst (crash_hotplug 0): its last load is growth-safe.
    loaded = vm.sh.run("journalctl -u kdumpd -o cat | grep 'loading the crash kernel: ' | "
                       "tail -1").output
    result.notes.append(f"kdumpd's last load: {loaded.strip()}")
    assert "acpi_no_memhotplug" in loaded and "memhp_default_state" not in loaded, loaded

    before, up_s, header = panic(vm, "/root/kdump-reader.py", dc.KDUMP_READER)
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
                        f"{saved_s:.0f} s. Saved dump: " + dc.summary(before, dump, verdict)
                        # makedumpfile's bitmap merges adjacent ranges: verdicts only.
                        + ". " + header_agrees(header, {**dump, "ptload": False}, verdict))
    assert verdict.ok, verdict.describe()


# Scenario 19: the Fedora and openSUSE readers in the Debian guest, under the shipped unit.
KDUMPD_KEXEC_TOML = ('[events]\nquiet_ms = 250\nmax_delay_ms = 3000\n\n'
                     '[reload]\nbackend = "kexec"\n\n[rule]\nstate = "ignore"\n')
STUB = "#!/bin/sh\n# scenario 19: marks the family for kdumpd; never run\nexit 1\n"


def as_fedora(vm: Vm, release: str) -> None:
    """kdump-utils' files: /etc/sysconfig/kdump as shipped, kdumpctl (a stub), an initramfs
    in /boot and the kdump initrd kdumpctl would have built beside it (the small initrd)."""
    small = f"/boot/initrd-small-{release}.img"
    vm.sh.run("mkdir -p /etc/sysconfig && "
              "cp /mnt/payload/distro/fedora/sysconfig-kdump /etc/sysconfig/kdump && "
              f"cp {small} /boot/initramfs-{release}.img && "
              f"cp {small} /boot/initramfs-{release}kdump.img")
    vm.sh.write_file("/usr/bin/kdumpctl", STUB, mode="0755")


def as_opensuse(vm: Vm, release: str) -> None:
    """openSUSE's kdump files: /etc/sysconfig/kdump as shipped, load.sh (a stub), and the
    kernel and initrd its kdump service keeps in /var/lib/kdump; Fedora's taken away."""
    vm.sh.run(f"rm -f /usr/bin/kdumpctl /boot/initramfs-{release}.img "
              f"/boot/initramfs-{release}kdump.img && "
              "cp /mnt/payload/distro/suse/sysconfig-kdump /etc/sysconfig/kdump && "
              "mkdir -p /usr/lib/kdump /var/lib/kdump && "
              f"cp /boot/vmlinuz-{release} /var/lib/kdump/kernel && "
              f"cp /boot/initrd-small-{release}.img /var/lib/kdump/initrd")
    vm.sh.write_file("/usr/lib/kdump/load.sh", STUB, mode="0755")


def kdumpctl_in_the_guest(vm: Vm) -> tuple[str, str, str]:
    """kdumpctl's own functions run in the guest on its real /proc, /sys and modules
    (prepare_kdump_bootinfo, then prepare_cmdline; `modprobe -R` resolves the watchdog):
    kernel, initrd and command line."""
    script = upstream.kdumpctl_script("/etc/sysconfig/kdump", bootinfo=True)
    out = vm.sh.run(f"cd /mnt/payload/upstream/kdump-utils && bash -c {shlex.quote(script)}"
                    ).output.strip().splitlines()
    kernel, initrd, cmdline = out[-3:]
    return kernel, initrd, cmdline


def load_sh_on_the_guests_inputs(vm: Vm, tmp_path: Path) -> str:
    """load.sh's build_kdump_commandline (it needs gawk, which the guest lacks) on the host,
    on the guest's /proc/cmdline and /proc/cpuinfo and the shipped /etc/sysconfig/kdump."""
    cmdline = vm.sh.run("cat /proc/cmdline").output.strip()
    cpuinfo = vm.sh.run("cat /proc/cpuinfo").output
    sysconfig = (upstream.DISTRO / "suse" / "sysconfig-kdump").read_text()
    root = upstream.tree(tmp_path, cmdline, sysconfig, cpuinfo)
    return " ".join(upstream.load_sh_cmdline(root, tmp_path, "x86_64").split())


def status_json(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text[text.index("{"):])
    return parsed


def family_round(guest: Guest, family: str, expected: Callable[[], tuple[str, str, str]],
                 result: ScenarioResult) -> None:
    """One family: kdumpd (kexec backend, shipped unit) started over a hand-loaded `-c`
    image; status from a root shell and inside the unit's sandbox; a DIMM hot-add that
    kdumpd reloads for; the command line read back against the distribution's script's."""
    vm = guest.vm
    d.kexec_load(vm, guest.release, ["-c"])
    fresh_state(vm)
    vm.sh.write_file("/etc/kdumpd/kdumpd.toml", KDUMPD_KEXEC_TOML)
    d.restart_kdumpd(vm)
    shell = status_json(vm.sh.run("kdumpd status --json").output)
    unit = status_json(in_the_units_sandbox(vm, "status --json"))
    burst = run_burst(guest, f"{family}: DIMM hot-add over a -c image", dimm_burst(guest))
    result.bursts.append(burst)
    header = verify_loaded(vm)
    load = vm.sh.run("journalctl -u kdumpd -o cat | grep 'loading the crash kernel: ' | "
                     "tail -1").output.strip().split("loading the crash kernel: ", 1)[-1]
    kernel, initrd, theirs = expected()
    loaded = without_elfcorehdr(str(header.get("loaded_cmdline") or ""))
    image = unit["image"]
    result.notes += [
        f"{family}: `kdumpd status --json` inside the unit's sandbox: family "
        f"{image['family']}, kernel {image['kernel']}, initrd {image['initrd']}, "
        f"not_derived {image['not_derived']}, added {image['added']}, removed "
        f"{image['removed']}, error {image['error']}; the same image from a root shell: "
        f"{shell['image'] == image}",
        f"{family}: the distribution's script builds: {theirs}",
        f"{family}: kdumpd loaded (in the unit): {load}",
        f"{family}: `kdumpd verify --json` after the reload: {header['verdict']} "
        f"({header['why']}); loaded_cmdline without elfcorehdr=: {loaded}",
    ]
    assert image["error"] is None and image["family"] == family, image
    assert shell["image"] == image, (shell["image"], image)
    assert image["not_derived"] == [], image
    assert (image["kernel"], image["initrd"], image["missing"]) == (kernel, initrd, []), image
    assert burst.before.memory == "0" and burst.reloads == 1 and burst.failed == 0, said(burst)
    assert burst.after.loaded == "1", said(burst)
    assert header["verdict"] == "current", header
    # kdumpd's growth safety (x86 with ACPI memory slots) on top of the script's line, and
    # nothing else: the script's line itself, the watchdog's part included.
    assert image["append"] == growth_safe(theirs) == loaded, (image["append"], theirs, loaded)
    assert f"{kernel} " in load and f"--initrd={initrd}" in load, load
    if family == "fedora":  # the watchdog's part: the one with a device, derived in the unit
        assert "iTCO_wdt.pretimeout=0" in theirs and "i6300esb" not in theirs, theirs


def test_19_fedora_and_opensuse_readers_under_the_shipped_unit(
    watchdog_trixie: Guest, scenario: Callable, tmp_path: Path
) -> None:
    guest = watchdog_trixie
    result = scenario(
        "19. Fedora's and openSUSE's readers under the shipped unit, with a watchdog",
        guest.release,
        "A fresh guest on QEMU's q35 machine with two hardware watchdogs: ICH9's TCO "
        "(iTCO_wdt, a device with a modalias) and an i6300esb (its 6.12 driver registers "
        "the watchdog without a device, so kdumpctl names no driver for it); the .deb's "
        "unit without drop-ins, "
        "kdumpd's own kexec backend. In turn the real shipped /etc/sysconfig/kdump of "
        "Fedora (kdump-utils; kdumpctl a stub, the kdump initrd in /boot) and of openSUSE "
        "(kdump; load.sh a stub, kernel and initrd in /var/lib/kdump). For each: a `-c` "
        "image loaded by hand, kdumpd started; `kdumpd status --json` from a root shell and "
        "inside the unit's sandbox (a one-shot service with the installed unit's [Service] "
        "lines: ProtectKernelModules=yes hides /usr/lib/modules) must name the family's "
        "image with nothing left underived; a DIMM hot-add must be reloaded once; the "
        "command line read back (`kdumpd verify`, without elfcorehdr=) must be the one the "
        "distribution's script builds on this machine (kdumpctl's prepare_kdump_bootinfo "
        "and prepare_cmdline run in the guest, on its /proc, /sys and modules; load.sh's "
        "build_kdump_commandline on the guest's /proc/cmdline and /proc/cpuinfo on the host, "
        "for gawk) with kdumpd's growth-safe change and nothing else.",
    )
    vm = guest.vm
    started = time.monotonic()
    # The shell comes up before udev's coldplug has loaded every driver (i6300esb bound
    # 47 s into the first run's boot): wait for the boot to end, then for udev.
    vm.sh.run("systemctl is-system-running --wait; udevadm settle -t 60", timeout=300,
              check=False)
    # What kdumpd and kdumpctl can see of each watchdog: the device's modalias and the
    # module sysfs names as its driver (i6300esb's watchdog has no device: "-").
    watchdogs = vm.sh.run(
        "for w in /sys/class/watchdog/*; do m=$w/device/driver/module; "
        'echo "${w##*/} $(cat $w/device/modalias 2>/dev/null || echo -) '
        '$( [ -e $m ] && basename "$(readlink $m)" || echo -)"; done; '
        "echo modules loaded: $(lsmod | grep -o -E '^(i6300esb|iTCO_wdt) ')").output.split("\n")
    module = sorted(line.split()[2] for line in watchdogs if line.startswith("watchdog"))
    dropins = vm.sh.run("systemctl show -P DropInPaths kdumpd").output.strip()
    result.notes.append("watchdogs (name, modalias, module of the device's driver): "
                        + " / ".join(w for w in watchdogs if w)
                        + f"; kdumpd's drop-ins: {dropins or 'none'}")
    assert module == ["-", "iTCO_wdt"], watchdogs
    loaded = next((w for w in watchdogs if w.startswith("modules loaded:")), "")
    assert "i6300esb" in loaded.split(), watchdogs  # bound, its watchdog without a device
    assert not dropins, dropins
    d.stop_kdumpd(vm)
    as_fedora(vm, guest.release)
    family_round(guest, "fedora", lambda: kdumpctl_in_the_guest(vm), result)
    d.stop_kdumpd(vm)
    as_opensuse(vm, guest.release)
    family_round(guest, "suse", lambda: ("/var/lib/kdump/kernel", "/var/lib/kdump/initrd",
                                         load_sh_on_the_guests_inputs(vm, tmp_path)), result)
    result.notes.append(f"both families after the boot took {time.monotonic() - started:.0f} s")
