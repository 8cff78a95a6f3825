from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from kdumpd import app
from kdumpd.backends import BackendError
from kdumpd.backends.fake import FakeBackend
from kdumpd.backends.kexec import (
    DEFAULT_CMDLINE_SIZE,
    KERNEL_ADDS,
    KexecBackend,
    KexecImage,
    cmdline_size,
)
from kdumpd.backends.runner import run
from kdumpd.config import Config, ReloadConfig
from kdumpd.fakes import fakesysfs
from kdumpd.sysfs import Sysfs


def resolve_fd(word: str) -> str:
    """``/proc/self/fd/N`` (alone or after ``--initrd=``) as the file it is open on."""
    key, sep, value = word.rpartition("=") if word.startswith("--") else ("", "", word)
    if value.startswith("/proc/self/fd/"):
        value = os.readlink(value)
    return f"{key}{sep}{value}"


class FakeKexec:
    """A command runner standing in for kexec-tools over the kernel: records argv, and
    like the kernel replaces the loaded image in the load syscall. ``fail_flags`` fail
    before the syscall (the old image stays), ``fail_inside`` inside it (the kernel freed
    the old image first)."""

    def __init__(self, sysfs: Sysfs, fail_flags: Sequence[str] = (),
                 fail_inside: Sequence[str] = ()) -> None:
        self.sysfs = sysfs
        self.fail_flags = set(fail_flags)
        self.fail_inside = set(fail_inside)
        self.calls: list[list[str]] = []
        self.timeouts: list[float] = []

    def __call__(self, argv: Sequence[str], timeout: float, *,
                 pass_fds: Sequence[int] = ()) -> str:
        # kexec reads the files kdumpd opened and vetted, by /proc/self/fd/N: the fds must
        # be passed, and every such path must be one of them. Recorded as the real paths.
        named = [int(a.rpartition("/")[2]) for a in (w.partition("=")[2] or w for w in argv)
                 if a.startswith("/proc/self/fd/")]
        assert named and sorted(named) == sorted(pass_fds), (argv, pass_fds)
        self.calls.append([resolve_fd(word) for word in argv])
        self.timeouts.append(timeout)
        assert timeout > 0
        if self.fail_flags & set(argv):
            raise BackendError(f"{' '.join(argv)}: exit status 1: Operation not permitted")
        if self.fail_inside & set(argv):
            self.sysfs.path("kernel/kexec_crash_loaded").write_text("0\n")
            raise BackendError(f"{' '.join(argv)}: exit status 1: Cannot load")
        self.sysfs.path("kernel/kexec_crash_loaded").write_text("1\n")
        return ""


@pytest.fixture
def image(tmp_path: Path) -> KexecImage:
    kernel = tmp_path / "vmlinuz"
    initrd = tmp_path / "initrd.img"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    return KexecImage(kernel, initrd, "root=/dev/vda1 irqpoll nr_cpus=1 reset_devices")


def test_auto_loads_hotplug_over_the_loaded_image_where_kexec_load_works(
    root: Path, image: KexecImage
) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    KexecBackend(image, "auto", sysfs, runner, 5).reload()
    assert runner.calls == [
        ["kexec", "-c", "-p", "--hotplug", str(image.kernel), f"--initrd={image.initrd}",
         f"--append={image.append}"],
    ]


def test_auto_falls_back_to_file_then_remembers_it(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_flags=["--hotplug"])
    backend = KexecBackend(image, "auto", sysfs, runner, 5)
    backend.reload()
    assert [c[:4] for c in runner.calls] == [
        ["kexec", "-c", "-p", "--hotplug"], ["kexec", "-s", "-p", str(image.kernel)],
    ]
    assert sysfs.crash_loaded().text == "1"
    runner.calls.clear()
    backend.reload()
    assert [c[:3] for c in runner.calls] == [["kexec", "-s", "-p"]]


