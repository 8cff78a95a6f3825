"""The second guest: IBM POWER (ppc64le) under ``qemu-system-ppc64 -M pseries`` (TCG).

Everything that is architecture-specific about that guest is here, beside the x86 one
(image.py, guest.py); the scenarios reuse the x86 harness's console, QMP client, driver
and dump comparison (guest.Console, guest.Qmp, driver, dumpcheck). What differs:

- **image**: Debian's ppc64el kernels come from trixie (6.12.107 and kexec-tools 2.0.29,
  which has ``--hotplug``), the userspace from bookworm (complete on the mirror), made by
  ``debootstrap --foreign`` on the host and finished inside the guest (no ppc64el
  chroot here). The finished root is written out of the guest as a tar onto a raw disk
  and cached as an initramfs (``root.cpio.gz``): the kernel has virtio_blk and ext4 as
  modules and the guest runs systemd straight from the initramfs. Cache:
  ``$KDUMPD_VM_PPC_CACHE`` or ``/var/cache/kdumpd-vm/ppc64le-<key>`` (no lock: one
  build at a time, as the guests run one at a time).
- **guest**: ``-M pseries -cpu power9``, the console and root shell on the spapr-vty
  (hvc0) behind a unix socket, kernel messages on the same console (``loglevel=1``);
  files go in as a second cpio appended to the root's (the kernel unpacks both).
- **dump**: the crash kernel boots a busybox initramfs (no python there), so /proc/vmcore's
  headers are read with ``od`` and parsed here; the reservation is read from the device
  tree (pseries' /proc/iomem has no ``Crash kernel`` line).

Needs root (debootstrap) and network to the Debian mirror (a private apt configuration:
the host's apt state is never touched). QEMU runs under ``nice -n 15``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .guest import Vm, VmConfig
from .image import SHELL_UNIT, Kernel, cache_root, run

MIRROR = os.environ.get("KDUMPD_VM_MIRROR", "http://deb.debian.org/debian")
RELEASE = "6.12.107+deb13-powerpc64le"
TRIXIE_DEBS = (f"linux-image-{RELEASE}", "kexec-tools", "busybox-static",
               "libc6-ppc64el-cross")
ROOT_SUITE = "bookworm"
ROOT_PACKAGES = ("systemd", "systemd-sysv", "udev", "python3", "python3-pyudev",
                 "python3-systemd", "kmod", "procps", "kexec-tools")
SCRIPT_VERSION = "2"  # 2: image.py's console shell unit
CRASHKERNEL = "512M"
CRASH_APPEND = "console=hvc0 nr_cpus=1 reset_devices"
BUSYBOX_APPLETS = (
    "sh", "ash", "cat", "ls", "mount", "umount", "echo", "mkdir", "dmesg", "sleep", "grep",
    "sed", "awk", "head", "tail", "wc", "stat", "ps", "kill", "cut", "tr", "find", "date",
    "uptime", "poweroff", "sync", "dd", "cp", "mv", "rm", "ln", "od", "test", "[", "printf",
    "seq", "env", "uname", "md5sum", "true", "false", "chmod", "sort", "timeout", "setsid",
    "stty", "base64", "hexdump", "nproc", "readlink", "basename", "dirname", "id",
)
SOURCES = (
    "deb [arch=ppc64el signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    f"{MIRROR} trixie main\n"
)


def key() -> str:
    blob = json.dumps([MIRROR, RELEASE, TRIXIE_DEBS, ROOT_SUITE, ROOT_PACKAGES,
                       SCRIPT_VERSION]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_dir() -> Path:
    """``$KDUMPD_VM_PPC_CACHE``, else ``ppc64le-<key>`` beside the x86 entries (image.py's
    cache root, ``$KDUMPD_VM_CACHE``), where its pruning finds it by manifest.json."""
    explicit = os.environ.get("KDUMPD_VM_PPC_CACHE")
    return Path(explicit) if explicit else cache_root() / f"ppc64le-{key()}"


@dataclass(frozen=True)
class PseriesImage:
    dir: Path

    @property
    def qemu(self) -> Path:
        return self.dir / "qemu" / "usr" / "bin" / "qemu-system-ppc64"

    @property
    def vmlinux(self) -> Path:
        return self.dir / "vmlinux"

    @property
    def root(self) -> Path:
        return self.dir / "root.cpio.gz"

    @property
    def manifest(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.dir / "manifest.json").read_text())
        return loaded


# -- the build ---------------------------------------------------------------------------


def fetch(work: Path) -> Path:
    """trixie's ppc64el kernel, kexec-tools, busybox and glibc, and the host's
    qemu-system-ppc, downloaded (never installed) with a private apt configuration."""
    apt = work / "apt"
    for sub in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial",
                "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "etc" / "sources.list").write_text(SOURCES)
    (apt / "state" / "status").touch()
    (apt / "apt.conf").write_text("\n".join([
        f'Dir::Etc::sourcelist "{apt}/etc/sources.list";',
        f'Dir::Etc::sourceparts "{apt}/etc/sources.list.d";',
        f'Dir::Etc::preferencesparts "{apt}/etc/preferences.d";',
        f'Dir::State "{apt}/state";', f'Dir::State::status "{apt}/state/status";',
        f'Dir::Cache "{apt}/cache";', 'APT::Architecture "ppc64el";',
        'APT::Architectures { "ppc64el"; };', ""]))
    env = {**os.environ, "APT_CONFIG": str(apt / "apt.conf")}
    debs = work / "debs"
    debs.mkdir(exist_ok=True)
    subprocess.run(["apt-get", "-q", "update"], env=env, check=True, timeout=600,
                   capture_output=True)
    subprocess.run(["apt-get", "-q", "download", *TRIXIE_DEBS], env=env, cwd=debs,
                   check=True, timeout=900, capture_output=True)
    # The host's own apt (bookworm amd64) for QEMU's ppc binary: downloaded, not installed.
    subprocess.run(["apt-get", "-q", "download", "qemu-system-ppc"], cwd=debs, check=True,
                   timeout=600, capture_output=True)
    return debs


def one(debs: Path, pattern: str) -> Path:
    found = sorted(debs.glob(pattern))
    if not found:
        raise RuntimeError(f"no {pattern} in {debs}")
    return found[-1]


def cpio_gz(tree: Path, out: Path) -> None:
    """``tree`` as a gzip'd newc cpio (what the kernel unpacks as an initramfs)."""
    names = subprocess.run(["find", "."], cwd=tree, check=True, capture_output=True,
                           timeout=300).stdout
    packed = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=names,
                            check=True, capture_output=True, timeout=900).stdout
    out.write_bytes(gzip.compress(packed, compresslevel=1))


