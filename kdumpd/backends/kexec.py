"""Reload with kexec-tools directly: ``kexec -p -u``, then a load.

Load modes: ``file`` (kexec_file_load, ``-s``), ``hotplug`` (kexec_load with
``--hotplug``, kexec-tools >= 2.0.28, needs /sys/kernel/crash_elfcorehdr_size) and
``plain`` (kexec_load, ``-c``). ``auto`` tries them in that order and remembers the first
that worked, so the kernel takes over future elfcorehdr updates where it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdumpd.backends import BackendError
from kdumpd.backends.runner import Runner
from kdumpd.sysfs import OK, Sysfs

MODE_FLAGS = {
    "file": ("-s", "-p"),
    "hotplug": ("-c", "-p", "--hotplug"),
    "plain": ("-c", "-p"),
}


@dataclass(frozen=True)
class KexecImage:
    kernel: Path
    initrd: Path | None
    append: str


class KexecBackend:
    name = "kexec"

    def __init__(
        self, image: KexecImage, mode: str, sysfs: Sysfs, runner: Runner, timeout_s: float
    ) -> None:
        self.image = image
        self.mode = mode
        self._sysfs = sysfs
        self._run = runner
        self._timeout_s = timeout_s
        self._worked: str | None = None

    def modes(self) -> list[str]:
        """The load modes to try, in order."""
        if self.mode != "auto":
            return [self.mode]
        if self._worked:
            return [self._worked]
        if userspace_load_blocker(self._sysfs.root / "proc") is not None:
            return ["file"]  # kexec_load cannot work here: don't count on it after unloading
        hotplug_ok = self._sysfs.read("kernel/crash_elfcorehdr_size").kind == OK
        return ["file", "hotplug", "plain"] if hotplug_ok else ["file", "plain"]

    def load_argv(self, mode: str) -> list[str]:
        argv = ["kexec", *MODE_FLAGS[mode], str(self.image.kernel)]
        if self.image.initrd is not None:
            argv.append(f"--initrd={self.image.initrd}")
        argv.append(f"--append={self.image.append}")
        return argv

    def check_image(self) -> None:
        """Never unload what cannot be loaded back: the files must be readable now."""
        for label, path in (("kernel", self.image.kernel), ("initrd", self.image.initrd)):
            if path is None:
                continue
            try:
                with path.open("rb") as handle:
                    handle.read(1)
            except OSError as error:
                raise BackendError(
                    f"{label} {path} is not readable ({error.strerror}); "
                    "crash kernel left as it was"
                ) from None

    def check_userspace_load(self) -> None:
        """A forced kexec_load mode must be able to work before we unload anything."""
        if self.mode not in ("hotplug", "plain"):
            return
        blocker = userspace_load_blocker(self._sysfs.root / "proc")
        if blocker is not None:
            raise BackendError(
                f'load mode "{self.mode}" uses kexec_load, which cannot work here: {blocker} '
                "(see the kexec-load drop-in in the README); crash kernel left as it was",
                permanent=True,
            )

    def reload(self) -> None:
        self.check_image()
        self.check_userspace_load()
        self._run(["kexec", "-p", "-u"], self._timeout_s)
        errors = []
        for mode in self.modes():
            try:
                self._run(self.load_argv(mode), self._timeout_s)
            except BackendError as error:
                errors.append(f"{mode} load: {error}")
                continue
            loaded = self._sysfs.crash_loaded()
            if loaded.kind == OK and loaded.text != "1":
                raise BackendError(
                    f"{mode} load succeeded but kexec_crash_loaded reads {loaded.text!r}",
                    unloaded=True,
                )
            self._worked = mode
            return
        raise BackendError("; ".join(errors), unloaded=True)

    def describe(self) -> str:
        modes = "/".join(self.modes())
        return f"kexec -p -u, then kexec load ({modes}) of {self.image.kernel}"


def userspace_load_blocker(proc: Path) -> str | None:
    """Why kexec-tools cannot build a crash image for kexec_load here, or None.

    For kexec_load, kexec-tools itself builds the ELF core header: it needs the real
    addresses in /proc/iomem (CAP_SYS_ADMIN), /proc/kcore (CAP_SYS_RAWIO; hidden by
    ProtectKernelTunables=) and _stext in /proc/kallsyms (CAP_SYSLOG, kptr_restrict).
    kexec_file_load does all that in the kernel and needs none of it.
    """
    try:
        with (proc / "kcore").open("rb"):
            pass
    except OSError as error:
        return f"/proc/kcore cannot be opened ({error.strerror})"
    # Without the capability every address reads as zeros; with it, some are not (the
    # first iomem range does start at 0).
    for name, marker in (("iomem", " : "), ("kallsyms", " _stext")):
        try:
            text = (proc / name).read_text(encoding="ascii", errors="replace")
        except OSError as error:
            return f"/proc/{name} cannot be read ({error.strerror})"
        # "00001000-0009fbff : System RAM", "ffffffff81000000 T _stext"
        addresses = [x.split()[0] for x in text.splitlines() if marker in x and x.split()]
        if not any(a.replace("-", "").strip("0") for a in addresses):
            return f"/proc/{name} shows no addresses"
    return None


def default_append(cmdline: str) -> str:
    """The crash kernel's command line derived from the running kernel's.

    Drops what must not be inherited (the reservation itself, the boot image, CPU
    limits) and adds what kdump tools add for a reliable dump kernel.
    """
    drop = ("crashkernel=", "BOOT_IMAGE=", "nr_cpus=", "maxcpus=", "initrd=",
            "kexec_jump_back_entry=")
    kept = [word for word in cmdline.split() if not word.startswith(drop)]
    return " ".join([*kept, "irqpoll", "nr_cpus=1", "reset_devices"])
