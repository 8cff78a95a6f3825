"""Build (and cache) the guest: a Debian trixie root with two kernels, as an ext4 image.

The cache lives outside the repository, in ``$KDUMPD_VM_CACHE`` or
``/var/cache/kdumpd-vm/<key>``, where the key hashes every input of the build (suites,
package list, kernel choices, mirror, :data:`SCRIPT_VERSION`). A finished build holds:

- ``root.ext4``: the root filesystem (booted read-write with ``snapshot=on``, so never
  modified);
- ``kernels/<release>/vmlinuz`` and ``initrd.img`` per kernel: the small initrd (only
  virtio and ext4 modules) that boots the guest and also serves as the crash initrd;
- ``manifest.json``: kernel releases, timings.

Needs root (debootstrap, chroot). Every command is an argv list with a timeout.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Bump when the build steps below change in a way that changes the result.
SCRIPT_VERSION = "6"
# KDUMPD_VM_MIRROR points the build at another Debian mirror (it is part of the cache key).
MIRROR = os.environ.get("KDUMPD_VM_MIRROR", "http://deb.debian.org/debian")
GUEST_PACKAGES = (
    "systemd", "systemd-sysv", "udev", "kexec-tools", "python3", "python3-pyudev",
    "python3-systemd", "kmod", "initramfs-tools", "procps", "zstd",
    # What Debian's kdump-tools needs, so a scenario can dpkg -i it (see extract_rules).
    "bsdextrautils", "busybox", "file", "linux-base", "ucf", "makedumpfile",
    # Scenario 16 runs the collection's role inside the guest (its apt module needs python3-apt;
    # debootstrap does not resolve the virtual python3-cffi-backend-api-* of cryptography).
    "ansible-core", "python3-apt", "python3-cffi-backend",
    # kdumpd's Recommends: [metrics] writes kdumpd.prom with it (scenario 2).
    "python3-prometheus-client",
)
# Modules the small initrd carries: enough to mount the root on virtio-blk.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")
IMAGE_SIZE = "3G"


class BuildError(RuntimeError):
    """The guest could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class KernelChoice:
    """A kernel to fetch: the metapackage ``linux-image-amd64`` of ``suite``."""

    name: str  # short name the tests use: "trixie" or "bookworm"
    suite: str


