"""Boot the guest in QEMU (TCG) and talk to it: a root shell on a virtio console, QMP.

- :class:`Vm` starts QEMU with the root image (``snapshot=on``: every boot starts from
  the cached image), a payload disk (the .deb and test files), a virtio console behind a
  unix socket, QMP behind another, and the serial console (kernel messages) in a log.
- :class:`Console` runs shell commands and returns their output and exit status; the
  markers around the output are built at run time (``echo __K""S``) so the terminal
  echoing the command line cannot be mistaken for its output.
- :class:`Qmp` sends QMP commands and collects the asynchronous events.

Every wait has a bound; every subprocess call is an argv list with a timeout.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import itertools
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .image import Kernel, run

BOOT_TIMEOUT_S = 300.0
QMP_TIMEOUT_S = 60.0  # a QMP answer (device_add returns at once; the guest acts later)
PR_SET_PDEATHSIG = 1
CRASHKERNEL = "256M"
BASE_APPEND = (
    "root=/dev/vda rw console=ttyS0 panic=-1 "
    # Hot-added memory onlined movable, so a DIMM can also be removed again.
    "memhp_default_state=online_movable memory_hotplug.online_policy=auto-movable"
)


class GuestError(RuntimeError):
    """The guest did not answer, or a command in it failed."""


@dataclass
class Result:
    status: int
    output: str

    @property
    def ok(self) -> bool:
        return self.status == 0


class Console:
    """A root shell on a stream socket; one command at a time."""

    def __init__(self, sock: socket.socket, log: Path) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._log = log.open("ab")
        self._counter = itertools.count(1)
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue  # the socket timeout bounds send(); reading just goes on
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._closed = True
                    self._cond.notify_all()
                    return
                self._buf += data
                self._log.write(data)
                self._log.flush()
                self._cond.notify_all()

    def _wait_for(self, needle: bytes, timeout: float) -> bytes:
        """Wait until ``needle`` is in the buffer; return and consume everything up to it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                index = self._buf.find(needle)
                if index >= 0:
                    head = bytes(self._buf[:index])
                    del self._buf[: index + len(needle)]
                    return head
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    tail = bytes(self._buf[-500:]).decode(errors="replace")
                    why = "console closed" if self._closed else f"no answer in {timeout:.0f} s"
                    raise GuestError(f"{why} (waiting for {needle!r}); last output: {tail!r}")
                self._cond.wait(min(left, 1.0))

    def wait_banner(self, needle: bytes, timeout: float) -> None:
        """Wait, sending nothing, until the console printed ``needle`` (a firmware that
        stops its boot at a key press: pseries' SLOF)."""
        self._wait_for(needle, timeout)

    def send(self, line: str) -> None:
        self._sock.sendall(line.encode() + b"\n")

    def wait_ready(self, timeout: float) -> None:
        """Poke the shell until it answers with the terminal set up (it starts late in the boot).

        The answer counts only as ``__KREADY\n``, not ``__KREADY\r\n``: systemd's TTYReset
        (257, trixie) queries the terminal size with ``ESC[6n`` and reads the reply from the
        same tty, eating the start of a poke; a poke that lost its ``stty`` still echoes the
        marker, but with ``onlcr`` still on (seen once in CI: every later marker missed).
        """
        deadline = time.monotonic() + timeout
        while True:
            self.send("stty -echo -onlcr 2>/dev/null; echo __K''READY")
            try:
                self._wait_for(b"__KREADY\n", timeout=3.0)
                break
            except GuestError:
                if time.monotonic() > deadline or self._closed:
                    raise
        time.sleep(0.5)
        with self._cond:
            self._buf.clear()

    def run(self, script: str, timeout: float = 60.0, check: bool = True) -> Result:
        """Run ``script`` (bash) in the guest, stdin from /dev/null, stderr merged."""
        n = next(self._counter)
        encoded = base64.b64encode(script.encode()).decode()
        if len(encoded) > 3000:
            raise ValueError("script too long for one console line; use write_file")
        # `timeout` in the guest too, so a hung command cannot wedge the shell.
        self.send(
            f"echo {encoded} | base64 -d > /tmp/.kd{n}.sh; echo __K''S{n}; "
            f"timeout -k 5 {int(timeout)} bash /tmp/.kd{n}.sh </dev/null 2>&1; "
            f"echo __K''E{n}_$?_"
        )
        self._wait_for(f"__KS{n}\n".encode(), timeout=30.0)
        body = self._wait_for(f"__KE{n}_".encode(), timeout=timeout + 15.0)
        status = self._wait_for(b"_", timeout=5.0)
        result = Result(int(status or b"255"), body.decode(errors="replace").replace("\r", ""))
        if check and not result.ok:
            raise GuestError(f"exit {result.status}: {script!r}\n{result.output[-2000:]}")
        return result

    def write_file(self, path: str, data: bytes | str, mode: str = "0644") -> None:
        """Create ``path`` in the guest with ``data``, in console-sized chunks."""
        raw = data.encode() if isinstance(data, str) else data
        self.run(f": > {path}.part")
        for i in range(0, len(raw), 1500):
            chunk = base64.b64encode(raw[i : i + 1500]).decode()
            self.run(f"echo {chunk} | base64 -d >> {path}.part")
        self.run(f"chmod {mode} {path}.part && mv {path}.part {path}")

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            self._log.close()


