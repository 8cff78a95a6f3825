"""The administrator's kexec arguments: read from each distribution's file, kept, dropped
or followed as a load-mode preference by kdumpd's own load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kdumpd.backends import distro, kexec_args
from kdumpd.backends.distro import Origin, Setting
from kdumpd.backends.kexec import KexecBackend, KexecImage
from kdumpd.backends.kexec_args import KexecArgs
from kdumpd.sysfs import Sysfs
from tests.core.test_backends import FakeKexec, sandbox_proc
from tests.core.test_distro import FIXTURES, RELEASE, debian_root, make_root


@pytest.mark.parametrize(("value", "expected"), [
    ("", KexecArgs()),
    ("-c", KexecArgs("plain")),
    ("--kexec-syscall --hotplug", KexecArgs("hotplug")),
    ("--hotplug -c", KexecArgs("hotplug")),
    ("-c -s", KexecArgs("file")),
    ("-s -a", KexecArgs("auto")),
    ("--elf64-core-headers -d", KexecArgs("", ("--elf64-core-headers", "-d"))),
    ("'--dtb=/boot/my dtb' -c", KexecArgs("plain", ("--dtb=/boot/my dtb",))),
    ("-p --initrd /x --append=foo --mem-max=0x1000",
     KexecArgs("", ("--mem-max=0x1000",),
               ("-p (kdumpd's own)", "--initrd (kdumpd's own)", "--append=foo (kdumpd's own)"))),
    ("-u -l -e --elf32-core-headers",
     KexecArgs("", ("--elf32-core-headers",), ("-u (not a crash kernel load)",
                                               "-l (not a crash kernel load)",
                                               "-e (not a crash kernel load)"))),
])
def test_kexec_args_are_split_as_the_shell_does_and_sorted(value: str,
                                                           expected: KexecArgs) -> None:
    assert kexec_args.parse(value) == expected


def test_an_unmatched_quote_is_a_one_line_distro_error(tmp_path: Path) -> None:
    root = debian_root(tmp_path, "KDUMP_KEXEC_ARGS=\"-c '--dtb=x\"\n")
    with pytest.raises(distro.DistroError, match=r"KDUMP_KEXEC_ARGS\): No closing quotation"):
        distro.crash_image(root, RELEASE, "x86_64")


def test_each_distribution_names_its_own_setting(tmp_path: Path) -> None:
    debian = distro.crash_image(
        debian_root(tmp_path / "d", 'KDUMP_KEXEC_ARGS="-c --elf64-core-headers"\n'),
        RELEASE, "x86_64")
    assert debian.kexec_args == KexecArgs("plain", ("--elf64-core-headers",))
    assert debian.kexec_args_from == Origin.setting("/etc/default/kdump-tools",
                                                    "KDUMP_KEXEC_ARGS")

    fedora_root = make_root(tmp_path / "f", {
        "etc/sysconfig/kdump": (FIXTURES / "fedora/sysconfig-kdump").read_text(),
        "usr/bin/kdumpctl": "", f"boot/vmlinuz-{RELEASE}": "k"})
    fedora = distro.crash_image(fedora_root, RELEASE, "x86_64")
    assert fedora.kexec_args == KexecArgs("file")  # the shipped KEXEC_ARGS="-s"
    assert fedora.kexec_args_from == Origin.setting("/etc/sysconfig/kdump", "KEXEC_ARGS")

    suse_config = (FIXTURES / "suse/sysconfig-kdump").read_text().replace(
        'KEXEC_OPTIONS=""', 'KEXEC_OPTIONS="-c --noefi"')
    suse_root = make_root(tmp_path / "s", {"etc/sysconfig/kdump": suse_config,
                                           "usr/lib/kdump/load.sh": ""})
    suse = distro.crash_image(suse_root, RELEASE, "x86_64")
    assert suse.kexec_args == KexecArgs("auto", ("--noefi",))  # load.sh's own -a comes last
    assert suse.kexec_args_from == Origin.tool("load.sh", Setting("/etc/sysconfig/kdump",
                                                                  "KEXEC_OPTIONS"))
    assert suse.kernel_from == Origin("load.sh") and suse.initrd_from == Origin("load.sh")


def image_with(image: KexecImage, value: str) -> KexecImage:
    return dataclasses.replace(image, kexec_args=kexec_args.parse(value),
                               kexec_args_from=Origin.setting("/etc/default/kdump-tools",
                                                              "KDUMP_KEXEC_ARGS"))


@pytest.fixture
def image(tmp_path: Path) -> KexecImage:
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    return KexecImage(tmp_path / "vmlinuz", None, "root=/dev/vda1 irqpoll")


def test_dash_c_loads_with_hotplug_where_kexec_load_works_and_keeps_the_rest(
    root: Path, image: KexecImage
) -> None:
    asked = image_with(image, "-c --elf64-core-headers -u")
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    backend = KexecBackend(asked, "auto", sysfs, runner, 5)
    modes, note = backend.choice(asked)
    assert modes == ["hotplug", "plain"]
    assert note.endswith("asks for -c (kexec_load): loading with -c --hotplug, so the kernel "
                         "keeps it current")
    backend.reload()
    assert runner.calls == [["kexec", "-c", "-p", "--hotplug", "--elf64-core-headers",
                             str(image.kernel), "--append=root=/dev/vda1 irqpoll"]]
    assert backend.last_command == ("kexec -c -p --hotplug --elf64-core-headers "
                                    f"{image.kernel} '--append=root=/dev/vda1 irqpoll'")


def test_dash_c_where_kexec_load_cannot_work_loads_with_dash_s_and_says_so(
    root: Path, image: KexecImage
) -> None:
    sandbox_proc(root)
    asked = image_with(image, "-c")
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    backend = KexecBackend(asked, "auto", sysfs, runner, 5)
    modes, note = backend.choice(asked)
    assert modes == ["file"]
    assert "cannot work here (/proc/kcore cannot be opened" in note
    backend.reload()
    assert runner.calls[0][:3] == ["kexec", "-s", "-p"]


def test_dash_s_is_followed_and_a_configured_mode_wins_over_the_arguments(
    root: Path, image: KexecImage
) -> None:
    sysfs = Sysfs(root)
    asked = image_with(image, "-s")
    assert KexecBackend(asked, "auto", sysfs, FakeKexec(sysfs), 5).choice(asked)[0] == ["file"]
    assert KexecBackend(asked, "plain", sysfs, FakeKexec(sysfs), 5).choice(asked) == (
        ["plain"], "")
    none = image_with(image, "--elf64-core-headers")
    assert KexecBackend(none, "auto", sysfs, FakeKexec(sysfs), 5).choice(none) == (
        ["hotplug", "file", "plain"], "")


def test_the_status_says_what_is_kept_followed_and_dropped(image: KexecImage) -> None:
    from kdumpd import image_report

    asked = image_with(image, "-c --noefi -l")
    typed = image_report.report(asked, mode="auto", missing=[], kexec_note="N", warning=None)
    assert typed["kexec_args"] == {"kept": ["--noefi"], "dropped": [
        "-l (not a crash kernel load)"], "mode": "plain",
        "from": {"source": "setting", "file": "/etc/default/kdump-tools",
                 "key": "KDUMP_KEXEC_ARGS", "inputs": []}, "note": "N"}
    assert ("  kexec args: --noefi (/etc/default/kdump-tools (KDUMP_KEXEC_ARGS)); N; "
            "not passed: -l (not a crash kernel load)") in image_report.lines(typed)
