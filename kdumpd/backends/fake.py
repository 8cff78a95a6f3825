"""A fake backend for tests and demos: records loads, models the kernel in a fake sysfs.

Like the kernel's load syscalls, one load replaces the loaded crash image: the old image
is freed first, so ``kexec_crash_loaded`` (and ``crash_hotplug``, which reads 0 while the
kexec lock is held) read 0 only *inside* the load, for ``delay_ms``. A load that fails
(``fail``: the first N loads) fails inside the syscall and leaves no crash kernel, the
worst case a real backend can meet.

Each load appends one JSON line to the log: ``{"op": "load", "t": <unix seconds when it
started>, "ok": bool, "pid": ...}``. It never runs a command.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from kdumpd.backends import BackendError
from kdumpd.events import SUBSYSTEMS
from kdumpd.sysfs import Sysfs


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        log: Path,
        sysfs: Sysfs,
        *,
        delay_ms: int = 0,
        fail: int = 0,
        hotplug_after_load: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.log = log
        self._sysfs = sysfs
        self._delay_s = delay_ms / 1000
        self._fail_left = fail
        self._hotplug_after_load = hotplug_after_load
        self._sleep = sleep
        self._wall = wall

    def reload(self) -> None:
        started = self._wall()
        ok = self._fail_left <= 0
        if not ok:
            self._fail_left -= 1
        # Inside the syscall: the old image is freed and the kexec lock is held.
        self._write_state(loaded="0", hotplug="0")
        if self._delay_s:
            self._sleep(self._delay_s)
        if ok:
            self._write_state(loaded="1", hotplug="1" if self._hotplug_after_load else "0")
        line = json.dumps({"op": "load", "t": round(started, 6), "ok": ok, "pid": os.getpid()})
        try:
            fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as error:
            raise BackendError(f"fake backend log {self.log}: {error.strerror}") from None
        if not ok:
            raise BackendError("fake load failed (reload.fake.fail)")

    def _write_state(self, *, loaded: str, hotplug: str) -> None:
        self._write("kernel/kexec_crash_loaded", loaded)
        for subsystem in SUBSYSTEMS:
            path = f"devices/system/{subsystem}/crash_hotplug"
            if self._sysfs.path(path).exists():
                self._write(path, hotplug)

    def _write(self, relative: str, value: str) -> None:
        path = self._sysfs.path(relative)
        try:
            path.write_text(value + "\n", encoding="ascii")
        except OSError as error:
            raise BackendError(f"fake backend cannot write {path}: {error.strerror}") from None

    def probe(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"fake (log {self.log})"