@dataclass(frozen=True)
class ImageSpec:
    suite: str = "trixie"
    mirror: str = MIRROR
    packages: tuple[str, ...] = GUEST_PACKAGES
    kernels: tuple[KernelChoice, ...] = (
        KernelChoice("trixie", "trixie"),
        KernelChoice("bookworm", "bookworm"),
    )
    # Extracted from its .deb, never installed: the package would load a crash kernel at
    # boot and its udev rule would run on every hotplug event of every scenario.
    rules_from: str = "kdump-tools"
    script_version: str = SCRIPT_VERSION

    def key(self) -> str:
        """Hash of every input: a change to any of them means a new cache entry."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Kernel:
    name: str
    release: str  # uname -r, e.g. "6.12.57+deb13-amd64"
    vmlinuz: Path
    initrd: Path


@dataclass
class Image:
    directory: Path
    root: Path  # root.ext4
    kernels: dict[str, Kernel]
    timings: dict[str, float] = field(default_factory=dict)
    cold: bool = False  # built in this run (not taken from the cache)


def cache_root() -> Path:
    return Path(os.environ.get("KDUMPD_VM_CACHE", "/var/cache/kdumpd-vm"))


def run(argv: Sequence[str | os.PathLike[str]], timeout: float, **kwargs: object) -> str:
    """Run ``argv``; return stdout. Raise :class:`BuildError` with stderr on failure."""
    try:
        done = subprocess.run(  # noqa: PLW1510 - checked below with a better message
            [str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
            **kwargs,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"timed out after {timeout:.0f} s: {' '.join(map(str, argv))}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-3000:]
        raise BuildError(f"exit {done.returncode}: {' '.join(map(str, argv))}\n{tail}")
    return str(done.stdout)


def ensure_host_tools() -> None:
    """Install the host packages the build and the boot need (a no-op when present)."""
    run([REPO / "tools" / "ensure-apt", "debootstrap", "qemu-system-x86", "qemu-utils",
         "e2fsprogs", "cpio", "zstd"], timeout=900)


def load_image(spec: ImageSpec) -> Image | None:
    directory = cache_root() / spec.key()
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    kernels = {
        name: Kernel(name, k["release"], directory / k["vmlinuz"], directory / k["initrd"])
        for name, k in data["kernels"].items()
    }
    return Image(directory, directory / "root.ext4", kernels, data.get("timings", {}))


def get_image(spec: ImageSpec | None = None) -> Image:
    """The cached image for ``spec``, building it first when the cache has none.

    A lock file serialises concurrent runs (a second run waits, then finds the cache).
    """
    spec = spec or ImageSpec()
    ensure_host_tools()
    cache_root().mkdir(parents=True, exist_ok=True)
    with (cache_root() / ".lock").open("w") as lock:
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BuildError("another build held the cache lock for 30 min") from None
                time.sleep(2)
        cached = load_image(spec)
        if cached is not None:
            return cached
        image = build_into_cache(spec)
        prune(keep=spec.key())
        return image


def prune(keep: str, max_age_days: float = 14) -> None:
    """Delete cache entries of other inputs not used for ``max_age_days``."""
    for entry in cache_root().iterdir():
        if entry.name == keep or entry.name.startswith(".") or not entry.is_dir():
            continue
        # An entry without a manifest is being built (the ppc64le image's ``.work``, in
        # .ci/run beside this build) or was left half-built: aged by its own change time.
        stamp = entry / "manifest.json"
        age_s = time.time() - (stamp.stat().st_atime if stamp.exists() else
                               entry.stat().st_mtime)
        if age_s > max_age_days * 86400:
            shutil.rmtree(entry, ignore_errors=True)


def build_into_cache(spec: ImageSpec) -> Image:
    """Build in ``<key>.tmp`` and rename: a half-built image is never taken for done."""
    directory = cache_root() / spec.key()
    work = directory.with_name(directory.name + ".tmp")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timings = build(spec, work)
    if directory.exists():
        shutil.rmtree(directory)
    work.rename(directory)
    image = load_image(spec)
    assert image is not None
    image.cold = True
    image.timings = timings
    return image


def build(spec: ImageSpec, work: Path) -> dict[str, float]:
    """Build everything into ``work``; return the seconds each step took."""
    root = work / "rootfs"
    timings: dict[str, float] = {}
    started = time.monotonic()
    debootstrap(spec, root)
    timings["debootstrap_s"] = time.monotonic() - started

    step = time.monotonic()
    configure_guest(root)
    kernels: dict[str, dict[str, str]] = {}
    for choice in spec.kernels:
        release = install_kernel(root, choice, spec.mirror)
        kdir = work / "kernels" / release
        kdir.mkdir(parents=True)
        make_initrd(root, release, kdir / "initrd.img")
        shutil.copy2(root / "boot" / f"vmlinuz-{release}", kdir / "vmlinuz")
        # The crash kernel loads from inside the guest: same small initrd there.
        shutil.copy2(kdir / "initrd.img", root / "boot" / f"initrd-small-{release}.img")
        kernels[choice.name] = {
            "release": release,
            "vmlinuz": str((kdir / "vmlinuz").relative_to(work)),
            "initrd": str((kdir / "initrd.img").relative_to(work)),
        }
    extract_rules(root, spec)
    timings["kernels_s"] = time.monotonic() - step

    step = time.monotonic()
    clean_root(root)
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, work / "root.ext4", IMAGE_SIZE],
        timeout=600)
    shutil.rmtree(root)
    timings["mkfs_s"] = time.monotonic() - step
    timings["total_s"] = time.monotonic() - started
    manifest = {"spec": asdict(spec), "kernels": kernels, "timings": timings}
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return timings


def debootstrap(spec: ImageSpec, root: Path) -> None:
    """Bootstrap ``spec.suite``; a failure to reach the mirror is said plainly."""
    try:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(spec.packages)}",
             spec.suite, root, spec.mirror], timeout=1500)
    except BuildError as exc:
        raise BuildError(
            f"debootstrap of Debian {spec.suite} from {spec.mirror} failed "
            f"(is the Debian mirror reachable?): {exc}"
        ) from exc


def chroot(root: Path, argv: Sequence[str], timeout: float) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
    return run(["chroot", root, *argv], timeout=timeout, env=env)


def apt_options(root: Path, suite: str, mirror: str) -> list[str]:
    """apt options for a private sources list of ``suite`` inside the guest root.

    The guest's own sources (trixie) and the host's apt configuration stay untouched.
    """
    private = root / "var" / "lib" / "kdumpd-vm" / suite
    (private / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (private / "sources.list").write_text(f"deb {mirror} {suite} main\n")
    inside = Path("/var/lib/kdumpd-vm") / suite
    return [
        "-o", f"Dir::Etc::SourceList={inside / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={inside / 'lists'}",
        "-o", "APT::Sandbox::User=root",
    ]


_UPDATED: set[tuple[Path, str]] = set()


def apt_update(root: Path, suite: str, mirror: str) -> list[str]:
    """``apt-get update`` the private list of ``suite`` once; return the apt options."""
    options = apt_options(root, suite, mirror)
    if (root, suite) not in _UPDATED:
        chroot(root, ["apt-get", *options, "-q", "update"], timeout=600)
        _UPDATED.add((root, suite))
    return options


def download(root: Path, suite: str, mirror: str, package: str) -> Path:
    """Download ``package`` of ``suite`` into the guest's /tmp; return its host path."""
    options = apt_update(root, suite, mirror)
    chroot(root, ["sh", "-c", 'cd /tmp && exec "$@"', "sh", "apt-get", *options, "-q",
                  "download", package], timeout=900)
    found = sorted((root / "tmp").glob(f"{package.split('=', maxsplit=1)[0]}_*.deb"))
    if not found:
        raise BuildError(f"apt-get download {package} ({suite}) left no .deb")
    return found[-1]