CRASH_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
export PATH=/bin:/sbin HOME=/root
echo "CRASH-INIT $(cut -d' ' -f1 /proc/uptime)"
while true; do
  setsid sh -c 'exec sh </dev/hvc0 >/dev/hvc0 2>&1'
  sleep 1
done
"""


def crash_initrd(debs: Path, out: Path, work: Path) -> None:
    """busybox on hvc0: the crash kernel's initramfs (it reads /proc/vmcore with od)."""
    tree, unpacked = work / "crash-tree", work / "busybox"
    shutil.rmtree(tree, ignore_errors=True)
    for sub in ("bin", "sbin", "proc", "sys", "dev", "tmp", "root"):
        (tree / sub).mkdir(parents=True)
    run(["dpkg-deb", "-x", one(debs, "busybox-static_*_ppc64el.deb"), unpacked], timeout=120)
    shutil.copy2(unpacked / "usr" / "bin" / "busybox", tree / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        (tree / "bin" / applet).symlink_to("busybox")
    # The harness's Console runs its scripts with bash; busybox's sh does for these.
    (tree / "bin" / "bash").write_text('#!/bin/sh\nexec /bin/sh "$@"\n')
    (tree / "bin" / "bash").chmod(0o755)
    (tree / "init").write_text(CRASH_INIT)
    (tree / "init").chmod(0o755)
    cpio_gz(tree, out)


STAGE2 = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -L /proc ] && rm -f /proc && mkdir /proc
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
echo "STAGE2-START $(cut -d' ' -f1 /proc/uptime)"
/debootstrap/debootstrap --second-stage > /stage2.log 2>&1
echo "STAGE2-END rc=$? $(cut -d' ' -f1 /proc/uptime)"
tail -3 /stage2.log
passwd -d root
# trixie's kexec-tools 2.0.29 (--hotplug) in place of bookworm's 2.0.25
dpkg-divert --local --rename --add /usr/sbin/kexec
cp /opt/trixie/kexec-trixie /usr/sbin/kexec
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*_Packages /stage2.log
insmod /stage2-mods/virtio_blk.ko.xz
sleep 2
rm -rf /stage2-mods
cd / && tar --one-file-system -cf /dev/vda . && echo "TAR-END rc=0" || echo "TAR-END rc=1"
sync
echo o > /proc/sysrq-trigger
"""


def add_files(root: Path, debs: Path, kernel_tree: Path, crash: Path, work: Path) -> None:
    """What the foreign root gets before its second stage: trixie's kexec with its own
    glibc (through its loader), the crash kernel's files, the kernel configuration (as
    Debian installs it: kdumpd reads CONFIG_KEXEC_FILE there), the console shell."""
    unpacked = work / "trixie-kexec"
    run(["dpkg-deb", "-x", one(debs, "kexec-tools_*_ppc64el.deb"), unpacked], timeout=120)
    run(["dpkg-deb", "-x", one(debs, "libc6-ppc64el-cross_*_all.deb"), unpacked], timeout=120)
    opt = root / "opt" / "trixie"
    opt.mkdir(parents=True, exist_ok=True)
    lib = unpacked / "usr" / "powerpc64le-linux-gnu" / "lib"
    for path in (unpacked / "usr" / "sbin" / "kexec", lib / "ld64.so.2", lib / "libc.so.6"):
        shutil.copy2(path, opt / path.name)
    wrapper = opt / "kexec-trixie"
    wrapper.write_text('#!/bin/sh\nexec /opt/trixie/ld64.so.2 --library-path /opt/trixie '
                       '/opt/trixie/kexec "$@"\n')
    wrapper.chmod(0o755)
    boot = root / "boot"
    boot.mkdir(exist_ok=True)
    shutil.copy2(kernel_tree / "boot" / f"vmlinux-{RELEASE}", boot / "vmlinux")
    shutil.copy2(kernel_tree / "boot" / f"config-{RELEASE}", boot / f"config-{RELEASE}")
    shutil.copy2(crash, boot / "initrd.img")
    mods = root / "stage2-mods"
    mods.mkdir(exist_ok=True)
    shutil.copy2(kernel_tree / "usr" / "lib" / "modules" / RELEASE / "kernel" / "drivers"
                 / "block" / "virtio_blk.ko.xz", mods / "virtio_blk.ko.xz")
    (root / "etc" / "hostname").write_text("kdumpd-ppc64le\n")
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    (units / "vmshell.service").write_text(SHELL_UNIT)  # image.py's: hvc0 is the console
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "vmshell.service").unlink(missing_ok=True)
    (wants / "vmshell.service").symlink_to("/etc/systemd/system/vmshell.service")
    for unit in ("serial-getty@hvc0.service", "getty@tty1.service", "apt-daily.timer",
                 "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
                 "dpkg-db-backup.timer", "systemd-networkd-wait-online.service"):
        link = units / unit
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    (root / "stage2").write_text(STAGE2)
    (root / "stage2").chmod(0o755)


def qemu_argv(image: PseriesImage, initrd: Path, append: str, workdir: Path,
              extra: list[str] | None = None) -> list[str]:
    return [
        "nice", "-n", "15", str(image.qemu), "-M", "pseries", "-cpu", "power9",
        "-accel", "tcg", "-m", "2G,slots=8,maxmem=8G", "-smp", "2,maxcpus=4",
        "-L", "/usr/share/qemu", "-display", "none", "-vga", "none", "-nodefaults",
        "-no-reboot", "-kernel", str(image.vmlinux), "-initrd", str(initrd),
        "-append", append,
        "-chardev", f"socket,id=shell,path={workdir / 'console.sock'},server=on,wait=off",
        "-serial", "chardev:shell",
        "-qmp", f"unix:{workdir / 'qmp.sock'},server=on,wait=off", *(extra or []),
    ]


def second_stage(image_dir: Path, root_initrd: Path, work: Path) -> float:
    """Boot the foreign root once: debootstrap's second stage, then its tar out; the
    seconds it took. Raises RuntimeError with the console's tail when it fails."""
    disk = work / "root.tar.img"
    disk.unlink(missing_ok=True)
    with disk.open("wb") as handle:
        handle.truncate(2 << 30)
    image = PseriesImage(image_dir)
    argv = qemu_argv(image, root_initrd, "console=hvc0 rdinit=/stage2", work,
                     ["-drive", f"file={disk},if=none,id=d0,format=raw",
                      "-device", "virtio-blk-pci,drive=d0"])
    argv[argv.index("-chardev") + 1] = f"file,id=shell,path={work / 'stage2.log'}"
    started = time.monotonic()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=3600, check=False)
    took = time.monotonic() - started
    log = (work / "stage2.log").read_text(errors="replace")
    if "TAR-END rc=0" not in log or "STAGE2-END rc=0" not in log:
        raise RuntimeError(f"second stage failed (qemu exit {done.returncode}):\n{log[-3000:]}")
    return took