class Qmp:
    """A QMP client: ``execute`` returns the ``return`` value or raises on ``error``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self.events: list[dict[str, Any]] = []
        self._read_message()  # greeting
        self.execute("qmp_capabilities")

    def _read_message(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise GuestError("QMP connection closed")
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read_message()
            if "event" in message:
                self.events.append(message)
                continue
            if "error" in message:
                raise GuestError(f"QMP {command} {arguments}: {message['error']}")
            return message.get("return")

    def close(self) -> None:
        self._file.close()
        self._sock.close()


@dataclass
class VmConfig:
    kernel: Kernel
    root_image: Path
    payload: Path | None = None
    memory: str = "2G,slots=8,maxmem=10G"
    smp: str = "2,maxcpus=4"
    extra_append: str = ""
    workdir: Path = field(default_factory=lambda: Path("/tmp"))
    # A qcow2 overlay of root_image that keeps what the guest writes across QEMU runs (a
    # reboot test); None: the root image with snapshot=on (nothing kept).
    overlay: Path | None = None
    # Extra QEMU devices, each one `-device` argument (e.g. "i6300esb": a PCI watchdog).
    devices: tuple[str, ...] = ()
    # "q35,vmport=on": the ICH9 chipset, whose TCO watchdog (iTCO_wdt) has a parent device
    # in sysfs; scenario 19 only (CPU hot-add under TCG was made to work on "pc").
    machine: str = "pc,vmport=on"


def die_with_parent() -> None:
    """In the child before exec: SIGKILL QEMU if the test process dies (CI timeout)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def connect_unix(path: Path, timeout: float) -> socket.socket:
    """Connect to QEMU's unix socket once QEMU has created it."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Vm:
    """One QEMU guest. Use as a context manager; it is killed on exit whatever happens."""

    # What the console prints once the firmware is done, before which a key press would
    # stop its boot (pseries' SLOF: "Type 'boot' and press return"); None: poke at once.
    BANNER: bytes | None = None

    def __init__(self, config: VmConfig) -> None:
        self.config = config
        self.dir = config.workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serial_log = self.dir / "serial.log"
        self.console_log = self.dir / "console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.console: Console | None = None
        self.qmp: Qmp | None = None
        self.boot_s = 0.0
        # What the kernel printed, read when QEMU stopped: the next guest in the same
        # workdir truncates serial.log, and fixtures report after later guests ran.
        self._problems: list[str] | None = None

    def argv(self) -> list[str]:
        c = self.config
        append = f"{BASE_APPEND} crashkernel={CRASHKERNEL} {c.extra_append}".strip()
        argv = [
            # One TCG thread for all vCPUs: with multi-threaded TCG (QEMU 7.2) the 6.12
            # kernel's live text patching (int3) oopsed now and then during boot.
            "qemu-system-x86_64", "-accel", "tcg,thread=single",
            # vmport + VMware serial + no "hypervisor" CPUID bit: the guest then accepts
            # hot-added CPUs under TCG (see shared/docs/vm-facts.md).
            "-machine", c.machine, "-cpu", "qemu64,-hypervisor",
            "-smbios", "type=1,serial=VMware-kdumpd",
            "-smp", c.smp, "-m", c.memory,
            "-kernel", str(c.kernel.vmlinuz), "-initrd", str(c.kernel.initrd),
            "-append", append,
            "-drive", (f"file={c.overlay},if=virtio,format=qcow2" if c.overlay else
                       f"file={c.root_image},if=virtio,format=raw,snapshot=on"),
            # No VGA, CD-ROM, NIC: fewer devices to probe under TCG, a faster boot.
            "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{self.serial_log}",
            "-device", "virtio-serial",
            "-chardev", f"socket,id=shell,path={self.dir / 'console.sock'},server=on,wait=off",
            "-device", "virtconsole,chardev=shell",
            "-qmp", f"unix:{self.dir / 'qmp.sock'},server=on,wait=off",
        ]
        if c.payload is not None:
            argv += ["-drive", f"file={c.payload},if=virtio,format=raw,snapshot=on"]
        for device in c.devices:
            argv += ["-device", device]
        return argv

    def start(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Boot and wait for the root shell; ``boot_s`` is the time that took."""
        self._problems = None
        for name in ("console.sock", "qmp.sock"):
            (self.dir / name).unlink(missing_ok=True)
        started = time.monotonic()
        qemu_log = (self.dir / "qemu.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - argv list; killed in stop()
            self.argv(), stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=qemu_log,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl, before exec
        )
        qemu_log.close()
        try:
            qmp_sock = connect_unix(self.dir / "qmp.sock", 30)
            qmp_sock.settimeout(QMP_TIMEOUT_S)
            self.qmp = Qmp(qmp_sock)
            sock = connect_unix(self.dir / "console.sock", 30)
            sock.settimeout(30)
            self.console = Console(sock, self.console_log)
            if self.BANNER is not None:
                self.console.wait_banner(self.BANNER, timeout)
            self.console.wait_ready(timeout)
        except Exception as exc:
            raise GuestError(f"boot failed: {exc}\n{self.serial_tail()}") from exc
        self.boot_s = time.monotonic() - started

    def kernel_problems(self) -> list[str]:
        """Oops, BUG, WARNING and panic lines the guest kernel printed on the serial log
        (as it was when QEMU stopped, once it has)."""
        if self._problems is not None:
            return list(self._problems)
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return []
        return [line.strip() for line in text.splitlines()
                if re.search(r"Oops|BUG:|WARNING:|Kernel panic", line)]

    def serial_tail(self, chars: int = 1500) -> str:
        """The end of the serial console (kernel messages), without terminal escapes."""
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return ""
        return re.sub(r"\x1b\[[0-9;?!]*[A-Za-z]", "", text).replace("\r", "")[-chars:]

    @property
    def sh(self) -> Console:
        if self.console is None:
            raise GuestError("guest not started")
        return self.console

    @property
    def monitor(self) -> Qmp:
        if self.qmp is None:
            raise GuestError("guest not started")
        return self.qmp

    def wait_exit(self, timeout: float) -> int:
        """The guest powered itself off (or rebooted: -no-reboot): QEMU's exit status."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GuestError(f"QEMU still running {timeout:.0f} s after the guest was "
                             f"told to power off\n{self.serial_tail()}") from None

    def stop(self) -> None:
        """Power off politely (bounded), then make sure QEMU is gone."""
        if self.process is None:
            return
        if self.qmp is not None and self.process.poll() is None:
            with contextlib.suppress(GuestError, OSError):
                self.qmp.execute("quit")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self._problems is None:
            self._problems = self.kernel_problems()
        for closer in (self.console, self.qmp):
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer.close()

    def __enter__(self) -> Vm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_payload(files: dict[str, Path | bytes], out: Path) -> Path:
    """A small ext4 image holding ``files`` (name -> host path or content)."""
    staging = out.with_suffix(".d")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    total = 0
    for name, source in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        elif source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    for path in staging.rglob("*"):
        if path.is_file():
            total += path.stat().st_size
    size_mb = max(16, total // (1 << 20) * 2 + 16)
    out.unlink(missing_ok=True)
    run(["mkfs.ext4", "-q", "-F", "-L", "payload", "-d", staging, out, f"{size_mb}M"],
        timeout=120)
    shutil.rmtree(staging)
    return out


def guest_argv(argv: Sequence[str]) -> str:
    """Quote an argv for the guest shell."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)
