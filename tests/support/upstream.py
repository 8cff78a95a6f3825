"""The distributions' own scripts (tests/fixtures/upstream) run with bash: what kdumpctl
(Fedora/RHEL) and load.sh (openSUSE/SLES) would build, for the conformance tests
(tests/core/test_conformance.py) and the VM scenario that compares a real load with them
(tests/vm/test_4_distribution_kdump.py, scenario 19)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
DISTRO = Path(__file__).resolve().parents[1] / "fixtures" / "distro"
BASH = shutil.which("bash")
GAWK = shutil.which("gawk")  # openSUSE's awk; load.sh uses gawk's match(s, re, array)

CPUINFO = ("processor\t: 0\napicid\t\t: 4\ninitial apicid\t: 4\n\n"
           "processor\t: 1\napicid\t\t: 6\ninitial apicid\t: 6\n\n")


def tree(tmp_path: Path, cmdline: str, sysconfig: str, cpuinfo: str = CPUINFO) -> Path:
    """A root with the scripts' inputs: /proc/cmdline, /proc/cpuinfo, /etc/sysconfig/kdump."""
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "etc/sysconfig").mkdir(parents=True)
    (root / "proc/cmdline").write_text(cmdline + "\n")
    (root / "proc/cpuinfo").write_text(cpuinfo)
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


def kdumpctl_script(sysconfig: str, *, bootinfo: bool = False) -> str:
    """bash for a directory holding kdump-lib.sh and kdump-lib-initramfs.sh: kdumpctl's
    default KDUMP_COMMANDLINE_REMOVE, then ``sysconfig`` sourced, then prepare_cmdline on
    the three settings (kdumpctl's load_kdump), printing the command line.

    ``bootinfo``: prepare_kdump_bootinfo first, as kdumpctl runs it before (it settles
    KDUMP_KERNELVER, which get_watchdog_drvs hands to ``modprobe --set-version``), and
    print KDUMP_KERNEL and KDUMP_INITRD on the two lines before the command line."""
    script = (
        "__SOURCED__=1; . ./kdump-lib.sh; "
        'is_aws_aarch64() { return 1; }; '  # lscpu's BIOS model: not an AWS Graviton
        'KDUMP_COMMANDLINE_REMOVE="hugepages hugepagesz slub_debug"; '
        f". {sysconfig}; ")
    if bootinfo:  # kdump-logger.sh is not sourced here: its functions as plain output
        script += ("ddebug() { :; }; dinfo() { :; }; dwarn() { echo \"$*\" >&2; }; "
                   "derror() { echo \"$*\" >&2; }; prepare_kdump_bootinfo || exit 1; "
                   'echo "$KDUMP_KERNEL"; echo "$KDUMP_INITRD"; ')
    return script + ('prepare_cmdline "$KDUMP_COMMANDLINE" "$KDUMP_COMMANDLINE_REMOVE" '
                     '"$KDUMP_COMMANDLINE_APPEND"')


def kdumpctl_cmdline(root: Path, tmp_path: Path) -> str:
    """kdumpctl's command line for the tree ``root`` (see :func:`kdumpctl_script`)."""
    work = tmp_path / "kdump-utils"
    work.mkdir()
    for name in ("kdump-lib.sh", "kdump-lib-initramfs.sh"):
        text = (UPSTREAM / "kdump-utils" / name).read_text()
        (work / name).write_text(pointed_at(text, root))
    return bash(kdumpctl_script(f"{root}/etc/sysconfig/kdump"), work)


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