def test_no_reload_ever_runs_a_separate_unload(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_flags=["-c", "-s"])
    with pytest.raises(BackendError):
        KexecBackend(image, "auto", sysfs, runner, 5).reload()
    assert runner.calls and all("-u" not in call for call in runner.calls)
    assert sysfs.crash_loaded().text == "1"  # every failure came before the syscall


def test_auto_without_elfcorehdr_size_falls_back_to_plain(
    tmp_path: Path, image: KexecImage
) -> None:
    root = fakesysfs.build(tmp_path / "r", elfcorehdr_size=None)
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_flags=["-s"])
    backend = KexecBackend(image, "auto", sysfs, runner, 5)
    assert backend.modes() == ["file", "plain"]
    backend.reload()
    assert runner.calls[-1][:3] == ["kexec", "-c", "-p"]
    assert "--hotplug" not in runner.calls[-1]


@pytest.mark.parametrize(("mode", "flags"), [("file", ["-s", "-p"]), ("plain", ["-c", "-p"]),
                                             ("hotplug", ["-c", "-p", "--hotplug"])])
def test_forced_modes(root: Path, image: KexecImage, mode: str, flags: list[str]) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    KexecBackend(image, mode, sysfs, runner, 5).reload()
    assert runner.calls[0][1:1 + len(flags)] == flags


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


def test_lockdown_means_file_load_only(root: Path, image: KexecImage) -> None:
    lockdown = root / "sys/kernel/security/lockdown"
    lockdown.parent.mkdir(parents=True)
    lockdown.write_text("none [integrity] confidentiality\n")
    sysfs = Sysfs(root)
    assert KexecBackend(image, "auto", sysfs, FakeKexec(sysfs), 5).modes() == ["file"]
    with pytest.raises(BackendError, match=r"locked down \(none \[integrity\]") as caught:
        KexecBackend(image, "hotplug", sysfs, FakeKexec(sysfs), 5).reload()
    assert caught.value.permanent
    lockdown.write_text("[none] integrity confidentiality\n")
    assert KexecBackend(image, "auto", sysfs, FakeKexec(sysfs), 5).modes()[0] == "hotplug"


@pytest.mark.parametrize("mode", ["plain", "hotplug"])
def test_forced_kexec_load_mode_is_refused_before_the_syscall_where_it_cannot_work(
    root: Path, image: KexecImage, mode: str
) -> None:
    sandbox_proc(root)
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    with pytest.raises(BackendError, match=r"/proc/kcore cannot be opened") as caught:
        KexecBackend(image, mode, sysfs, runner, 5).reload()
    assert runner.calls == []
    assert caught.value.permanent
    assert "crash kernel left as it was" in str(caught.value)


def test_hidden_kallsyms_addresses_block_kexec_load(root: Path) -> None:
    from kdumpd.backends.kexec import userspace_load_blocker

    assert userspace_load_blocker(root) is None
    (root / "proc/kallsyms").write_text("0000000000000000 T _stext\n")
    assert userspace_load_blocker(root) == "/proc/kallsyms shows no addresses"


