from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from kdumpd import app, fakesysfs
from kdumpd.backends import BackendError
from kdumpd.backends.fake import FakeBackend
from kdumpd.backends.kexec import KexecBackend, KexecImage, default_append
from kdumpd.backends.runner import run
from kdumpd.config import Config, ReloadConfig
from kdumpd.sysfs import Sysfs


class FakeKexec:
    """A command runner standing in for kexec-tools: records argv, fails on request,
    and updates the fake sysfs like the kernel would."""

    def __init__(self, sysfs: Sysfs, fail_flags: Sequence[str] = ()) -> None:
        self.sysfs = sysfs
        self.fail_flags = set(fail_flags)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> str:
        self.calls.append(list(argv))
        assert timeout > 0
        if "-u" in argv:
            self.sysfs.path("kernel/kexec_crash_loaded").write_text("0\n")
            return ""
        if self.fail_flags & set(argv):
            raise BackendError(f"{' '.join(argv)}: exit status 1: Operation not permitted")
        self.sysfs.path("kernel/kexec_crash_loaded").write_text("1\n")
        return ""


@pytest.fixture
def image(tmp_path: Path) -> KexecImage:
    kernel = tmp_path / "vmlinuz"
    initrd = tmp_path / "initrd.img"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    return KexecImage(kernel, initrd, "root=/dev/vda1 irqpoll nr_cpus=1 reset_devices")


def test_auto_prefers_file_load(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    KexecBackend(image, "auto", sysfs, runner, 5).reload()
    assert runner.calls == [
        ["kexec", "-p", "-u"],
        ["kexec", "-s", "-p", str(image.kernel), f"--initrd={image.initrd}",
         f"--append={image.append}"],
    ]


def test_auto_falls_back_to_hotplug_then_remembers_it(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_flags=["-s"])
    backend = KexecBackend(image, "auto", sysfs, runner, 5)
    backend.reload()
    assert [c[:4] for c in runner.calls] == [
        ["kexec", "-p", "-u"], ["kexec", "-s", "-p", str(image.kernel)],
        ["kexec", "-c", "-p", "--hotplug"],
    ]
    runner.calls.clear()
    backend.reload()
    assert [c[:4] for c in runner.calls] == [
        ["kexec", "-p", "-u"], ["kexec", "-c", "-p", "--hotplug"],
    ]


def test_auto_without_elfcorehdr_size_falls_back_to_plain(
    tmp_path: Path, image: KexecImage
) -> None:
    root = fakesysfs.build(tmp_path / "r", elfcorehdr_size=None)
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_flags=["-s"])
    KexecBackend(image, "auto", sysfs, runner, 5).reload()
    assert runner.calls[-1][:3] == ["kexec", "-c", "-p"]
    assert "--hotplug" not in runner.calls[-1]


@pytest.mark.parametrize(("mode", "flags"), [("file", ["-s", "-p"]), ("plain", ["-c", "-p"]),
                                             ("hotplug", ["-c", "-p", "--hotplug"])])
def test_forced_modes(root: Path, image: KexecImage, mode: str, flags: list[str]) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    KexecBackend(image, mode, sysfs, runner, 5).reload()
    assert runner.calls[1][1:1 + len(flags)] == flags


def sandbox_proc(root: Path) -> None:
    """/proc as seen without CAP_SYS_ADMIN/CAP_SYS_RAWIO (the shipped unit)."""
    (root / "proc/kcore").unlink()
    (root / "proc/iomem").write_text("00000000-00000000 : Reserved\n"
                                     "00000000-00000000 : System RAM\n")


def test_auto_does_not_count_on_kexec_load_where_it_cannot_work(
    root: Path, image: KexecImage
) -> None:
    sandbox_proc(root)
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_flags=["-s"])
    backend = KexecBackend(image, "auto", sysfs, runner, 5)
    assert backend.modes() == ["file"]
    with pytest.raises(BackendError, match="file load"):
        backend.reload()
    assert all("-c" not in call for call in runner.calls)


@pytest.mark.parametrize("mode", ["plain", "hotplug"])
def test_forced_kexec_load_mode_is_refused_before_unloading_where_it_cannot_work(
    root: Path, image: KexecImage, mode: str
) -> None:
    sandbox_proc(root)
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    with pytest.raises(BackendError, match=r"/proc/kcore cannot be opened") as caught:
        KexecBackend(image, mode, sysfs, runner, 5).reload()
    assert runner.calls == []
    assert not caught.value.unloaded
    assert "crash kernel left as it was" in str(caught.value)