def kernel_package(root: Path, suite: str, mirror: str) -> str:
    """The versioned package ``linux-image-amd64`` of ``suite`` depends on."""
    options = apt_update(root, suite, mirror)
    out = chroot(root, ["apt-cache", *options, "depends", "linux-image-amd64"], timeout=120)
    for line in out.splitlines():
        if not line.strip().startswith("Depends:"):
            continue
        name = line.strip().removeprefix("Depends:").strip()
        if name.startswith("linux-image-") and name.endswith("-amd64"):
            return name
    raise BuildError(f"no kernel package in {suite}'s linux-image-amd64 depends:\n{out}")


def install_kernel(root: Path, choice: KernelChoice, mirror: str) -> str:
    """Unpack the kernel of ``choice`` into the root (no postinst), depmod; its release."""
    package = kernel_package(root, choice.suite, mirror)
    deb = download(root, choice.suite, mirror, package)
    unpack(deb, root)
    deb.unlink()
    release = package.removeprefix("linux-image-")
    if release.endswith("-unsigned"):
        release = release.removesuffix("-unsigned")
    if not (root / "boot" / f"vmlinuz-{release}").exists():
        raise BuildError(f"{package} has no /boot/vmlinuz-{release}")
    chroot(root, ["depmod", "-a", release], timeout=300)
    return release