def test_unreadable_kernel_is_refused_before_the_syscall(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    missing = KexecImage(image.kernel.with_name("gone"), image.initrd, image.append)
    with pytest.raises(BackendError, match="kernel .*gone is not readable"):
        KexecBackend(missing, "auto", sysfs, runner, 5).reload()
    assert runner.calls == []
    assert sysfs.crash_loaded().text == "1"


def bzimage(path: Path, cmdline_size: int, version: int = 0x20F) -> Path:
    header = bytearray(0x400)
    header[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", header, 0x206, version)
    struct.pack_into("<I", header, 0x238, cmdline_size)
    path.write_bytes(bytes(header))
    return path


def test_cmdline_size_comes_from_the_bzimage_header(tmp_path: Path) -> None:
    assert cmdline_size(bzimage(tmp_path / "a", 2047)) == 2047
    assert cmdline_size(bzimage(tmp_path / "b", 4095)) == 4095
    assert cmdline_size(bzimage(tmp_path / "c", 4095, version=0x205)) == 255
    (tmp_path / "d").write_bytes(b"\x7fELF not a bzImage")
    assert cmdline_size(tmp_path / "d") == DEFAULT_CMDLINE_SIZE
    assert cmdline_size(tmp_path / "missing") == DEFAULT_CMDLINE_SIZE


@pytest.mark.parametrize("mode", ["auto", "file", "hotplug"])
def test_a_command_line_too_long_for_the_kernel_is_refused_before_the_syscall(
    root: Path, image: KexecImage, mode: str
) -> None:
    kernel = bzimage(image.kernel, 2047)
    fits = "x" * (2047 - KERNEL_ADDS - 1)
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    KexecBackend(KexecImage(kernel, None, fits), mode, sysfs, runner, 5).reload()
    assert len(runner.calls) == 1
    runner.calls.clear()
    with pytest.raises(BackendError, match=r"reload.append: .* 1987 bytes, .* at most 1986"
                       ) as caught:
        KexecBackend(KexecImage(kernel, None, fits + "y"), mode, sysfs, runner, 5).reload()
    assert caught.value.permanent
    assert runner.calls == []
    assert sysfs.crash_loaded().text == "1"


def test_an_untrusted_kernel_is_refused_at_use(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    backend = KexecBackend(image, "file", sysfs, runner, 5, euid=0)
    if os.geteuid() != 0:
        pytest.skip("needs root to give the kernel file away")
    backend.reload()  # root's file in root's directory: fine
    os.chown(image.kernel, 1000, 1000)
    with pytest.raises(BackendError, match=r"refusing the kernel: .*owned by uid 1000") as caught:
        backend.reload()
    assert caught.value.permanent
    assert backend.probe() is not None and "uid 1000" in str(backend.probe())
    os.chown(image.kernel, 0, 0)
    link = image.kernel.with_name("link")
    link.symlink_to(image.kernel)
    image.kernel.chmod(0o666)  # reached through a root-owned symlink: still refused
    linked = KexecBackend(KexecImage(link, None, "x"), "file", sysfs, runner, 5, euid=0)
    assert "world-writable" in str(linked.probe())


def test_a_failure_inside_the_syscall_leaves_no_crash_kernel(
    root: Path, image: KexecImage
) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs, fail_inside=["-s"], fail_flags=["-c"])
    with pytest.raises(BackendError) as caught:
        KexecBackend(image, "auto", sysfs, runner, 5).reload()
    assert "file load" in str(caught.value) and "plain load" in str(caught.value)
    assert sysfs.crash_loaded().text == "0"


def test_modes_share_one_timeout(root: Path, image: KexecImage) -> None:
    now = [0.0]

    class SlowKexec(FakeKexec):
        def __call__(self, argv: Sequence[str], timeout: float, *,
                     pass_fds: Sequence[int] = ()) -> str:
            now[0] += 3.0
            return super().__call__(argv, timeout, pass_fds=pass_fds)

    sysfs = Sysfs(root)
    runner = SlowKexec(sysfs, fail_flags=["--hotplug", "-s"])
    with pytest.raises(BackendError, match="plain load: not tried, reload.timeout_s used up"):
        KexecBackend(image, "auto", sysfs, runner, 5, clock=lambda: now[0]).reload()
    assert runner.timeouts == [5.0, 2.0]


def test_probe_says_why_without_running_kexec(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    assert KexecBackend(image, "auto", sysfs, runner, 5).probe() is None
    missing = KexecImage(image.kernel.with_name("gone"), None, "x")
    assert "not readable" in str(KexecBackend(missing, "auto", sysfs, runner, 5).probe())
    assert runner.calls == []


def test_load_that_leaves_nothing_loaded_is_a_failure(root: Path, image: KexecImage) -> None:
    sysfs = Sysfs(root)

    def lying_runner(argv: Sequence[str], timeout: float, *,
                     pass_fds: Sequence[int] = ()) -> str:
        sysfs.path("kernel/kexec_crash_loaded").write_text("0\n")
        return ""

    with pytest.raises(BackendError, match="kexec_crash_loaded reads '0'"):
        KexecBackend(image, "file", sysfs, lying_runner, 5).reload()




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


def test_fake_backend_replaces_the_image_in_one_load_like_the_kernel(root: Path) -> None:
    sysfs = Sysfs(root)
    log = root / "fake.log"
    inside: list[tuple[str, str]] = []

    def sleep(_seconds: float) -> None:  # runs inside the "syscall"
        snapshot = sysfs.snapshot(["memory"])
        inside.append((snapshot.crash_loaded.text, snapshot.crash_hotplug["memory"].text))

    FakeBackend(log, sysfs, delay_ms=5, hotplug_after_load=True, sleep=sleep,
                wall=lambda: 100.0).reload()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["op"], x["t"], x["ok"]) for x in lines] == [("load", 100.0, True)]
    assert inside == [("0", "0")]
    assert sysfs.crash_loaded().text == "1"
    assert sysfs.snapshot(["cpu", "memory"]).crash_hotplug["memory"].text == "1"
    FakeBackend(log, sysfs).reload()  # a load that is not hotplug-capable: 0 again
    assert sysfs.snapshot(["memory"]).crash_hotplug["memory"].text == "0"


def test_fake_backend_fails_the_first_loads(root: Path) -> None:
    sysfs = Sysfs(root)
    backend = FakeBackend(root / "fake.log", sysfs, fail=1)
    with pytest.raises(BackendError):
        backend.reload()
    assert sysfs.crash_loaded().text == "0"
    backend.reload()
    assert sysfs.crash_loaded().text == "1"


def test_auto_backend_is_kdumpds_own_load_whatever_is_installed() -> None:
    assert app.backend_name(Config()) == "kexec"
    assert app.backend_name(Config(reload=ReloadConfig(backend="kdumpctl"))) == "kdumpctl"


def test_tool_backends_run_the_distribution_command(root: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str], timeout: float, *, pass_fds: Sequence[int] = ()) -> str:
        calls.append(list(argv))
        return ""

    cfg = Config(reload=ReloadConfig(backend="kdump-config", timeout_s=7))
    backend = app.make_backend(cfg, Sysfs(root), runner=runner)
    backend.reload()
    assert calls == [["kdump-config", "reload"]]


