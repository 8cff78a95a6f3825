"""ppc64le (pseries) beside x86_64: the facts per architecture and what follows from them,
on fake trees shaped like the scoping guest's (QEMU 7.2 pseries, Debian's 6.12.107)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from kdumpd import app, arch
from kdumpd.backends import BackendError
from kdumpd.backends.distro.origin import Origin
from kdumpd.backends.kexec import KexecBackend, KexecImage, userspace_load_blocker
from kdumpd.backends.kexec_args import parse
from kdumpd.backends.kexec_syscalls import FileLoad, file_load, setting
from kdumpd.fakes import fakesysfs
from kdumpd.hardware import Reservation, read_crash_reservation, read_hardware
from kdumpd.policy import decide
from kdumpd.status import NO_RESERVATION, NO_RESERVATION_DT, gather
from kdumpd.sysfs import Snapshot, Sysfs, Value
from tests.core.test_backends import FakeKexec

MIB = 1 << 20
RELEASE = "6.12.107+deb13-powerpc64le"
NO_FILE = FileLoad(False, f"/boot/config-{RELEASE}")


def pseries(root: Path, *, reserved: bool = True) -> Path:
    """The scoping guest's tree: /proc/iomem with System RAM and no ``Crash kernel``, the
    reservation in the device tree (512 MiB at 512 MiB), the x86 kexec_load inputs empty
    (as the sandbox leaves them), every possible CPU in sysfs, two present."""
    fakesysfs.build(root)
    (root / "proc/iomem").write_text("00000000-7fffffff : System RAM\n"
                                     "200080000000-2000ffffffff : pci@800000020000000\n")
    (root / "proc/kallsyms").write_text("")
    (root / "proc/kcore").unlink()
    chosen = root / "proc/device-tree/chosen"
    chosen.mkdir(parents=True)
    if reserved:
        (chosen / "linux,crashkernel-base").write_bytes((512 * MIB).to_bytes(8, "big"))
        (chosen / "linux,crashkernel-size").write_bytes((512 * MIB).to_bytes(8, "big"))
    cpu = root / "sys/devices/system/cpu"
    for n in range(4):
        (cpu / f"cpu{n}").mkdir(parents=True, exist_ok=True)
    (cpu / "present").write_text("0-1\n")
    (cpu / "online").write_text("0-1\n")
    (cpu / "possible").write_text("0-3\n")
    return root


@pytest.fixture
def ppc(tmp_path: Path) -> Path:
    return pseries(tmp_path / "ppc")


@pytest.fixture
def image(tmp_path: Path) -> KexecImage:
    kernel, initrd = tmp_path / "vmlinux", tmp_path / "initrd.img"
    kernel.write_bytes(b"\x7fELF")
    initrd.write_bytes(b"initrd")
    return KexecImage(kernel, initrd, "console=hvc0 nr_cpus=1 reset_devices")


def ppc64le_backend(root: Path, image: KexecImage, mode: str = "auto",
                    file_load: FileLoad = NO_FILE) -> tuple[KexecBackend, FakeKexec]:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    return KexecBackend(image, mode, sysfs, runner, 5, arch=arch.facts("ppc64le"),
                        file_load=file_load), runner


# -- the facts -------------------------------------------------------------------------------


def test_facts_per_architecture() -> None:
    x86, ppc, s390, arm = (arch.facts(m) for m in ("x86_64", "ppc64le", "s390x", "aarch64"))
    assert x86.removal_leaves_range and x86.header_readback
    assert x86.kexec_load_reads == ("kcore", "iomem", "kallsyms")
    assert x86.reservation_in == arch.IOMEM and x86.lines() == ()
    assert ppc.family == "powerpc" and not ppc.removal_leaves_range
    assert ppc.kexec_load_reads == () and ppc.reservation_in == arch.DEVICE_TREE
    assert ppc.cpu_actions == ("online", "offline") and ppc.unknown_cpu_loses_dump
    assert ppc.header_readback and arch.facts("ppc64") == arch.Arch(
        "ppc64", "powerpc", kexec_load_reads=(), reservation_in=arch.DEVICE_TREE,
        cpu_actions=("online", "offline"), unknown_cpu_loses_dump=True,
        kexec_load_omits_hot_added_ram=True)
    assert ppc.kexec_load_omits_hot_added_ram and not x86.kexec_load_omits_hot_added_ram
    assert s390.header_built_by_dump_kernel
    # One kdumpd has not met keeps x86's kexec_load checks and /proc/iomem.
    assert arm.kexec_load_reads == x86.kexec_load_reads and arm.reservation_in == arch.IOMEM
    assert not arm.removal_leaves_range
    said = "\n".join(ppc.lines())
    for words in ("device tree", "online/offline", "whole dump", "fadump",
                  "linux,memory-limit"):
        assert words in said, words


# -- the policy ------------------------------------------------------------------------------


def test_ppc64le_plain_image_reloads_after_a_cpu_online_and_says_the_dump_is_lost() -> None:
    plain = Snapshot(Value("1"), {"cpu": Value("0"), "memory": Value("0")})
    first = decide({"cpu"}, plain, actions={("cpu", "online")}, arch="ppc64le")
    assert not first.reload and first.confirm  # a single 0 is confirmed first, as on x86
    again = decide({"cpu"}, plain, actions={("cpu", "online")}, arch="ppc64le",
                   zero_seen=True)
    assert again.reload and "whole dump" in again.reason and again.beyond_header
    absent = Snapshot(Value("1"), {"cpu": Value("", "absent")})
    lost = decide({"cpu"}, absent, arch="ppc64le")
    assert "whole dump" in lost.reason and lost.beyond_header
    memory = decide({"memory"}, plain, actions={("memory", "online")}, arch="ppc64le",
                    zero_seen=True)
    assert memory.reload and not memory.beyond_header  # the header shows memory
    x86 = decide({"cpu"}, plain, actions={("cpu", "online")}, arch="x86_64", zero_seen=True)
    assert x86.reload and "whole dump" not in x86.reason  # x86's reason is unchanged
    assert not x86.beyond_header


def test_ppc64le_hotplug_image_needs_nothing_for_add_or_remove() -> None:
    kept = Snapshot(Value("1"), {"cpu": Value("1"), "memory": Value("1")})
    for pair in (("memory", "add"), ("memory", "online"), ("memory", "offline"),
                 ("memory", "remove"), ("cpu", "online"), ("cpu", "offline")):
        assert not decide({pair[0]}, kept, actions={pair}, arch="ppc64le").reload, pair
    assert decide({"memory"}, kept, actions={("memory", "remove")}, arch="x86_64").reload


# -- the reservation -------------------------------------------------------------------------


def test_the_reservation_comes_from_the_device_tree_on_powerpc(ppc: Path) -> None:
    assert read_crash_reservation(ppc, arch.DEVICE_TREE) == Reservation(True, 512 * MIB)
    assert read_crash_reservation(ppc) == Reservation(False, None)  # iomem has no line
    chosen = ppc / "proc/device-tree/chosen"
    (chosen / "linux,crashkernel-size").write_bytes((256 * MIB).to_bytes(4, "big"))
    assert read_crash_reservation(ppc, arch.DEVICE_TREE) == Reservation(True, 256 * MIB)
    (chosen / "linux,crashkernel-size").write_bytes(b"\0\0\x10")  # not a cell
    assert read_crash_reservation(ppc, arch.DEVICE_TREE) == Reservation(True, None)
    (chosen / "linux,crashkernel-size").unlink()
    assert read_crash_reservation(ppc, arch.DEVICE_TREE) == Reservation(False, None)


def test_capacity_reads_the_device_tree_reservation(ppc: Path) -> None:
    found = app.capacity_reader(ppc, "ppc64le")(read_hardware(ppc))
    assert found.reserved_bytes == 512 * MIB
    # 2 GiB online: kdump-utils' ppc64le default asks 384 MiB, plus 1 MiB for the dump
    # kernel's one CPU (capacity_facts.py), which the 512 MiB covers.
    assert found.recommended_bytes == 385 * MIB and not found.warning
    # x86's reader on the same tree finds no "Crash kernel" line: nothing to compare.
    assert app.capacity_reader(ppc, "x86_64")(read_hardware(ppc)).reserved_bytes == 0


# -- kexec_file_load, told without loading ---------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("CONFIG_KEXEC=y\nCONFIG_KEXEC_FILE=y\n", True),
    ("CONFIG_KEXEC=y\n# CONFIG_KEXEC_FILE is not set\n", False),
    ("CONFIG_KEXEC=y\n", False),  # a configuration that does not name it
    ("", None), ("not a config\n", None),
])
def test_kernel_config_setting(text: str, want: bool | None) -> None:
    assert setting(text) is want


def test_file_load_is_read_from_the_kernels_configuration(tmp_path: Path) -> None:
    root = tmp_path / "r"
    assert file_load(root, RELEASE).available is None
    assert "/boot/config-" in file_load(root, RELEASE).line()
    (root / "proc").mkdir(parents=True)
    (root / "proc/config.gz").write_bytes(gzip.compress(b"CONFIG_KEXEC_FILE=y\n"))
    assert file_load(root, RELEASE) == FileLoad(True, "/proc/config.gz")
    modules = root / f"lib/modules/{RELEASE}"
    modules.mkdir(parents=True)
    (modules / "config").write_text("# CONFIG_KEXEC_FILE is not set\n")
    assert file_load(root, RELEASE) == FileLoad(False, f"/lib/modules/{RELEASE}/config")
    (root / "boot").mkdir()
    (root / f"boot/config-{RELEASE}").write_text("CONFIG_KEXEC_FILE=y\n")
    assert file_load(root, RELEASE).line() == f"yes (CONFIG_KEXEC_FILE=y in /boot/config-{RELEASE})"
    (root / "proc/config.gz").write_bytes(b"broken")  # never raises
    (root / f"boot/config-{RELEASE}").unlink()
    (modules / "config").unlink()
    assert file_load(root, RELEASE).available is None


# -- the load mode ---------------------------------------------------------------------------


def test_kexec_load_needs_no_proc_files_on_powerpc(ppc: Path) -> None:
    assert userspace_load_blocker(ppc, ()) is None
    assert userspace_load_blocker(ppc) == "/proc/kcore cannot be opened (No such file or " \
        "directory)"
    (ppc / "sys/kernel/security").mkdir(parents=True)
    (ppc / "sys/kernel/security/lockdown").write_text("none [integrity] confidentiality\n")
    assert "locked down" in str(userspace_load_blocker(ppc, ()))


def test_auto_loads_with_hotplug_where_the_kernel_has_no_kexec_file_load(
    ppc: Path, image: KexecImage,
) -> None:
    backend, runner = ppc64le_backend(ppc, image)
    assert backend.modes() == ["hotplug", "plain"]
    backend.reload()
    assert runner.calls == [["kexec", "-c", "-p", "--hotplug", str(image.kernel),
                             f"--initrd={image.initrd}", f"--append={image.append}"]]
    assert "kexec_file_load: no (CONFIG_KEXEC_FILE is not set" in backend.describe()
    # Without crash_elfcorehdr_size (before 6.10 on powerpc) only plain -c is left.
    (ppc / "sys/kernel/crash_elfcorehdr_size").unlink()
    assert ppc64le_backend(ppc, image)[0].modes() == ["plain"]


def test_auto_on_powerpc_with_kexec_file_load_tries_kexec_file_load_first(
    ppc: Path, image: KexecImage,
) -> None:
    # A kernel built with CONFIG_KEXEC_FILE (Fedora's, say): kexec_file_load first, whose
    # header the kernel builds from memblock; kexec-tools' kexec_load header would lack
    # the RAM hot-added since boot (above linux,memory-limit).
    backend, _ = ppc64le_backend(ppc, image, file_load=FileLoad(True, "/boot/config-x"))
    assert backend.modes() == ["file", "hotplug", "plain"]
    x86 = KexecBackend(image, "auto", Sysfs(ppc), FakeKexec(Sysfs(ppc)), 5)
    assert x86.modes() == ["file"]  # x86's facts on this tree: kcore missing


def test_an_asked_s_on_a_kernel_without_kexec_file_load_loads_with_hotplug(
    ppc: Path, image: KexecImage,
) -> None:
    asked = KexecImage(image.kernel, image.initrd, image.append, kexec_args=parse("-s"),
                       kexec_args_from=Origin.setting("/etc/default/kdump-tools",
                                                      "KDUMP_KEXEC_ARGS"))
    backend, runner = ppc64le_backend(ppc, asked)
    modes, note = backend.choice(asked)
    assert modes == ["hotplug", "plain"]
    assert note.startswith("/etc/default/kdump-tools (KDUMP_KEXEC_ARGS) asks for -s "
                           "(kexec_file_load), which this kernel lacks")
    assert note.endswith("loading with -c --hotplug")
    backend.reload()
    assert runner.calls[0][:4] == ["kexec", "-c", "-p", "--hotplug"]


def test_forced_file_mode_is_refused_before_kexec_runs_on_a_kernel_without_it(
    ppc: Path, image: KexecImage,
) -> None:
    backend, runner = ppc64le_backend(ppc, image, mode="file")
    with pytest.raises(BackendError) as raised:
        backend.reload()
    assert raised.value.permanent and "kexec_file_load, which this kernel lacks" in str(
        raised.value)
    assert runner.calls == []
    forced, runner = ppc64le_backend(ppc, image, mode="hotplug")
    forced.reload()  # no x86 check stands in the way
    assert runner.calls[0][:4] == ["kexec", "-c", "-p", "--hotplug"]


# -- status ----------------------------------------------------------------------------------


def test_status_on_ppc64le_says_what_it_knows(ppc: Path, image: KexecImage) -> None:
    backend, _ = ppc64le_backend(ppc, image)
    sysfs = Sysfs(ppc)
    facts = arch.facts("ppc64le")
    status = gather(sysfs, backend, arch=facts,
                    reservation=read_crash_reservation(ppc, facts.reservation_in))
    text = status.as_text()
    assert "reserved 512 MiB" in text
    assert "ppc64le: the crash reservation is read from the device tree" in text
    assert "ppc64le: fadump (firmware-assisted dump) is left to the distribution" in text
    assert "kexec_file_load: no" in text
    data = status.as_dict()
    assert data["kexec_crash_size"] == 512 * MIB and data["crash_memory_reserved"]
    assert data["architecture"]["machine"] == "ppc64le"
    assert data["architecture"]["notes"] == list(facts.lines())


def test_status_without_a_reservation_names_the_device_tree(tmp_path: Path,
                                                            image: KexecImage) -> None:
    root = pseries(tmp_path / "none", reserved=False)
    (root / "sys/kernel/kexec_crash_loaded").write_text("0\n")
    backend, _ = ppc64le_backend(root, image)
    facts = arch.facts("ppc64le")
    text = gather(Sysfs(root), backend, arch=facts,
                  reservation=read_crash_reservation(root, facts.reservation_in)).as_text()
    assert NO_RESERVATION_DT in text and NO_RESERVATION not in text
    x86 = gather(Sysfs(root), backend, arch=arch.facts("x86_64")).as_text()
    assert NO_RESERVATION in x86 and "x86_64:" not in x86  # x86 prints no arch lines


def test_memory_online_counts_in_the_kernels_page_size(ppc: Path) -> None:
    (ppc / "proc/zoneinfo").write_text("Node 0, zone   Normal\n  present  32768\n")
    assert read_hardware(ppc, page_bytes=65536).summary().endswith("2048 MiB online")
    assert read_hardware(ppc, page_bytes=4096).summary().endswith("128 MiB online")
    assert read_hardware(ppc, 65536).fingerprint == read_hardware(ppc, 4096).fingerprint


def test_each_architecture_is_named_and_says_exactly_what_differs() -> None:
    # `kdumpd status` prints these lines as they are: the whole text is the interface.
    assert [(a.machine, a.family) for a in map(arch.facts, (
        "x86_64", "i686", "ppc64le", "s390x", "aarch64"))] == [
        ("x86_64", "x86"), ("i686", "x86"), ("ppc64le", "powerpc"), ("s390x", "s390"),
        ("aarch64", "aarch64")]
    assert arch.facts("ppc64le").lines() == (
        "the crash reservation is read from the device tree "
        "(/proc/device-tree/chosen/linux,crashkernel-base and -size)",
        "kexec_load needs no /proc/kcore, /proc/kallsyms or /proc/iomem "
        "(kexec-tools reads the device tree)",
        "CPU hotplug sends only online/offline uevents (every possible CPU is in sysfs "
        "from boot)",
        "a panic on a CPU a plain -c image does not know loses the whole dump: such an "
        "image is replaced after any CPU hotplug",
        "kexec-tools leaves RAM above the device tree's linux,memory-limit (the boot "
        "RAM's end) out of a kexec_load header: memory hot-added since boot is in the "
        "header only once the kernel has updated it (crash_hotplug=1) at a memory event "
        "after the load",
        "fadump (firmware-assisted dump) is left to the distribution's kdump and rules",
    )
    assert arch.facts("ppc64").lines()[-1] == (
        "the loaded header is not read back on ppc64 (kdumpd verify: x86_64 and ppc64le "
        "only)")
    assert arch.facts("s390x").lines() == (
        "the dump kernel builds its ELF core header itself: no reload is ever needed",
        "the loaded header is not read back on s390x (kdumpd verify: x86_64 and ppc64le "
        "only)",
    )
    assert arch.facts("i686").lines() == (
        "the loaded header is not read back on i686 (kdumpd verify: x86_64 and ppc64le "
        "only)",)


def test_ppc64le_every_reload_over_cpus_is_beyond_what_the_header_shows() -> None:
    """A CPU hot-added during a load (missed) or a crash_hotplug that cannot be read: the
    dump kernel's device tree may lack the CPU, which a current header cannot show."""
    kept = Snapshot(Value("1"), {"cpu": Value("1"), "memory": Value("1")})
    missed = decide({"cpu", "memory"}, kept, missed="a load held the lock", arch="ppc64le")
    assert missed.reload and missed.beyond_header
    memory_only = decide({"memory"}, kept, missed="a load held the lock", arch="ppc64le")
    assert memory_only.reload and not memory_only.beyond_header
    odd = Snapshot(Value("1"), {"cpu": Value("", "error"), "memory": Value("1")})
    unread = decide({"cpu"}, odd, arch="ppc64le")
    assert unread.reload and unread.beyond_header
    on_x86 = decide({"cpu", "memory"}, kept, missed="a load held the lock", arch="x86_64")
    assert on_x86.reload and not on_x86.beyond_header