def build() -> PseriesImage:
    """The cached image, built first when missing (about 15 minutes under TCG)."""
    final = cache_dir()
    if (final / "manifest.json").exists():
        return PseriesImage(final)
    started = time.monotonic()
    work = final.with_name(final.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    debs = fetch(work)
    staging = work / "image"
    staging.mkdir()
    run(["dpkg-deb", "-x", one(debs, "qemu-system-ppc_*_amd64.deb"), staging / "qemu"],
        timeout=300)
    kernel_tree = work / "kernel"
    run(["dpkg-deb", "-x", one(debs, f"linux-image-{RELEASE}_*_ppc64el.deb"), kernel_tree],
        timeout=600)
    shutil.copy2(kernel_tree / "boot" / f"vmlinux-{RELEASE}", staging / "vmlinux")
    crash = staging / "crash-initrd.cpio.gz"
    crash_initrd(debs, crash, work)
    root = work / "root"
    run(["debootstrap", "--foreign", "--arch=ppc64el", "--variant=minbase",
         f"--include={','.join(ROOT_PACKAGES)}", ROOT_SUITE, root, MIRROR], timeout=1800)
    add_files(root, debs, kernel_tree, crash, work)
    foreign = work / "foreign.cpio.gz"
    cpio_gz(root, foreign)
    stage2_s = second_stage(staging, foreign, work)
    finished = work / "finished"
    finished.mkdir()
    run(["tar", "-xf", work / "root.tar.img", "-C", finished], timeout=900)
    for sub in ("proc", "sys", "dev", "tmp", "run"):
        (finished / sub).mkdir(exist_ok=True)
    (finished / "stage2").unlink(missing_ok=True)
    cpio_gz(finished, staging / "root.cpio.gz")
    (staging / "manifest.json").write_text(json.dumps({
        "release": RELEASE, "root_suite": ROOT_SUITE, "stage2_s": round(stage2_s, 1),
        "build_s": round(time.monotonic() - started, 1)}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    shutil.rmtree(work, ignore_errors=True)
    return PseriesImage(final)


# -- the guest ---------------------------------------------------------------------------


def payload(files: dict[str, Path | bytes], out: Path, work: Path) -> Path:
    """``files`` (guest path -> host file or bytes) as a cpio to append to the root's."""
    tree = work / "payload-tree"
    shutil.rmtree(tree, ignore_errors=True)
    for guest_path, data in files.items():
        target = tree / guest_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            shutil.copy2(data, target)
    cpio_gz(tree, out)
    return out


class PseriesVm(Vm):
    """A :class:`~tests.vm.guest.Vm` whose QEMU is the pseries one: the same console,
    QMP and lifecycle; the kernel messages are in the console log. The console is poked
    only after the kernel's banner: SLOF stops its boot at a key press."""

    BANNER = b"Linux version"

    def __init__(self, image: PseriesImage, initrd: Path, workdir: Path) -> None:
        # The x86 fields are not used: argv() below builds the pseries command line.
        super().__init__(VmConfig(kernel=Kernel("ppc64le", RELEASE, image.vmlinux, initrd),
                                  root_image=image.root, workdir=workdir))
        self.image = image
        self.initrd = initrd
        self.serial_log = self.console_log

    def argv(self) -> list[str]:
        # The scenario sets the console's log level down once the shell answers.
        append = (f"console=hvc0 crashkernel={CRASHKERNEL} rdinit=/lib/systemd/systemd "
                  "loglevel=5 systemd.show_status=0")
        return qemu_argv(self.image, self.initrd, append, self.dir)


def boot_initrd(image: PseriesImage, files: dict[str, Path | bytes], work: Path) -> Path:
    """The root's cpio with ``files`` appended: what one boot unpacks."""
    extra = payload(files, work / "payload.cpio.gz", work)
    initrd = work / "initrd.cpio.gz"
    with initrd.open("wb") as out:
        for part in (image.root, extra):
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out)
    return initrd


# -- the dump ----------------------------------------------------------------------------

PT_LOAD, PT_NOTE, NT_PRSTATUS = 1, 4, 1


def device_tree_reservation(vm: Vm) -> tuple[int, int]:
    """[start, end) of the crash reservation from /proc/device-tree/chosen."""
    out = vm.sh.run("for p in base size; do od -A n -t x1 -v "
                    "/proc/device-tree/chosen/linux,crashkernel-$p | tr -d ' \\n'; "
                    "echo; done").output.split()
    base, size = int(out[0], 16), int(out[1], 16)
    return base, base + size


def od_bytes(vm: Vm, path: str, offset: int, size: int) -> bytes:
    out = vm.sh.run(f"od -A n -t x1 -v -j {offset} -N {size} {path}", timeout=120).output
    return bytes.fromhex("".join(out.split()))


def read_vmcore(vm: Vm) -> dict[str, object]:
    """/proc/vmcore's PT_LOADs (physical [start, end)) and NT_PRSTATUS notes, read with od
    in the crash kernel's busybox; the shape dumpcheck.compare takes."""
    header = od_bytes(vm, "/proc/vmcore", 0, 64)
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        raise ValueError(f"/proc/vmcore is not a little-endian ELF64 file: {header[:8]!r}")
    phoff, = struct.unpack_from("<Q", header, 32)
    phentsize, phnum = struct.unpack_from("<HH", header, 54)
    table = od_bytes(vm, "/proc/vmcore", phoff, phentsize * phnum)
    loads, prstatus = [], 0
    for index in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz, p_memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", table, index * phentsize)
        if p_type == PT_LOAD:
            loads.append((p_paddr, p_paddr + p_memsz))
        elif p_type == PT_NOTE:
            notes = od_bytes(vm, "/proc/vmcore", p_offset, p_filesz)
            prstatus += count_prstatus(notes)
    return {"loads": loads, "prstatus": prstatus, "ptload": True}


def count_prstatus(notes: bytes) -> int:
    """NT_PRSTATUS entries in an ELF note segment (4-byte aligned name and desc)."""
    count, offset = 0, 0
    while offset + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, offset)
        if namesz == 0 and descsz == 0 and kind == 0:
            break
        count += kind == NT_PRSTATUS
        offset += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return count