def test_hidden_kallsyms_addresses_block_kexec_load(root: Path) -> None:
    from kdumpd.backends.kexec import userspace_load_blocker

    assert userspace_load_blocker(root / "proc") is None
    (root / "proc/kallsyms").write_text("0000000000000000 T _stext\n")
    assert userspace_load_blocker(root / "proc") == "/proc/kallsyms shows no addresses"


def test_unreadable_kernel_is_refused_before_unloading(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    missing = KexecImage(image.kernel.with_name("gone"), image.initrd, image.append)
    with pytest.raises(BackendError, match="kernel .*gone is not readable") as caught:
        KexecBackend(missing, "auto", sysfs, runner, 5).reload()
    assert runner.calls == []
    assert not caught.value.unloaded
    assert sysfs.crash_loaded().text == "1"


def test_failed_load_reports_the_crash_kernel_unloaded(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_flags=["-s", "-c"])
    with pytest.raises(BackendError) as caught:
        KexecBackend(image, "auto", sysfs, runner, 5).reload()
    assert caught.value.unloaded
    assert "file load" in str(caught.value) and "plain load" in str(caught.value)


def test_load_that_leaves_nothing_loaded_is_a_failure(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)

    def lying_runner(argv: Sequence[str], timeout: float) -> str:
        sysfs.path("kernel/kexec_crash_loaded").write_text("0\n")
        return ""

    with pytest.raises(BackendError, match="kexec_crash_loaded reads '0'"):
        KexecBackend(image, "file", sysfs, lying_runner, 5).reload()


def test_default_append_drops_what_must_not_be_inherited() -> None:
    cmdline = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro crashkernel=256M nr_cpus=8 quiet"
    assert default_append(cmdline) == "root=/dev/sda1 ro quiet irqpoll nr_cpus=1 reset_devices"


def test_runner_runs_argv_and_reports_failures_in_one_line() -> None:
    assert run([sys.executable, "-c", "print('hi')"], 10) == "hi\n"
    with pytest.raises(BackendError, match=r"exit status 3: boom$"):
        run([sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"], 10)
    noisy = "import sys; sys.stderr.write('a\\nwhy: denied\\n\\nCannot load\\n'); sys.exit(255)"
    with pytest.raises(BackendError, match=r"exit status 255: a / why: denied / Cannot load$"):
        run([sys.executable, "-c", noisy], 10)
    with pytest.raises(BackendError, match="command not found"):
        run(["/nonexistent/kexec"], 10)


def test_runner_kills_a_hanging_command() -> None:
    with pytest.raises(BackendError, match=r"timed out after 0.2 s \(killed\)"):
        run([sys.executable, "-c", "import time; time.sleep(30)"], 0.2)


def test_fake_backend_logs_and_keeps_sysfs_like_the_kernel(root: Path) -> None:
    sysfs = Sysfs(root)
    log = root / "fake.log"
    times = iter([100.0, 101.0])
    FakeBackend(log, sysfs, hotplug_after_load=True, wall=lambda: next(times)).reload()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["op"], x["t"], x["ok"]) for x in lines] == [("unload", 100.0, True),
                                                            ("load", 101.0, True)]
    assert sysfs.crash_loaded().text == "1"
    assert sysfs.snapshot(["cpu", "memory"]).crash_hotplug["memory"].text == "1"


def test_fake_backend_fails_the_first_loads(root: Path) -> None:
    sysfs = Sysfs(root)
    backend = FakeBackend(root / "fake.log", sysfs, fail=1)
    with pytest.raises(BackendError):
        backend.reload()
    assert sysfs.crash_loaded().text == "0"
    backend.reload()
    assert sysfs.crash_loaded().text == "1"


@pytest.mark.parametrize(
    ("installed", "expected"),
    [({"kdumpctl", "kdump-config"}, "kdumpctl"), ({"kdump-config"}, "kdump-config"),
     (set(), "kexec")],
)
def test_auto_backend_picks_by_what_is_installed(installed: set[str], expected: str) -> None:
    def which(name: str) -> str | None:
        return f"/usr/sbin/{name}" if name in installed else None

    assert app.backend_name(Config(), which) == expected


def test_tool_backends_run_the_distribution_command(root: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str], timeout: float) -> str:
        calls.append(list(argv))
        return ""

    cfg = Config(reload=ReloadConfig(backend="kdump-config", timeout_s=7))
    backend = app.make_backend(cfg, Sysfs(root), runner=runner)
    backend.reload()
    assert calls == [["kdump-config", "reload"]]
