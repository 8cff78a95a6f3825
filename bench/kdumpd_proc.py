"""`kdumpd run` as a subprocess: fake sysfs root, fake backend, our own NOTIFY_SOCKET."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import measure
from kdumpd.fakes import fakesysfs

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sample:
    process_cpu_s: float  # utime + stime of all threads, 10 ms ticks
    loop_cpu_s: float  # the main (event loop) thread's time on CPU, ns resolution
    rss_kib: int | None
    hwm_kib: int | None


class KdumpdProcess:
    """One kdumpd daemon. ``start()`` returns the seconds from Popen to READY=1."""

    def __init__(
        self, workdir: Path, *, crash_hotplug: str, receive_buffer: int,
        quiet_ms: int = 50, max_delay_ms: int = 3000, delay_ms: int = 500, variant: str = "",
        source: str = "udev",
    ) -> None:
        self.workdir = workdir
        self.variant = variant
        self.quiet_s = quiet_ms / 1000
        self.root = fakesysfs.build(workdir / "root", crash_loaded="1",
                                    crash_hotplug=crash_hotplug)
        self.log = workdir / "fake.log"
        self.config = workdir / "kdumpd.toml"
        self.config.write_text(
            f'[sysfs]\nroot = "{self.root}"\n[state]\ndir = "{workdir}/state"\n'
            f'[events]\nsource = "{source}"\nquiet_ms = {quiet_ms}\nmax_delay_ms = {max_delay_ms}\n'
            f"receive_buffer_bytes = {receive_buffer}\n"
            f'[reload]\nbackend = "fake"\n'
            f'[reload.fake]\nlog = "{self.log}"\ndelay_ms = {delay_ms}\n'
            "hotplug_after_load = false\n"
            f'[rule]\nstate = "ignore"\nhandover = "{workdir}/handles-reload"\n',
            encoding="utf-8",
        )
        os.chmod(self.config, 0o600)  # kdumpd refuses config files others can write
        self.stderr_path = workdir / "kdumpd.stderr"
        self.messages: list[tuple[float, str]] = []  # (monotonic, notify datagram)
        self._ready = threading.Event()
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(workdir / "notify"))
        self._notify.settimeout(0.1)
        self._closing = False
        self._reader = threading.Thread(target=self._read_notify, daemon=True)
        self.process: subprocess.Popen[bytes] | None = None

    def _read_notify(self) -> None:
        while not self._closing:
            try:
                data = self._notify.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            message = data.decode(errors="replace")
            self.messages.append((time.monotonic(), message))
            if "READY=1" in message:
                self._ready.set()

    def start(self, timeout: float = 20.0) -> float:
        self._reader.start()
        env = {**os.environ, "NOTIFY_SOCKET": str(self.workdir / "notify"),
               "PYTHONPATH": str(REPO)}
        env.pop("JOURNAL_STREAM", None)
        module = "kdumpd"
        if self.variant:
            module = "bench.patched"
            env["KDUMPD_BENCH_DRAIN"] = self.variant
        with self.stderr_path.open("wb") as err:
            started = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, "run", "--config", str(self.config)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                self.stop()
                raise RuntimeError(f"kdumpd did not get ready: {self.stderr()[-2000:]}")
        return next(t for t, m in self.messages if "READY=1" in m) - started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def sample(self) -> Sample:
        """CPU and memory of the daemon process now."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        status = Path(f"/proc/{self.pid}/status").read_text()
        schedstat = Path(f"/proc/{self.pid}/schedstat").read_text()
        return Sample(
            process_cpu_s=measure.cpu_seconds(stat, CLOCK_TICKS),
            loop_cpu_s=int(schedstat.split()[0]) / 1e9,
            rss_kib=measure.status_kib(status, "VmRSS"),
            hwm_kib=measure.status_kib(status, "VmHWM"),
        )

    def status_count(self, word: str) -> int:
        """The latest STATUS= figure for ``word`` ("events", "reloads", "overflows")."""
        for _, message in reversed(self.messages):
            match = re.search(rf"(\d+) {word}\b|{word} (\d+)", message)
            if match and "STATUS=" in message:
                return int(match.group(1) or match.group(2))
        return 0

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (by PID), wait; returns the exit status."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            code = self.process.returncode
        self._closing = True
        if self._reader.is_alive():
            self._reader.join(1)
        self._notify.close()
        return code
