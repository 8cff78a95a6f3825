"""The image each distribution loads, read from its real kdump configuration files
(tests/fixtures/distro) under a fake root."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from kdumpd import image_report
from kdumpd.backends import distro
from kdumpd.backends.distro import DistroError, Origin, Setting

FIXTURES = Path(__file__).parents[1] / "fixtures" / "distro"
RELEASE = "6.12.57+deb13-amd64"
CMDLINE = ("BOOT_IMAGE=/boot/vmlinuz-6.12.57+deb13-amd64 root=UUID=1234 ro quiet "
           "crashkernel=384M-:256M hugepages=16 hugepagesz=2M memhp_default_state=online_movable "
           "rd.lvm.lv=vg/root cma=64M")
CPUINFO = ("processor\t: 0\napicid\t\t: 2\ninitial apicid\t: 2\n\n"
           "processor\t: 1\napicid\t\t: 0\ninitial apicid\t: 0\n")


def make_root(tmp_path: Path, files: dict[str, str | None]) -> Path:
    root = tmp_path / "root"
    base = {"proc/cmdline": CMDLINE + "\n", "proc/cpuinfo": CPUINFO}
    for relative, text in {**base, **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text is not None else "")
    return root


def debian_root(tmp_path: Path, extra: str = "", **files: str) -> Path:
    defaults = (FIXTURES / "debian/kdump-tools").read_text() + extra
    return make_root(tmp_path, {"etc/default/kdump-tools": defaults,
                                "var/lib/kdump/vmlinuz": "k", "var/lib/kdump/initrd.img": "i",
                                **files})


def test_debian_kdump_tools_defaults_give_its_kdump_initrd_and_command_line(
    tmp_path: Path
) -> None:
    image = distro.crash_image(debian_root(tmp_path), RELEASE, "x86_64")
    assert image.family == "debian"
    assert image.kernel == Path("/var/lib/kdump/vmlinuz")
    assert image.initrd == Path("/var/lib/kdump/initrd.img")
    assert image.initrd_required
    # kdump-config: /proc/cmdline without crashkernel=, hugepages=, hugepagesz=, abm=,
    # then KDUMP_CMDLINE_APPEND's default.
    assert image.append == (
        "BOOT_IMAGE=/boot/vmlinuz-6.12.57+deb13-amd64 root=UUID=1234 ro quiet "
        "memhp_default_state=online_movable rd.lvm.lv=vg/root cma=64M "
        "reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb")
    assert image.kernel_from == Origin.setting("/etc/default/kdump-tools", "KDUMP_KERNEL")
    assert image.initrd_from == Origin.setting("/etc/default/kdump-tools", "KDUMP_INITRD")
    assert image.append_from == Origin.tool("kdump-config", Setting("/proc/cmdline"))
    assert image.config_file == "/etc/default/kdump-tools"


def test_debian_settings_of_the_admin_are_followed(tmp_path: Path) -> None:
    root = debian_root(tmp_path, 'KDUMP_CMDLINE="root=/dev/vda ro"\n'
                                 "KDUMP_CMDLINE_APPEND='nr_cpus=1 irqpoll'  # short\n"
                                 'export KDUMP_KEXEC_ARGS="-c"\n')
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert image.append == "root=/dev/vda ro nr_cpus=1 irqpoll"
    assert image.append_from.as_dict() == {
        "source": "kdump-config", "file": None, "key": None,
        "inputs": [{"file": "/etc/default/kdump-tools", "key": "KDUMP_CMDLINE"},
                   {"file": "/etc/default/kdump-tools", "key": "KDUMP_CMDLINE_APPEND"}]}
    assert image.append_from.text() == ("kdump-config from /etc/default/kdump-tools "
                                        "(KDUMP_CMDLINE), /etc/default/kdump-tools "
                                        "(KDUMP_CMDLINE_APPEND)")


def test_debian_without_kdump_kernel_uses_the_running_kernel(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"etc/default/kdump-tools": "USE_KDUMP=1\n"})
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert image.kernel == Path(f"/boot/vmlinuz-{RELEASE}")
    assert image.initrd is None and not image.initrd_required
    assert image.kernel_from == Origin("running-kernel") and image.initrd_from is None
    assert image_report.report(image, mode=None, missing=[], kexec_note=None,
                               warning=None)["initrd_from"] is None
    (root / f"boot/initrd.img-{RELEASE}").parent.mkdir(parents=True)
    (root / f"boot/initrd.img-{RELEASE}").write_text("i")
    found = distro.crash_image(root, RELEASE, "x86_64")
    assert found.initrd == Path(f"/boot/initrd.img-{RELEASE}")
    assert found.initrd_from == Origin("running-kernel")


def test_a_setting_that_needs_the_shell_is_refused_not_guessed(tmp_path: Path) -> None:
    root = debian_root(tmp_path, 'KDUMP_CMDLINE="$(cat /proc/cmdline) foo"\n')
    with pytest.raises(DistroError, match=r"kdump-tools:\d+: KDUMP_CMDLINE needs the shell"):
        distro.crash_image(root, RELEASE, "x86_64")
    single = debian_root(tmp_path / "b", "KDUMP_CMDLINE_APPEND='a$b'\n")
    assert distro.crash_image(single, RELEASE, "x86_64").append.endswith(" a$b")


@pytest.mark.parametrize(("text", "why"), [
    ("KDUMP_KERNEL=~/vmlinuz\n", "sh expands an unquoted ~"),
    ("export KDUMP_KERNEL=~root/vmlinuz\n", "sh expands an unquoted ~"),
    ("KDUMP_KERNEL=/boot:~/vmlinuz\n", "sh expands an unquoted ~"),
    ('KDUMP_KERNEL="/boot/vmlinuz"\r\n', "a carriage return"),
    ("# a comment\r\nKDUMP_CMDLINE_APPEND='nr_cpus=1'\r\n", "a carriage return"),
    ("\r\n", "a carriage return"),
])
def test_tilde_and_crlf_are_refused_like_other_lines_sh_reads_differently(
        tmp_path: Path, text: str, why: str) -> None:
    root = debian_root(tmp_path, text)
    with pytest.raises(DistroError, match=rf"kdump-tools:\d+: .*{why}") as refused:
        distro.crash_image(root, RELEASE, "x86_64")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("text", ["KDUMP_CMDLINE_APPEND='~/x'\n",
                                  'KDUMP_CMDLINE_APPEND="~/x"\n',
                                  "KDUMP_CMDLINE_APPEND=\\~/x\n",
                                  "KDUMP_CMDLINE_APPEND=a~b\n",
                                  "# CRLF only in a comment is nothing sh reads\r\n"])
def test_a_tilde_sh_leaves_alone_is_read_as_it_is(tmp_path: Path, text: str) -> None:
    root = debian_root(tmp_path, text)
    append = distro.crash_image(root, RELEASE, "x86_64").append
    assert "~/x" in append or "a~b" in append or "\r" not in append


def test_fedora_kdumpctl_prepare_cmdline(tmp_path: Path) -> None:
    root = make_root(tmp_path, {
        "etc/sysconfig/kdump": (FIXTURES / "fedora/sysconfig-kdump").read_text(),
        "usr/bin/kdumpctl": "", f"boot/vmlinuz-{RELEASE}": "k",
        f"boot/initramfs-{RELEASE}.img": "boot", f"boot/initramfs-{RELEASE}kdump.img": "i",
    })
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert image.family == "fedora"
    assert image.kernel == Path(f"/boot/vmlinuz-{RELEASE}")
    assert image.initrd == Path(f"/boot/initramfs-{RELEASE}kdump.img")
    words = image.append.split()
    # removed always (crashkernel, root, rd.lvm.lv) and by KDUMP_COMMANDLINE_REMOVE
    for gone in ("crashkernel=384M-:256M", "root=UUID=1234", "rd.lvm.lv=vg/root", "quiet",
                 "hugepages=16", "hugepagesz=2M", "cma=64M"):
        assert gone not in words
    assert words[:3] == ["BOOT_IMAGE=/boot/vmlinuz-6.12.57+deb13-amd64", "ro",
                         "memhp_default_state=online_movable"]
    assert "acpi_no_memhotplug" in words and "cma=0" in words
    assert words[-2:] == ["disable_cpu_apicid=2", "rd.systemd.gpt_auto=no"]
    assert distro.memory_hotplug_hazard(image, "x86_64", acpi_slots=True) is None
    # Where each part came from: kdumpctl, from the settings the shipped file sets.
    sysconfig = "/etc/sysconfig/kdump"
    assert image.kernel_from == Origin.tool("kdumpctl", Setting(sysconfig, "KDUMP_IMG"))
    assert image.initrd_from == Origin("kdumpctl")
    assert image.initrd_from.text() == "as kdumpctl finds it"
    assert image.append_from == Origin.tool(
        "kdumpctl", Setting("/proc/cmdline"), Setting(sysconfig, "KDUMP_COMMANDLINE_REMOVE"),
        Setting(sysconfig, "KDUMP_COMMANDLINE_APPEND"))


def test_fedora_kdump_initrd_under_var_lib_when_boot_has_none(tmp_path: Path) -> None:
    root = make_root(tmp_path, {
        "etc/sysconfig/kdump": 'KDUMP_KERNELVER="6.1.0"\n', "usr/bin/kdumpctl": "",
        "boot/vmlinuz-6.1.0": "k", "var/lib/kdump/initramfs-6.1.0kdump.img": "i"})
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert image.kernel == Path("/boot/vmlinuz-6.1.0")
    assert image.initrd == Path("/var/lib/kdump/initramfs-6.1.0kdump.img")


def test_suse_load_sh_command_line(tmp_path: Path) -> None:
    root = make_root(tmp_path, {
        "etc/sysconfig/kdump": (FIXTURES / "suse/sysconfig-kdump").read_text(),
        "usr/lib/kdump/load.sh": ""})
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert image.family == "suse"
    assert (image.kernel, image.initrd) == (Path("/var/lib/kdump/kernel"),
                                            Path("/var/lib/kdump/initrd"))
    words = image.append.split()
    for gone in ("root=UUID=1234", "crashkernel=384M-:256M", "BOOT_IMAGE=/boot/vmlinuz-"
                 "6.12.57+deb13-amd64", "hugepages=16"):
        assert gone not in words
    assert "hugepagesz=2M" in words  # load.sh's list has hugepages, not hugepagesz
    assert "nr_cpus=32" in words  # KDUMP_CPUS=32 in the sysconfig template
    assert words[-3:] == ["rd.udev.children-max=8", "disable_cpu_apicid=2", "panic=1"]
    assert distro.memory_hotplug_hazard(image, "x86_64", acpi_slots=True) is None  # load.sh


def test_without_a_distribution_the_dump_kernel_drops_what_it_must_not_inherit(
    tmp_path: Path
) -> None:
    image = distro.crash_image(make_root(tmp_path, {}), RELEASE, "x86_64")
    assert image.family == "generic" and not image.initrd_required
    words = image.append.split()
    for gone in ("crashkernel=384M-:256M", "hugepages=16", "hugepagesz=2M", "cma=64M",
                 "memhp_default_state=online_movable", "quiet",
                 "BOOT_IMAGE=/boot/vmlinuz-6.12.57+deb13-amd64"):
        assert gone not in words
    assert {"root=UUID=1234", "acpi_no_memhotplug", "irqpoll", "nr_cpus=1"} <= set(words)
    assert "acpi_no_memhotplug" not in distro.default_append(CMDLINE, "aarch64").split()


def test_the_generic_append_drops_the_running_inits_arguments() -> None:
    # After "--" the kernel passes words to init, not to itself: a dump kernel must not
    # hand the running system's init arguments to its own.
    append = distro.default_append("root=/dev/vda ro -- --firecracker-init single", "x86_64")
    words = append.split()
    assert "root=/dev/vda" in words and "irqpoll" in words
    assert not {"--", "--firecracker-init", "single"} & set(words)


def test_kdumpds_own_settings_override_the_distribution(tmp_path: Path) -> None:
    image = distro.crash_image(debian_root(tmp_path), RELEASE, "x86_64")
    mine = distro.with_overrides(image, "", "/boot/mine.img", "")
    assert mine.initrd == Path("/boot/mine.img")
    assert mine.initrd_from == Origin("kdumpd-config", None, "reload.initrd")
    assert mine.kernel == image.kernel and mine.append == image.append
    assert mine.kernel_from == image.kernel_from
    assert mine.sources()["initrd"] == "/boot/mine.img (kdumpd's reload.initrd)"


def test_the_kexec_backend_refuses_a_missing_distribution_initrd_before_the_syscall(
    tmp_path: Path
) -> None:
    from kdumpd.backends import BackendError
    from kdumpd.backends.kexec import KexecBackend
    from kdumpd.fakes import fakesysfs
    from kdumpd.sysfs import Sysfs

    root = fakesysfs.build(tmp_path / "sys")
    kernel = tmp_path / "vmlinuz"
    kernel.write_text("k")
    calls: list[list[str]] = []
    image = distro.CrashImage(kernel, tmp_path / "missing.img", "x", True, "debian")
    backend = KexecBackend(image, "file", Sysfs(root), lambda a, t: calls.append(list(a)) or "",
                           5)
    with pytest.raises(BackendError, match="missing.img is not readable") as caught:
        backend.reload()
    assert caught.value.permanent and calls == []
    none = distro.CrashImage(kernel, None, "x", True, "fedora")
    with pytest.raises(BackendError, match="fedora boots its dump path from an initrd"):
        KexecBackend(none, "file", Sysfs(root), lambda a, t: "", 5).reload()


def test_debian_empty_append_means_kdump_configs_default(tmp_path: Path) -> None:
    # kdump-config: KDUMP_CMDLINE_APPEND=${KDUMP_CMDLINE_APPEND:="..."}
    image = distro.crash_image(debian_root(tmp_path, 'KDUMP_CMDLINE_APPEND=""\n'),
                               RELEASE, "x86_64")
    assert image.append.endswith(distro.DEBIAN_APPEND)
    assert "systemd.unit=kdump-tools-dump.service" in image.append.split()


def test_shell_values_over_several_lines_and_escaped_dollars_are_read(tmp_path: Path) -> None:
    root = debian_root(tmp_path, 'KDUMP_CMDLINE="root=/dev/vda\nro"\n'
                                 'KDUMP_CMDLINE_APPEND="price=\\$5 irqpoll"\n')
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert image.append == "root=/dev/vda ro price=$5 irqpoll"
    broken = debian_root(tmp_path / "b", 'KDUMP_CMDLINE="never closed\n')
    with pytest.raises(DistroError, match=r"kdump-tools:\d+: KDUMP_CMDLINE: No closing"):
        distro.crash_image(broken, RELEASE, "x86_64")


def test_fedora_without_a_remove_setting_uses_kdumpctls_default(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"etc/sysconfig/kdump": 'KDUMP_COMMANDLINE_APPEND="x=1"\n'
                                                      'KDUMP_COMMANDLINE="a hugepages=4 '
                                                      'hugepagesz=2M slub_debug=F quiet"\n',
                                "usr/bin/kdumpctl": ""})
    words = distro.crash_image(root, RELEASE, "x86_64").append.split()
    assert words[:2] == ["a", "quiet"] and "x=1" in words
    named = make_root(tmp_path / "n", {"etc/sysconfig/kdump": 'KDUMP_COMMANDLINE="a cma=1 b"\n'
                                       'KDUMP_COMMANDLINE_REMOVE="cma=64M"\n',
                                       "usr/bin/kdumpctl": ""})
    assert "cma=1" not in distro.crash_image(named, RELEASE, "x86_64").append.split()


def test_suse_empty_kdump_cpus_means_32(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"etc/sysconfig/kdump": 'KDUMP_CPUS=""\n',
                                "usr/lib/kdump/load.sh": ""})
    assert "nr_cpus=32" in distro.crash_image(root, RELEASE, "x86_64").append.split()
    none = make_root(tmp_path / "z", {"etc/sysconfig/kdump": 'KDUMP_CPUS="0"\n',
                                      "usr/lib/kdump/load.sh": ""})
    assert not any(w.startswith("nr_cpus=") for w in
                   distro.crash_image(none, RELEASE, "s390x").append.split())


# -- hostile distribution configuration files -------------------------------------------


def test_a_fifo_as_the_distributions_config_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "etc/default/kdump-tools"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    with pytest.raises(DistroError, match="not a regular file"):
        distro.read_shell_vars(tmp_path, "/etc/default/kdump-tools")


def test_a_huge_distribution_config_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "etc/sysconfig/kdump"
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        handle.truncate(distro.SHELL_FILE_LIMIT + 1)
    with pytest.raises(DistroError, match="larger than"):
        distro.read_shell_vars(tmp_path, "/etc/sysconfig/kdump")


def test_a_distribution_config_others_can_write_is_refused_as_root(tmp_path: Path) -> None:
    import os

    path = tmp_path / "etc/default/kdump-tools"
    path.parent.mkdir(parents=True)
    path.write_text('KDUMP_CMDLINE_APPEND="x"\n')
    path.chmod(0o666)
    if os.geteuid() != 0:
        pytest.skip("the ownership check applies to root only")
    with pytest.raises(DistroError, match="group- or world-writable"):
        distro.read_shell_vars(tmp_path, "/etc/default/kdump-tools")


def test_any_bytes_give_values_or_a_one_line_distro_error(tmp_path_factory: pytest.TempPathFactory,
                                                            ) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    root = tmp_path_factory.mktemp("hostile")
    path = root / "etc/sysconfig/kdump"
    path.parent.mkdir(parents=True)

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.binary(max_size=300),
                     st.text(alphabet="KDUMP_=\"'\\$`# \n\tabc-()", max_size=120)))
    def check(data: bytes | str) -> None:
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        path.chmod(0o644)
        try:
            values = distro.read_shell_vars(root, "/etc/sysconfig/kdump")
        except DistroError as error:
            assert "\n" not in str(error)  # one line
            assert str(error).startswith("/etc/sysconfig/kdump")
            return
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())

    check()


def test_a_dump_kernel_that_may_take_hot_added_memory_is_named_with_the_setting_to_fix(
    tmp_path: Path,
) -> None:
    debian = distro.crash_image(debian_root(tmp_path), RELEASE, "x86_64")
    hazard = distro.memory_hotplug_hazard(debian, "x86_64", acpi_slots=True)
    assert hazard is not None
    assert "memhp_default_state=online_movable" in hazard  # inherited from /proc/cmdline
    assert hazard.endswith("add acpi_no_memhotplug to KDUMP_CMDLINE_APPEND in "
                           "/etc/default/kdump-tools")
    assert distro.memory_hotplug_hazard(debian, "ppc64le", acpi_slots=True) is None
    assert distro.memory_hotplug_hazard(debian, "x86_64", acpi_slots=False) is None  # no slot

    fixed = distro.CrashImage(debian.kernel, debian.initrd, debian.append + " acpi_no_memhotplug",
                              family="debian")
    assert distro.memory_hotplug_hazard(fixed, "x86_64", acpi_slots=True) is None
    # kdumpd's own reload.append over Debian's: that is the setting to fix.
    own = distro.with_overrides(debian, "", "", "root=/dev/vda irqpoll")
    own_hazard = distro.memory_hotplug_hazard(own, "x86_64", acpi_slots=True)
    assert own_hazard is not None and own_hazard.endswith("add acpi_no_memhotplug to reload.append")


@pytest.mark.parametrize(("append", "machine", "named"), [
    ("ro irqpoll", "x86_64", "reload.append"),  # kdumpd's own settings: fixed there
    ("ro memhp_default_state=offline", "x86_64", "reload.append"),  # still added by ACPI
    ("memhp_default_state=offline memhp_default_state=online", "i686", "reload.append"),
    ("ro acpi_no_memhotplug", "x86_64", None),
    ("ro irqpoll", "aarch64", None),
])
def test_memory_hotplug_hazard_needs_acpi_no_memhotplug(
    append: str, machine: str, named: str | None,
) -> None:
    image = distro.CrashImage(Path("/k"), None, append)
    hazard = distro.memory_hotplug_hazard(image, machine, acpi_slots=True)
    if named is None:
        assert hazard is None
    else:
        assert hazard is not None and hazard.endswith(f"to {named}")
        last = append.rsplit(maxsplit=1)[-1]
        assert (f"it has {last}" in hazard) == last.startswith("memhp_default_state=")


def test_acpi_memory_slots_are_read_from_sysfs(tmp_path: Path) -> None:
    devices = tmp_path / "sys/bus/acpi/devices"
    devices.mkdir(parents=True)
    (devices / "PNP0A03:00").mkdir()
    assert not distro.acpi_memory_hotplug(tmp_path)
    (devices / "PNP0C80:00").mkdir()
    assert distro.acpi_memory_hotplug(tmp_path)


# Lines of Debian 13's modules.alias (6.12.117+deb13-amd64), and two that must not match.
MODULES_ALIAS = """\
# Aliases extracted from modules themselves.
alias pci:v00008086d000025ABsv*sd*bc*sc*i* i6300esb
alias platform:iTCO_wdt iTCO_wdt
alias pci:v0000103Cd00003306sv*sd*bc*sc*i* hpwdt
alias pci:v00008086d000025A[C-F]sv*sd*bc*sc*i* not_this_one
alias pci:v00001022d0000790Bsv*sd*bc*sc*i* sp5100_tco
"""
# modules.builtin.modinfo: NUL-separated "<module>.<field>=<value>" (depmod keeps the
# built-in aliases only in binary form otherwise).
BUILTIN_MODINFO = (b"fuse.alias=devname:fuse\0wdat_wdt.alias=platform:wdat-wdt\0"
                   b"wdat_wdt.description=ACPI Hardware Watchdog (WDAT) driver\0"
                   b"other_wdt.alias=platform:iTCO_wdt\0")  # made up: modules.alias wins
I6300ESB = "pci:v00008086d000025ABsv00001AF4sd00001100bc08sc80i00"  # QEMU's, as sysfs says
HPWDT = "pci:v0000103Cd00003306sv0000103Csd00003381bc08sc80i00"


def fedora_watchdog_root(tmp_path: Path, watchdogs: dict[str, str | None],
                         modules: str = "lib/modules") -> Path:
    files: dict[str, str | None] = {
        "etc/sysconfig/kdump": 'KDUMP_COMMANDLINE="ro"\n', "usr/bin/kdumpctl": "",
        f"boot/vmlinuz-{RELEASE}": "k", f"boot/initramfs-{RELEASE}kdump.img": "i",
        f"{modules}/{RELEASE}/modules.alias": MODULES_ALIAS,
    }
    builtin = tmp_path / "root" / modules / RELEASE / "modules.builtin.modinfo"
    builtin.parent.mkdir(parents=True, exist_ok=True)
    builtin.write_bytes(BUILTIN_MODINFO)
    for name, modalias in watchdogs.items():
        files[f"sys/class/watchdog/{name}/dev"] = "10:130\n"
        if modalias is not None:
            files[f"sys/class/watchdog/{name}/device/modalias"] = modalias + "\n"
    return make_root(tmp_path, files)


def test_fedora_sets_each_watchdog_drivers_pretimeout_to_zero_as_kdumpctl_does(
    tmp_path: Path
) -> None:
    root = fedora_watchdog_root(tmp_path, {
        "watchdog0": I6300ESB, "watchdog1": "platform:iTCO_wdt", "watchdog2": HPWDT,
        "watchdog3": None,  # softdog: no device, no modalias
        "watchdog4": "platform:iTCO_wdt",  # a second device of a driver: named once
    })
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert image.append.split()[1:] == [
        "disable_cpu_apicid=2", "i6300esb.pretimeout=0", "iTCO_wdt.pretimeout=0",
        "hpwdt.pretimeout=0", "hpwdt.kdumptimeout=0", "rd.systemd.gpt_auto=no"]


def test_watchdog_drivers_come_from_the_dump_kernels_modules_under_usr_lib(
    tmp_path: Path
) -> None:
    root = fedora_watchdog_root(tmp_path, {"watchdog0": I6300ESB}, modules="usr/lib/modules")
    assert distro.watchdog_drivers(root, RELEASE) == ["i6300esb"]
    assert distro.watchdog_drivers(root, "6.1.0-other") == []  # modprobe finds nothing


def test_a_watchdog_no_module_alias_names_adds_nothing(tmp_path: Path) -> None:
    root = fedora_watchdog_root(tmp_path, {"watchdog0": "platform:unknown_wdt"})
    assert distro.watchdog_drivers(root, RELEASE) == []
    assert ".pretimeout" not in distro.crash_image(root, RELEASE, "x86_64").append


def test_a_fifo_as_a_watchdogs_modalias_is_skipped_without_blocking(tmp_path: Path) -> None:
    root = fedora_watchdog_root(tmp_path, {"watchdog0": None, "watchdog1": I6300ESB})
    (root / "sys/class/watchdog/watchdog0/device").mkdir()
    os.mkfifo(root / "sys/class/watchdog/watchdog0/device/modalias")
    assert distro.watchdog_drivers(root, RELEASE) == ["i6300esb"]


def test_built_in_watchdog_drivers_count_only_when_no_module_claims_the_alias(
    tmp_path: Path
) -> None:
    root = fedora_watchdog_root(tmp_path, {"watchdog0": "platform:wdat_wdt",
                                           "watchdog1": "platform:iTCO_wdt"})
    # wdat_wdt is built in (its alias written with "-", which kmod reads as "_"); the
    # iTCO_wdt alias is in both tables: modprobe names the module's driver only.
    assert distro.watchdog_drivers(root, RELEASE) == ["wdat_wdt", "iTCO_wdt"]


@pytest.mark.parametrize(("machine", "tail"), [
    ("x86_64", "nr_cpus=1 irqpoll usbcore.nousb"),
    ("aarch64", "systemd.unit=kdump-tools-dump.service nr_cpus=1"),
    ("ppc64le", "maxcpus=1 irqpoll noirqdistrib usbcore.nousb"),
])
def test_debian_default_append_is_kdump_tools_default_for_the_architecture(
    tmp_path: Path, machine: str, tail: str
) -> None:
    root = make_root(tmp_path, {"etc/default/kdump-tools": "KDUMP_KERNEL=\n",
                                f"boot/vmlinuz-{RELEASE}": "k"})
    assert distro.crash_image(root, RELEASE, machine).append.endswith(" " + tail)


def test_fedora_reads_quoted_options_as_kdumpctls_xargs_does(tmp_path: Path) -> None:
    root = make_root(tmp_path, {
        "proc/cmdline": '"root=LABEL=my disk" ro foo="" bar="x" '
                        'acpi_osi="!Windows 2012" =odd quiet\n',
        "etc/sysconfig/kdump": 'KDUMP_COMMANDLINE_REMOVE="quiet ro="\n',
        "usr/bin/kdumpctl": "", f"boot/vmlinuz-{RELEASE}": "k",
        f"boot/initramfs-{RELEASE}kdump.img": "i"})
    words = distro.crash_image(root, RELEASE, "x86_64").append
    # root= is removed even quoted, "foo=" dropped, quotes off unless the value has a
    # space, and "ro=" in the remove list is ignored (kdumpctl skips "name=" there too).
    assert words.startswith('ro bar=x acpi_osi="!Windows 2012" disable_cpu_apicid=2 ')


@pytest.mark.parametrize(("cpus", "xen", "expected"), [
    ("4", False, "nr_cpus=4"), ("auto", False, "nr_cpus=32"), ("00", False, None),
    ("4", True, "nr_cpus=1"),
])
def test_suse_nr_cpus_as_load_sh_and_kdump_read_config_set_it(
    tmp_path: Path, cpus: str, xen: bool, expected: str | None
) -> None:
    files = {"etc/sysconfig/kdump": f'KDUMP_CPUS="{cpus}"\n', "usr/lib/kdump/load.sh": ""}
    if xen:
        files["proc/xen/capabilities"] = "control_d\n"
    words = distro.crash_image(make_root(tmp_path, files), RELEASE, "x86_64").append.split()
    assert [w for w in words if w.startswith("nr_cpus=")] == ([expected] if expected else [])


FC = "6.12.0-1.fc42.x86_64"
STUB = ("sys/firmware/efi/efivars/"
        "StubImageIdentifier-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f")


@pytest.mark.parametrize(("release", "files", "kernel", "initrd"), [
    # a debug kernel dumps with its non-debug twin when that is installed
    (FC + "+debug", {f"usr/lib/modules/{FC}/modules.dep": "", f"boot/vmlinuz-{FC}": "k",
                     f"boot/vmlinuz-{FC}+debug": "k", f"boot/initramfs-{FC}.img": "i"},
     f"/boot/vmlinuz-{FC}", f"/boot/initramfs-{FC}kdump.img"),
    (FC + "+debug", {f"boot/vmlinuz-{FC}+debug": "k", f"boot/initramfs-{FC}+debug.img": "i"},
     f"/boot/vmlinuz-{FC}+debug", f"/boot/initramfs-{FC}+debugkdump.img"),
    # a Boot Loader Specification layout: <machine-id>/<version>/vmlinuz and its "initrd"
    (FC, {"etc/machine-id": "4f1c\n", f"boot/4f1c/{FC}/vmlinuz": "k",
          f"boot/4f1c/{FC}/initrd": "i"},
     f"/boot/4f1c/{FC}/vmlinuz", f"/boot/4f1c/{FC}/initrdkdump"),
    # the UKI the firmware names; no initramfs beside it: the kdump one in /var/lib/kdump
    (FC, {"boot/efi/EFI/Linux/fedora-uki.efi": "k",
          STUB: b"\x06\0\0\0" + "\\EFI\\Linux\\fedora-uki.efi\0".encode("utf-16-le")},
     "/boot/efi/EFI/Linux/fedora-uki.efi", f"/var/lib/kdump/initramfs-{FC}kdump.img"),
    # OSTree: the deployment's kernel comes before /boot's
    (FC, {"run/ostree-booted": "", f"boot/ostree/fedora-9a/vmlinuz-{FC}": "k",
          f"boot/vmlinuz-{FC}": "k"},
     f"/boot/ostree/fedora-9a/vmlinuz-{FC}", f"/var/lib/kdump/initramfs-{FC}kdump.img"),
    # BOOT_IMAGE, without GRUB's device, when it names this version
    (FC, {"proc/cmdline": f"BOOT_IMAGE=(hd0,gpt2)/kernels/vmlinuz-{FC} ro\n",
          f"boot/kernels/vmlinuz-{FC}": "k"},
     f"/boot/kernels/vmlinuz-{FC}", f"/var/lib/kdump/initramfs-{FC}kdump.img"),
])
def test_fedora_finds_kernel_and_initrd_where_kdumpctl_does(
    tmp_path: Path, release: str, files: dict[str, str | bytes], kernel: str, initrd: str
) -> None:
    root = make_root(tmp_path, {"etc/sysconfig/kdump": "\n", "usr/bin/kdumpctl": ""})
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    image = distro.crash_image(root, release, "x86_64")
    assert (str(image.kernel), str(image.initrd)) == (kernel, initrd)


def test_debian_default_append_is_the_one_in_the_installed_kdump_config(
    tmp_path: Path
) -> None:
    # An amd64 kdump-tools (its userland) under an arm64 kernel: the script's default wins.
    root = make_root(tmp_path, {
        "etc/default/kdump-tools": "KDUMP_KERNEL=\n", f"boot/vmlinuz-{RELEASE}": "k",
        "usr/sbin/kdump-config": (FIXTURES / "debian/kdump-config").read_text()})
    append = distro.crash_image(root, RELEASE, "aarch64").append
    assert append.endswith(" nr_cpus=1 irqpoll usbcore.nousb")


def test_fedora_takes_the_kdump_initrd_that_exists_as_its_boot_dir_is_read_only_here(
    tmp_path: Path
) -> None:
    root = make_root(tmp_path, {"etc/sysconfig/kdump": "\n", "usr/bin/kdumpctl": "",
                                f"boot/vmlinuz-{FC}": "k", f"boot/initramfs-{FC}.img": "i"})
    image = lambda: distro.crash_image(root, FC, "x86_64").initrd  # noqa: E731
    assert image() == Path(f"/boot/initramfs-{FC}kdump.img")  # none built yet: kdumpctl's
    state = root / f"var/lib/kdump/initramfs-{FC}kdump.img"  # kdumpctl on a read-only /boot
    state.parent.mkdir(parents=True)
    state.write_text("kdump")
    assert image() == Path(f"/var/lib/kdump/initramfs-{FC}kdump.img")
    beside = root / f"boot/initramfs-{FC}kdump.img"
    beside.write_text("kdump")
    os.utime(state, (1_000_000, 1_000_000))  # both: the newer one is the one kdumpctl rebuilt
    assert image() == Path(f"/boot/initramfs-{FC}kdump.img")


def test_fedora_unmatched_quote_keeps_the_words_before_it_as_xargs_does(
    tmp_path: Path
) -> None:
    root = make_root(tmp_path, {
        "proc/cmdline": 'ro quiet acpi_osi="Windows rd.x=1\n', "etc/sysconfig/kdump": "\n",
        "usr/bin/kdumpctl": "", f"boot/vmlinuz-{RELEASE}": "k"})
    append = distro.crash_image(root, RELEASE, "x86_64").append
    assert append == "ro quiet disable_cpu_apicid=2 rd.systemd.gpt_auto=no"


def test_fedora_blank_boot_dir_setting_names_a_kernel_the_load_check_refuses(
    tmp_path: Path
) -> None:
    root = make_root(tmp_path, {"etc/sysconfig/kdump": 'KDUMP_BOOTDIR=" "\n',
                                "usr/bin/kdumpctl": ""})
    assert distro.crash_image(root, RELEASE, "x86_64").kernel == Path(f"/boot/vmlinuz-{RELEASE}")


def test_a_growth_safe_image_leaves_hot_added_memory_to_the_dump(tmp_path: Path) -> None:
    debian = distro.crash_image(debian_root(tmp_path), RELEASE, "x86_64")
    assert "memhp_default_state=online_movable" in debian.append.split()  # from /proc/cmdline
    safe = distro.survive_growth(debian, "x86_64", acpi_slots=True)
    words = safe.append.split()
    assert words[-1] == "acpi_no_memhotplug" and words.count("acpi_no_memhotplug") == 1
    assert not any(w.startswith("memhp_default_state") for w in words)
    assert (safe.added, safe.removed) == (("acpi_no_memhotplug",),
                                          ("memhp_default_state=online_movable",))
    assert safe.sources()["added"].startswith("acpi_no_memhotplug (x86 with ACPI memory slots")
    assert distro.memory_hotplug_hazard(safe, "x86_64", acpi_slots=True) is None
    assert [w for w in words if w != "acpi_no_memhotplug"] == [
        w for w in debian.append.split() if not w.startswith("memhp_default_state")]
    assert (safe.kernel, safe.initrd, safe.family) == (debian.kernel, debian.initrd, "debian")


@pytest.mark.parametrize(("append", "machine", "slots", "expected", "removed"), [
    ("ro irqpoll", "x86_64", True, "ro irqpoll acpi_no_memhotplug", ()),
    ("ro acpi_no_memhotplug", "x86_64", True, "ro acpi_no_memhotplug", ()),
    ("ro memory_hotplug.memmap_on_memory=1 memhp_default_state", "i686", True,
     "ro acpi_no_memhotplug", ("memory_hotplug.memmap_on_memory=1", "memhp_default_state")),
    ('ro dyndbg="file a.c +p" memhp_default_state=offline', "x86_64", True,
     'ro dyndbg="file a.c +p" acpi_no_memhotplug', ("memhp_default_state=offline",)),
    ("ro memhp_default_state=online", "x86_64", False, "ro memhp_default_state=online", ()),
    ("ro memhp_default_state=online", "aarch64", True, "ro memhp_default_state=online", ()),
    ("ro memhp_default_state_x=1", "x86_64", True,
     "ro memhp_default_state_x=1 acpi_no_memhotplug", ()),
])
def test_growth_safety_is_for_x86_with_acpi_slots_and_only_changes_what_it_names(
    append: str, machine: str, slots: bool, expected: str, removed: tuple[str, ...],
) -> None:
    image = distro.CrashImage(Path("/k"), None, append)
    safe = distro.survive_growth(image, machine, acpi_slots=slots)
    assert safe.append == expected
    assert safe.removed == removed
    assert safe.added == (() if "acpi_no_memhotplug" in append or expected == append
                          else ("acpi_no_memhotplug",))
    if expected == append:
        assert safe is image and "added" not in safe.sources()


def test_missing_kernel_and_initrd_are_named(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert distro.missing_parts(image, root) == []
    (root / "var/lib/kdump/initrd.img").unlink()
    assert distro.missing_parts(image, root) == ["initrd /var/lib/kdump/initrd.img"]
    (root / "var/lib/kdump/vmlinuz").unlink()
    assert distro.missing_parts(image, root) == ["kernel /var/lib/kdump/vmlinuz",
                                                 "initrd /var/lib/kdump/initrd.img"]


def test_a_number_too_long_for_int_is_not_a_number(tmp_path: Path) -> None:
    config = (FIXTURES / "suse/sysconfig-kdump").read_text() + f'KDUMP_CPUS="{"9" * 5000}"\n'
    root = make_root(tmp_path, {"etc/sysconfig/kdump": config, "usr/lib/kdump/load.sh": ""})
    image = distro.crash_image(root, RELEASE, "x86_64")
    assert "nr_cpus=32" in image.append.split()  # load.sh's default, as for any non-number


@pytest.mark.parametrize(("line", "why"), [
    ("if true; then\n", "not a line kdumpd reads exactly as sh would: 'if true; then'"),
    ("[ -e /x ] && KDUMP_CMDLINE=y\n", "not a line kdumpd reads exactly as sh would"),
    ("unset KDUMP_KERNEL\n", "not a line kdumpd reads exactly as sh would"),
    ("declare -x KDUMP_CPUS=2\n", "not a line kdumpd reads exactly as sh would"),
    ("KDUMP_CMDLINE=x;KDUMP_KERNEL=y\n", "KDUMP_CMDLINE: ';' makes this a shell command"),
    ("KDUMP_CMDLINE=a b\n", "KDUMP_CMDLINE: a second word 'b' makes this a command"),
    ("KDUMP_CMDLINE=x$(id)\n", "KDUMP_CMDLINE needs the shell to expand it"),
    ('KDUMP_CMDLINE="a `id`"\n', "KDUMP_CMDLINE needs the shell to expand it"),
])
def test_a_line_sh_would_read_differently_refuses_the_file_naming_it(
    tmp_path: Path, line: str, why: str,
) -> None:
    root = make_root(tmp_path, {"etc/default/kdump-tools": f"# kdump\n\n{line}"})
    with pytest.raises(DistroError, match=re.escape(f"kdump-tools:3: {why}")):
        distro.read_shell_vars(root, "/etc/default/kdump-tools")


def test_values_are_read_as_sh_reads_them(tmp_path: Path) -> None:
    text = ("A=x#y # a comment after whitespace\n"
            "export B='it''s'\n"
            'C="a \\"b\\" \\$d \\q"\n'
            "D=one\\ word\n"
            'E="over\ntwo lines"\n'
            "F=\n"
            "  G=\"x\" # indented\n"
            'reboot() { echo "no reboot"; }\n')
    root = make_root(tmp_path, {"etc/x": text})
    assert distro.read_shell_vars(root, "/etc/x") == {
        "A": "x#y", "B": "its", "C": 'a "b" $d \\q', "D": "one word", "E": "over\ntwo lines",
        "F": "", "G": "x"}


def test_an_unterminated_quote_in_a_large_file_is_refused_in_linear_time(
    tmp_path: Path,
) -> None:
    text = 'KDUMP_CMDLINE="never closed\n' + "KDUMP_X=1\n" * 2000  # 20 KB
    root = make_root(tmp_path, {"etc/x": text})
    started = time.perf_counter()
    with pytest.raises(DistroError, match=r"x:1: KDUMP_CMDLINE: No closing quotation"):
        distro.read_shell_vars(root, "/etc/x")
    assert time.perf_counter() - started < 1.0  # was 46 s (quadratic re-splitting)


def test_an_alias_table_no_kernel_writes_is_refused_and_a_real_one_is_parsed_once(
    tmp_path: Path,
) -> None:
    from kdumpd.backends.distro import watchdog

    root = fedora_watchdog_root(tmp_path, {"watchdog0": "pci:v00008086d00001234"})
    table = root / "lib/modules" / RELEASE / "modules.alias"
    assert distro.watchdog_drivers(root, RELEASE) == distro.watchdog_drivers(root, RELEASE)
    assert sum(key[0] == table for key in watchdog._TABLES) == 1  # parsed once
    table.write_text("".join(f"alias pci:v*d{i:08x}* m{i}\n"
                             for i in range(watchdog.MAX_CANDIDATES + 1)))
    with pytest.raises(DistroError, match=r"modules.alias: 4097 patterns could match"):
        distro.watchdog_drivers(root, RELEASE)


def hidden_modules(path: Path) -> bool:
    """Path.is_dir as it fails inside the unit: ProtectKernelModules=yes hides
    /usr/lib/modules, and the first look at it is EACCES (root cannot be refused here)."""
    if "usr/lib/modules" in str(path):
        raise PermissionError(13, "Permission denied", str(path))
    return path.is_dir()


def test_a_watchdog_driver_sysfs_names_is_taken_without_the_module_tables(
    tmp_path: Path
) -> None:
    # Inside the unit only sysfs is visible: the driver bound to the device names its
    # module (../../module/i6300esb), and modules.alias is never read.
    root = fedora_watchdog_root(tmp_path, {"watchdog0": I6300ESB}, modules="usr/lib/modules")
    module = root / "sys/module/i6300esb"
    module.mkdir(parents=True)
    driver = root / "sys/bus/pci/drivers/i6300esb"
    driver.mkdir(parents=True)
    (driver / "module").symlink_to(module)
    (root / "sys/class/watchdog/watchdog0/device/driver").symlink_to(driver)
    found = distro.find_watchdogs(root, RELEASE, is_dir=hidden_modules)
    assert (found.drivers, found.unknown) == (["i6300esb"], [])


def test_a_watchdog_driver_that_cannot_be_derived_costs_only_its_option(
    tmp_path: Path
) -> None:
    # Fedora under the shipped unit (issue 33): modules.alias is hidden and sysfs links
    # no driver: the image is still read, without that driver's pretimeout, and says so.
    root = fedora_watchdog_root(tmp_path, {"watchdog0": I6300ESB}, modules="usr/lib/modules")
    found = distro.find_watchdogs(root, RELEASE, is_dir=hidden_modules)
    assert found.drivers == []
    assert found.unknown == [
        f"watchdog0: its driver cannot be derived (Permission denied: "
        f"{root}/usr/lib/modules/{RELEASE})"]
    image = distro.CrashImage(Path("/boot/vmlinuz"), None, "ro", not_derived=(
        "watchdog x: its <driver>.pretimeout=0 is left out",))
    report = image_report.report(image, mode=None, missing=[], kexec_note=None,
                                 warning=None)
    assert report["not_derived"] == ["watchdog x: its <driver>.pretimeout=0 is left out"]
    assert "  not derived: watchdog x: its <driver>.pretimeout=0 is left out" in \
        image_report.lines(report)