def unpack(deb: Path, root: Path) -> None:
    """Unpack ``deb`` into ``root`` without its postinst, keeping merged-/usr symlinks.

    ``dpkg-deb -x`` would replace the /lib -> usr/lib symlink with a directory when the
    package (bookworm's kernel) ships files under /lib.
    """
    tarball = deb.with_suffix(".tar")
    with tarball.open("wb") as out:
        try:
            subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=out,
                           stderr=subprocess.PIPE, timeout=300, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise BuildError(f"dpkg-deb --fsys-tarfile {deb}: {error}") from error
    run(["tar", "-x", "--keep-directory-symlink", "-f", tarball, "-C", root], timeout=300)
    tarball.unlink()


def make_initrd(root: Path, release: str, out: Path) -> None:
    """A small initrd (MODULES=list) that mounts the root from virtio-blk."""
    conf = root / "etc" / "kdumpd-vm-initramfs"
    if not conf.exists():
        shutil.copytree(root / "etc" / "initramfs-tools", conf)
        text = (conf / "initramfs.conf").read_text()
        lines = [
            "MODULES=list" if line.startswith("MODULES=") else line
            for line in text.splitlines()
        ]
        (conf / "initramfs.conf").write_text("\n".join(lines) + "\n")
        (conf / "modules").write_text("\n".join(INITRD_MODULES) + "\n")
    chroot(root, ["mkinitramfs", "-d", "/etc/kdumpd-vm-initramfs", "-o",
                  "/tmp/initrd.img", release], timeout=600)
    shutil.move(root / "tmp" / "initrd.img", out)


def extract_rules(root: Path, spec: ImageSpec) -> None:
    """Put the distribution's kdump udev rules file into /root/distro-rules/ (not active)."""
    deb = download(root, spec.suite, spec.mirror, spec.rules_from)
    unpacked = root / "tmp" / "rules-unpacked"
    run(["dpkg-deb", "-x", deb, unpacked], timeout=120)
    target = root / "root" / "distro-rules"
    target.mkdir(parents=True, exist_ok=True)
    found = list(unpacked.glob("**/rules.d/*.rules"))
    if not found:
        raise BuildError(f"{spec.rules_from} ships no udev rules file")
    for rules in found:
        shutil.copy2(rules, target / rules.name)
    shutil.rmtree(unpacked)
    # Kept, not installed: a scenario installs the real kdump-tools in its own guest.
    debs = root / "root" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    shutil.move(deb, debs / deb.name)


SHELL_UNIT = """\
[Unit]
Description=Root shell on the virtio console for the kdumpd VM tests
After=systemd-user-sessions.service
ConditionPathExists=/dev/hvc0

[Service]
ExecStart=/bin/bash --noprofile --norc -i
StandardInput=tty-force
StandardOutput=tty
StandardError=tty
TTYPath=/dev/hvc0
TTYReset=yes
Environment=TERM=dumb PS1= HOME=/root
WorkingDirectory=/root
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def configure_guest(root: Path) -> None:
    """fstab, hostname, the console shell; mask units that only slow the boot down."""
    (root / "etc" / "fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (root / "etc" / "hostname").write_text("kdumpd-vm\n")
    units = root / "etc" / "systemd" / "system"
    (units / "vmshell.service").write_text(SHELL_UNIT)
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "vmshell.service").symlink_to("/etc/systemd/system/vmshell.service")
    for unit in ("serial-getty@hvc0.service", "apt-daily.timer", "apt-daily-upgrade.timer",
                 "e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer",
                 "systemd-networkd-wait-online.service"):
        link = units / unit
        if not link.exists():
            link.symlink_to("/dev/null")
    (root / "etc" / "kdumpd-vm").mkdir(exist_ok=True)


def clean_root(root: Path) -> None:
    """Drop apt caches and lists that only cost image size."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages",
                    "var/lib/kdumpd-vm/*/lists/*_Packages"):
        for path in root.glob(pattern):
            path.unlink()