def test_tool_backends_probe_for_their_command(root: Path) -> None:
    from kdumpd.backends.tools import ToolBackend

    def runner(argv: Sequence[str], timeout: float, *, pass_fds: Sequence[int] = ()) -> str:
        return ""

    assert ToolBackend("x", ("kdumpctl", "reload"), runner, 1, which=lambda _: None).probe() \
        == "kdumpctl: command not found"
    assert ToolBackend("x", ("kdumpctl", "reload"), runner, 1,
                       which=lambda n: f"/usr/bin/{n}").probe() is None


def test_auto_tries_what_worked_first_but_falls_back_when_it_stops_working(
    root: Path, image: KexecImage
) -> None:
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    backend = KexecBackend(image, "auto", sysfs, runner, 5)
    backend.reload()
    assert backend.modes() == ["hotplug", "file", "plain"]
    runner.fail_flags = {"--hotplug"}
    backend.reload()  # hotplug refused now: file
    assert backend.modes() == ["file", "hotplug", "plain"]
    lockdown = root / "sys/kernel/security/lockdown"
    lockdown.parent.mkdir(parents=True)
    lockdown.write_text("none [integrity] confidentiality\n")
    assert backend.modes() == ["file"]


def test_kexec_boots_the_file_that_was_checked_not_what_the_name_points_to_later(
    root: Path, image: KexecImage
) -> None:
    """The attack of issue 15: the name is re-pointed after the check. kexec reads the
    descriptor kdumpd opened and vetted, so it boots the checked file."""
    sysfs = Sysfs(root)
    seen: list[bytes] = []

    def swapping_kexec(argv: Sequence[str], timeout: float, *,
                       pass_fds: Sequence[int] = ()) -> str:
        image.kernel.write_bytes(b"someone else's kernel")  # the name now says otherwise
        kernel = next(word for word in argv if word.startswith("/proc/self/fd/"))
        seen.append(Path(kernel).read_bytes())
        sysfs.path("kernel/kexec_crash_loaded").write_text("1\n")
        return ""

    image.kernel.write_bytes(b"kernel")
    replacement = image.kernel.with_name("evil")
    replacement.write_bytes(b"evil")

    def replace_then_load(argv: Sequence[str], timeout: float, *,
                          pass_fds: Sequence[int] = ()) -> str:
        os.replace(replacement, image.kernel)  # a new inode under the checked name
        return swapping_kexec(argv, timeout, pass_fds=pass_fds)

    KexecBackend(image, "file", sysfs, replace_then_load, 5).reload()
    assert seen == [b"kernel"]


