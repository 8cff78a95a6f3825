"""kdumpd's readers against the distributions' own scripts, on the same inputs.

The command line kdumpd builds for Fedora/RHEL (kdumpctl) and openSUSE/SLES (load.sh)
must be the one their scripts would build: the upstream functions (tests/fixtures/
upstream, versions and licences in its README) run under bash on a fixture tree, and
kdumpd's reader reads the same tree. Debian's kdump-config is checked where it really
loads, in the guest (tests/vm scenario 13).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdumpd.backends.distro.fedora import fedora
from kdumpd.backends.distro.suse import suse
from tests.support.upstream import (
    BASH,
    DISTRO,
    GAWK,
    kdumpctl_cmdline,
    load_sh_cmdline,
    tree,
)

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is needed to run the scripts")

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
