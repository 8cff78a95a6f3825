"""Reload with kexec-tools directly: one load over the loaded image, no separate unload.

Both load syscalls replace the loaded crash image themselves (the kernel frees the old
one and loads the new one under its lock), so kdumpd never runs ``kexec -p -u``: a
failure before the syscall keeps the old image, and the window without a crash kernel
is the syscall's. Everything that can be checked before it is checked first: the files
readable and trusted, the command line's length against the kernel's limit, the mode
possible here.

Load modes: ``file`` (kexec_file_load, ``-s``), ``hotplug`` (kexec_load with
``--hotplug``, kexec-tools >= 2.0.28, needs /sys/kernel/crash_elfcorehdr_size) and
``plain`` (kexec_load, ``-c``). ``auto`` prefers ``hotplug`` where kexec_load can work
(its window was 39-72 ms in the guest against 1.8-1.9 s for ``file``, which parses and
digests the files inside the syscall), then ``file``, then ``plain``, and remembers what
worked. Under the shipped unit, kexec_load cannot work on x86 (no /proc/kcore), so auto
means ``file``; the kexec-load drop-in enables the short window (see the README). Where
the kernel has no kexec_file_load (Debian's ppc64el kernels, kexec_syscalls.py) auto
means kexec_load, ``hotplug`` then ``plain``: what kexec-tools needs for it is the
architecture's (arch.py: on powerpc the device tree, which the shipped unit leaves
readable).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Union

from kdumpd import security
from kdumpd.arch import X86_KEXEC_LOAD_READS, Arch, facts
from kdumpd.backends import BackendError, load_mode
from kdumpd.backends.distro import CrashImage, DistroError
from kdumpd.backends.kexec_syscalls import FileLoad
from kdumpd.backends.runner import CheckedRunner
from kdumpd.smallfile import read_regular
from kdumpd.sysfs import OK, Sysfs

MODE_FLAGS = {
    "file": ("-s", "-p"),
    "hotplug": ("-c", "-p", "--hotplug"),
    "plain": ("-c", "-p"),
}
USERSPACE_MODES = ("hotplug", "plain")  # kexec_load: kexec-tools builds the image

# The kernel appends "elfcorehdr=0x<addr> " (MAX_ELFCOREHDR_STR_LEN, 30) and, with
# dm-crypt keys (6.15+), "dmcryptkeys=0x<addr> " (31) to a kexec_file_load command line
# and refuses one that would not fit *after* freeing the old image.
KERNEL_ADDS = 30 + 31
DEFAULT_CMDLINE_SIZE = 2047  # COMMAND_LINE_SIZE - 1 on x86, arm64 and ppc64
PROC_LIMIT = 64 << 20  # /proc/kallsyms: 10 MiB on a distribution kernel

NOT_LOOKED_UP = FileLoad(None, "not looked up")

log = logging.getLogger("kdumpd")


KexecImage = CrashImage  # what a load loads (the distribution's, or configured)
ImageSource = Callable[[], CrashImage]


class KexecBackend:
    name = "kexec"

    def __init__(
        self, image: Union[CrashImage, ImageSource], mode: str, sysfs: Sysfs, runner: CheckedRunner,
        timeout_s: float, *, clock: Callable[[], float] = time.monotonic,
        euid: int | None = None, arch: Arch | None = None,
        file_load: FileLoad = NOT_LOOKED_UP,
    ) -> None:
        # An image source is asked at every reload: the distribution's configuration may
        # have changed since kdumpd started.
        self._image_source: ImageSource = image if callable(image) else (lambda: image)
        self.mode = mode
        self._sysfs = sysfs
        self._run = runner
        self._timeout_s = timeout_s
        self._clock = clock
        self._euid = euid
        # The machine's facts (arch.py) and whether its kernel has kexec_file_load
        # (kexec_syscalls.py), both found by the composition root.
        self._arch = arch or facts("x86_64")
        self._file_load = file_load
        self._worked: str | None = None
        self.last_command = ""

    def modes(self, image: CrashImage | None = None) -> list[str]:
        """The load modes to try, in order (see :meth:`choice`)."""
        return self.choice(image)[0]

    def choice(self, image: CrashImage | None = None) -> tuple[list[str], str]:
        """The load modes to try, in order, and why when the administrator's kexec
        arguments asked for one ("" otherwise): ``[reload] load`` set to a mode wins;
        ``auto`` is load_mode.choose over what this host allows."""
        if self.mode != "auto":
            return [self.mode], ""
        asked = image.kexec_args.mode if image is not None else ""
        asked_from = (image.kexec_args_from.text() if image is not None
                      and image.kexec_args_from is not None else "the kexec arguments")
        host = load_mode.Host(
            hotplug=self._sysfs.read("kernel/crash_elfcorehdr_size").kind == OK,
            file_load=self._file_load.available, file_load_line=self._file_load.line(),
            blocker=userspace_load_blocker(self._sysfs.root, self._arch.kexec_load_reads),
            userspace_omits_ram=self._arch.kexec_load_omits_hot_added_ram)
        return load_mode.choose(asked, host, asked_from, self._worked)

    @property
    def image(self) -> CrashImage:
        """The image a reload loads now; raises BackendError when it cannot be known."""
        try:
            return self._image_source()
        except DistroError as error:
            raise BackendError(f"{error}; crash kernel left as it was", permanent=True) from None
        except Exception as error:  # a reader's bug on odd input must not end the daemon
            raise BackendError(f"reading the distribution's kdump configuration failed "
                               f"({type(error).__name__}: {error}); crash kernel left as it "
                               "was", permanent=True) from None

    def load_argv(self, mode: str, image: CrashImage | None = None) -> list[str]:
        image = image or self.image
        argv = ["kexec", *MODE_FLAGS[mode], *image.kexec_args.kept, str(image.kernel)]
        if image.initrd is not None:
            argv.append(f"--initrd={image.initrd}")
        argv.append(f"--append={image.append}")
        return argv

    def check(self, image: CrashImage | None = None) -> CrashImage:
        """Everything that can fail before the load syscall; raises BackendError (the
        first of :meth:`problems`).

        After this the only failures left are inside kexec and the syscall. Returns the
        image that was checked (the one to load).
        """
        image = image or self.image
        found = self.problems(image)
        if found:
            raise found[0]
        return image

    def problems(self, image: CrashImage | None = None) -> list[BackendError]:
        """Every reason :meth:`check` has to refuse a load, in its order (`kdumpd config
        check` lists them all: a command line too long is a settings' problem even while
        the kernel is missing)."""
        image = image or self.image
        found: list[BackendError] = []
        if image.initrd is None and image.initrd_required:
            found.append(BackendError(
                f"{image.family} boots its dump path from an initrd and there is none; "
                "crash kernel left as it was", permanent=True))
        config = self._sysfs.root / image.config_file.lstrip("/")
        if image.config_file and config.exists():
            problem = security.path_problem(config, euid=self._euid)
            if problem:
                found.append(BackendError(f"refusing {image.config_file}: {problem}; crash "
                                          "kernel left as it was", permanent=True))
        kernel_readable = False
        for label, path in (("kernel", image.kernel), ("initrd", image.initrd)):
            if path is None:
                continue
            try:
                read_regular(path, 1)  # never blocks (a FIFO), never a device
                kernel_readable = kernel_readable or label == "kernel"
            except OSError as error:
                found.append(BackendError(
                    f"{label} {path} is not readable ({error.strerror}); "
                    "crash kernel left as it was",
                    permanent=label == "initrd" and image.initrd_required
                    and isinstance(error, FileNotFoundError),
                ))
                continue
            problem = security.path_problem(path, euid=self._euid)
            if problem:
                found.append(BackendError(f"refusing the {label}: {problem}; crash kernel "
                                          "left as it was", permanent=True))
        # The kernel's own limit, from its header when it is a file kdumpd may read (never
        # opened otherwise: a FIFO would block); else the default.
        limit = (cmdline_size(image.kernel) if kernel_readable
                 else DEFAULT_CMDLINE_SIZE) - KERNEL_ADDS
        length = len(image.append.encode()) + 1
        if length > limit:
            found.append(BackendError(
                f"reload.append: the crash kernel's command line is {length} bytes, the kernel "
                f"takes at most {limit} (with room for elfcorehdr=); crash kernel left as it was",
                permanent=True,
            ))
        if self.mode == "file" and self._file_load.available is False:
            found.append(BackendError(
                'load mode "file" uses kexec_file_load, which this kernel lacks: '
                f"{self._file_load.line()} (load mode \"auto\" or \"hotplug\" use "
                "kexec_load); crash kernel left as it was", permanent=True))
        if self.mode in USERSPACE_MODES:
            blocker = userspace_load_blocker(self._sysfs.root, self._arch.kexec_load_reads)
            if blocker is not None:
                found.append(BackendError(
                    f'load mode "{self.mode}" uses kexec_load, which cannot work here: '
                    f"{blocker} (see the kexec-load drop-in in the README); crash kernel left "
                    "as it was",
                    permanent=True,
                ))
        return found

    def probe(self) -> str | None:
        try:
            self.check()
        except BackendError as error:
            return str(error)
        return None

    def reload(self) -> None:
        image = self.check()
        deadline = self._clock() + self._timeout_s
        errors = []
        with self._opened(image) as (held, fds):
            for mode in self.modes(image):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    errors.append(f"{mode} load: not tried, reload.timeout_s used up")
                    break
                error = self._load(mode, image, held, fds, remaining)
                if error is None:
                    return
                errors.append(f"{mode} load: {error}")
        raise BackendError("; ".join(errors))

    @contextlib.contextmanager
    def _opened(self, image: CrashImage) -> Iterator[tuple[CrashImage, list[int]]]:
        """Kernel and initrd opened and vetted on the descriptors kexec then reads (as
        ``/proc/self/fd/N``): what is booted is what was checked, whatever happens to the
        names meanwhile. Raises BackendError."""
        fds: list[int] = []
        paths: dict[str, Path] = {}
        try:
            for label, path in (("kernel", image.kernel), ("initrd", image.initrd)):
                if path is None:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
                except OSError as error:
                    raise BackendError(f"{label} {path}: {error.strerror}; crash kernel left "
                                       "as it was") from None
                fds.append(fd)
                problem = security.fd_problem(fd, euid=self._euid)
                if problem:
                    raise BackendError(f"refusing the {label} {path}: {problem}; crash kernel "
                                       "left as it was", permanent=True)
                paths[label] = Path(f"/proc/self/fd/{fd}")
            held = dataclasses.replace(image, kernel=paths["kernel"],
                                       initrd=paths.get("initrd"))
            yield held, fds
        finally:
            for fd in fds:
                os.close(fd)

    def _load(self, mode: str, image: CrashImage, held: CrashImage, fds: list[int],
              remaining: float) -> str | None:
        """One load in ``mode``: None when it worked, else why not."""
        self.last_command = shlex.join(self.load_argv(mode, image))
        log.info("loading the crash kernel: %s", self.last_command)
        opened = _opened_files(image, held)
        if opened:
            log.info("the crash kernel's files: %s", opened)
        try:
            self._run(self.load_argv(mode, held), remaining, pass_fds=fds)
        except BackendError as error:
            return str(error)
        loaded = self._sysfs.settled_crash_loaded()
        if loaded.kind == OK and loaded.text != "1":
            raise BackendError(
                f"{mode} load succeeded but kexec_crash_loaded reads {loaded.text!r}"
            )
        self._worked = mode
        return None

    def describe(self) -> str:
        try:
            image: CrashImage | None = self.image
            kernel = str(self.image.kernel)
        except BackendError as error:
            image, kernel = None, f"an unknown kernel ({error})"
        modes = "/".join(self.modes(image))
        if self._file_load.available is False:
            modes += f"; kexec_file_load: {self._file_load.line()}"
        return f"kexec load ({modes}) of {kernel} over the loaded image"


def _opened_files(image: CrashImage, held: CrashImage) -> str:
    """The files kexec reads, where they are not the names configured (links): the
    journal names what was loaded."""
    real = []
    for named, opened in ((image.kernel, held.kernel), (image.initrd, held.initrd)):
        if named is None or opened is None:
            continue
        try:
            target = os.readlink(opened)
        except OSError:
            continue
        if target != str(named):
            real.append(f"{named} is {target}")
    return "; ".join(real)


def cmdline_size(kernel: Path) -> int:
    """The longest command line ``kernel`` takes (x86 boot header), else the default.

    An x86 bzImage says it in its setup header (boot protocol >= 2.06: ``cmdline_size`` at
    0x238, without the NUL); older or other images get DEFAULT_CMDLINE_SIZE.
    """
    try:
        with kernel.open("rb") as handle:
            header = handle.read(0x23C)
    except OSError:
        return DEFAULT_CMDLINE_SIZE
    if len(header) < 0x23C or header[0x202:0x206] != b"HdrS":
        return DEFAULT_CMDLINE_SIZE
    version = struct.unpack_from("<H", header, 0x206)[0]
    if version < 0x206:
        return 255
    size = int(struct.unpack_from("<I", header, 0x238)[0])
    return size if size > 0 else DEFAULT_CMDLINE_SIZE


def userspace_load_blocker(root: Path, reads: tuple[str, ...] = X86_KEXEC_LOAD_READS
                           ) -> str | None:
    """Why kexec-tools cannot build a crash image for kexec_load here, or None.

    For kexec_load, kexec-tools itself builds the ELF core header. On x86 (``reads``,
    arch.py) it needs the real addresses in /proc/iomem (CAP_SYS_ADMIN), /proc/kcore
    (CAP_SYS_RAWIO; hidden by ProtectKernelTunables=) and _stext in /proc/kallsyms
    (CAP_SYSLOG, kptr_restrict); on powerpc none of them (it reads the device tree).
    Under lockdown (Secure Boot) the kernel refuses kexec_load altogether.
    kexec_file_load does all that in the kernel and needs none of it.
    """
    # Every read bounded and non-blocking (a FIFO planted under a test root must not hang).
    lockdown = root / "sys/kernel/security/lockdown"
    try:
        text = read_regular(lockdown, 4096).decode("ascii", "replace")
    except OSError:
        text = ""
    if "[" in text and "[none]" not in text:
        return f"the kernel is locked down ({text.strip()})"
    proc = root / "proc"
    if "kcore" in reads:
        try:
            read_regular(proc / "kcore", 0)
        except OSError as error:
            return f"/proc/kcore cannot be opened ({error.strerror})"
    # Without the capability every address reads as zeros; with it, some are not (the
    # first iomem range does start at 0).
    for name, marker in (("iomem", " : "), ("kallsyms", " _stext")):
        if name not in reads:
            continue
        try:
            text = read_regular(proc / name, PROC_LIMIT).decode("ascii", "replace")
        except OSError as error:
            return f"/proc/{name} cannot be read ({error.strerror})"
        # "00001000-0009fbff : System RAM", "ffffffff81000000 T _stext"
        addresses = [x.split()[0] for x in text.splitlines() if marker in x and x.split()]
        if not any(a.replace("-", "").strip("0") for a in addresses):
            return f"/proc/{name} shows no addresses"
    return None