def test_the_opened_kernel_is_vetted_on_its_descriptor(tmp_path: Path) -> None:
    from kdumpd import security

    path = tmp_path / "vmlinuz"
    path.write_bytes(b"k")
    os.chmod(path, 0o644)
    uid = os.geteuid()  # a package build may run the tests as a user: then it owns the file
    with path.open("rb") as handle:
        assert security.fd_problem(handle.fileno(), euid=0) == (
            None if uid == 0 else f"owned by uid {uid}, not root")
        assert security.fd_problem(handle.fileno(), euid=1000) is None  # only root checks
        if uid == 0:
            os.chmod(path, 0o664)
            assert "group- or world-writable" in str(security.fd_problem(handle.fileno(),
                                                                          euid=0))
            os.chmod(path, 0o644)
            os.chown(path, 1000, 1000)
            assert "owned by uid 1000" in str(security.fd_problem(handle.fileno(), euid=0))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert security.fd_problem(fd, euid=0) == "not a regular file"
    finally:
        os.close(fd)


def test_a_fifo_as_the_kernel_is_refused_without_blocking(root: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "vmlinuz"
    os.mkfifo(fifo)
    sysfs = Sysfs(root)
    runner = FakeKexec(sysfs)
    with pytest.raises(BackendError, match="not a regular file"):
        KexecBackend(KexecImage(fifo, None, "quiet"), "file", sysfs, runner, 5).reload()
    assert runner.calls == []


def test_any_error_of_the_image_reader_is_a_failed_reload_not_a_dead_daemon(
    root: Path,
) -> None:
    def broken() -> KexecImage:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    sysfs = Sysfs(root)
    backend = KexecBackend(broken, "auto", sysfs, FakeKexec(sysfs), 5)
    with pytest.raises(BackendError, match=r"ValueError: Exceeds the limit") as caught:
        backend.reload()
    assert caught.value.permanent
    assert backend.describe().startswith("kexec load (") and "an unknown kernel" in \
        backend.describe()
    assert "ValueError" in (backend.probe() or "")


def test_a_fifo_where_the_kexec_load_probes_read_does_not_hang(root: Path) -> None:
    from kdumpd.backends.kexec import userspace_load_blocker

    lockdown = root / "sys/kernel/security/lockdown"
    lockdown.parent.mkdir(parents=True)
    os.mkfifo(lockdown)
    (root / "proc/kcore").unlink()
    os.mkfifo(root / "proc/kcore")
    assert userspace_load_blocker(root) == "/proc/kcore cannot be opened (not a regular file)"


def test_the_journal_names_the_file_a_link_pointed_at_when_loaded(
    root: Path, image: KexecImage, caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    link = image.kernel.with_name("vmlinuz-link")
    link.symlink_to(image.kernel)
    linked = KexecImage(link, image.initrd, image.append)
    sysfs = Sysfs(root)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        KexecBackend(linked, "auto", sysfs, FakeKexec(sysfs), 5).reload()
    assert f"the crash kernel's files: {link} is {image.kernel}" in caplog.text
    assert "initrd" not in caplog.text.split("the crash kernel's files:")[1]
