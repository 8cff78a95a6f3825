"""kdumpd's readers against the distributions' own scripts, on the same inputs.

The command line kdumpd builds for Fedora/RHEL (kdumpctl) and openSUSE/SLES (load.sh)
must be the one their scripts would build: the upstream functions (tests/fixtures/
upstream, versions and licences in its README) run under bash on a fixture tree, and
kdumpd's reader reads the same tree. Debian's kdump-config is checked where it really
loads, in the guest (tests/vm scenario 13).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpd.backends.distro.fedora import fedora
from kdumpd.backends.distro.suse import suse

UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
DISTRO = Path(__file__).resolve().parents[1] / "fixtures" / "distro"
BASH = shutil.which("bash")
GAWK = shutil.which("gawk")  # openSUSE's awk; load.sh uses gawk's match(s, re, array)

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is needed to run the scripts")

CPUINFO = ("processor\t: 0\napicid\t\t: 4\ninitial apicid\t: 4\n\n"
           "processor\t: 1\napicid\t\t: 6\ninitial apicid\t: 6\n\n")

# Command lines as the distributions boot them, and the edge cases of both parsers:
# quotes around a value with spaces, "foo=" (dropped by kdumpctl), repeated options,
# BOOT_IMAGE with a GRUB device, options the scripts always remove.
CMDLINES = {
    "rhel": "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.12.0-55.el10.x86_64 "
            "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M "
            "resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet",
    "opensuse": "BOOT_IMAGE=/boot/vmlinuz-6.12.0-1-default root=UUID=0f7e-11 splash=silent "
                "resume=/dev/vda3 mitigations=auto quiet security=selinux selinux=1 "
                "crashkernel=256M,high crashkernel=72M,low",
    "quoted": 'root=/dev/vda ro console=ttyS0,115200 "dyndbg=file foo.c +p" hugepages=64 '
              "hugepagesz=2M slub_debug=FZ panic_on_warn=1 foo= memhp_default_state="
              "online_movable memory_hotplug.online_policy=auto-movable panic=5 notsc",
    "hotplug": "root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable "
               "acpi_no_memhotplug unknown_nmi_panic cgroup_disable=memory mem=4G",
}


def tree(tmp_path: Path, cmdline: str, sysconfig: str) -> Path:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "etc/sysconfig").mkdir(parents=True)
    (root / "proc/cmdline").write_text(cmdline + "\n")
    (root / "proc/cpuinfo").write_text(CPUINFO)
    (root / "etc/sysconfig/kdump").write_text(sysconfig)
    return root


def bash(script: str, cwd: Path) -> str:
    assert BASH is not None
    run = subprocess.run([BASH, "-c", script], cwd=cwd, capture_output=True, text=True,
                         timeout=30, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def pointed_at(text: str, root: Path) -> str:
    """The script with its absolute /proc and /sys paths inside the fixture tree."""
    return re.sub(r"(?<![\w$}])/(proc|sys)/", f"{root}/\\1/", text)


def kdumpctl_cmdline(root: Path, tmp_path: Path) -> str:
    """kdumpctl: its default KDUMP_COMMANDLINE_REMOVE, then /etc/sysconfig/kdump, then
    prepare_cmdline on the three settings (kdumpctl, load_kdump)."""
    work = tmp_path / "kdump-utils"
    work.mkdir()
    for name in ("kdump-lib.sh", "kdump-lib-initramfs.sh"):
        text = (UPSTREAM / "kdump-utils" / name).read_text()
        (work / name).write_text(pointed_at(text, root))
    return bash(
        "__SOURCED__=1; . ./kdump-lib.sh; "
        'is_aws_aarch64() { return 1; }; '  # lscpu's BIOS model: not an AWS Graviton
        'KDUMP_COMMANDLINE_REMOVE="hugepages hugepagesz slub_debug"; '
        f". {root}/etc/sysconfig/kdump; "
        'prepare_cmdline "$KDUMP_COMMANDLINE" "$KDUMP_COMMANDLINE_REMOVE" '
        '"$KDUMP_COMMANDLINE_APPEND"', work)


def function(text: str, name: str) -> str:
    """One ``function name()`` of a script, up to its closing brace at column 0."""
    match = re.search(rf"^function {name}\(\).*?^}}\n", text, re.S | re.M)
    assert match, name
    return match.group(0)


def load_sh_cmdline(root: Path, tmp_path: Path, machine: str) -> str:
    """load.sh: kdump-read-config.sh reads the configuration (KDUMP_CONF), then
    build_kdump_commandline, as load_kdump_kexec calls it."""
    load_sh = (UPSTREAM / "opensuse-kdump" / "load.sh").read_text()
    functions = "".join(function(load_sh, name) for name in (
        "remove_from_commandline", "set_serial_console", "build_kdump_commandline"))
    functions = pointed_at(functions, root).replace("$(uname -i)", machine)
    (tmp_path / "functions.sh").write_text(functions)
    return bash(
        f"awk() {{ {GAWK} \"$@\"; }}; "  # whatever awk Debian points at
        f"KDUMP_CONF={root}/etc/sysconfig/kdump; "
        f". {UPSTREAM}/opensuse-kdump/kdump-read-config.sh; DEBUG=false; "
        f". {tmp_path}/functions.sh; build_kdump_commandline /var/lib/kdump/kernel",
        tmp_path)


FEDORA_SETTINGS = {
    "as shipped": "",
    "own remove and append": 'KDUMP_COMMANDLINE_REMOVE="quiet rhgb console"\n'
                             'KDUMP_COMMANDLINE_APPEND="irqpoll nr_cpus=1 \'a b\'"\n',
    "remove not set": "",  # the file's KDUMP_COMMANDLINE_REMOVE line taken out
    "own command line": 'KDUMP_COMMANDLINE="root=/dev/sda1 console=tty0 quiet x=\\"1 2\\""\n',
}


@pytest.mark.parametrize("settings", sorted(FEDORA_SETTINGS))
@pytest.mark.parametrize("cmdline", sorted(CMDLINES))
def test_fedora_command_line_is_kdumpctls(tmp_path: Path, cmdline: str, settings: str) -> None:
    sysconfig = (DISTRO / "fedora/sysconfig-kdump").read_text() + FEDORA_SETTINGS[settings]
    if settings == "remove not set":  # kdumpctl's own default applies
        sysconfig = re.sub(r"^KDUMP_COMMANDLINE_REMOVE=.*\n", "", sysconfig, flags=re.M)
    root = tree(tmp_path, CMDLINES[cmdline], sysconfig)
    theirs = kdumpctl_cmdline(root, tmp_path)
    ours = fedora(root, "6.12.0-55.el10.x86_64", "x86_64").append
    assert ours == theirs
    assert "disable_cpu_apicid=4" in theirs  # the fixture's CPU 0 was read by both


SUSE_SETTINGS = {
    "as shipped": "",
    "cpus and append": 'KDUMP_CPUS=4\nKDUMP_COMMANDLINE_APPEND="console=ttyS0 panic=3"\n',
    "no nr_cpus": "KDUMP_CPUS=0\n",
    "not a number": 'KDUMP_CPUS="many"\n',
    "own command line": 'KDUMP_COMMANDLINE="root=/dev/sda1 quiet"\n',
}


@pytest.mark.skipif(GAWK is None, reason="load.sh needs gawk (make deps installs it)")
@pytest.mark.parametrize("machine", ["x86_64", "s390x", "aarch64"])
@pytest.mark.parametrize("settings", sorted(SUSE_SETTINGS))
@pytest.mark.parametrize("cmdline", sorted(CMDLINES))
def test_suse_command_line_is_load_shs(tmp_path: Path, cmdline: str, settings: str,
                                       machine: str) -> None:
    sysconfig = (DISTRO / "suse/sysconfig-kdump").read_text() + SUSE_SETTINGS[settings]
    root = tree(tmp_path, CMDLINES[cmdline], sysconfig)
    theirs = " ".join(load_sh_cmdline(root, tmp_path, machine).split())
    ours = suse(root, "6.12.0-1-default", machine).append
    assert ours == theirs


def test_the_conformance_harness_can_tell_a_difference(tmp_path: Path) -> None:
    # The control: the scripts' answer changes with the input, so equal answers above
    # are not two empty strings agreeing.
    sysconfig = (DISTRO / "fedora/sysconfig-kdump").read_text()
    plain = tree(tmp_path / "a", CMDLINES["rhel"], sysconfig)
    other = tree(tmp_path / "b", CMDLINES["quoted"], sysconfig)
    (tmp_path / "a" / "w").mkdir()
    (tmp_path / "b" / "w").mkdir()
    first = kdumpctl_cmdline(plain, tmp_path / "a" / "w")
    second = kdumpctl_cmdline(other, tmp_path / "b" / "w")
    assert first != second and "rhgb" in first and "dyndbg" in second
