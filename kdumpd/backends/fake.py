"""A fake backend for tests and demos: records loads, which a fake kernel carries out.

The loads go to a :class:`~kdumpd.fakes.fakekernel.FakeKernel` over the fake sysfs: like the
kernel's load syscalls, one load replaces the loaded crash image and holds the kexec lock
while it runs (``delay_ms``): ``kexec_crash_loaded`` and ``crash_hotplug`` read 0 only
*inside* the load, a hotplug meanwhile is skipped by the kernel's own update, and a load
that meets the lock held fails with EBUSY. ``hotplug_after_load`` chooses a
hotplug-capable load (``kexec -s``) over a plain one (``-c``). A load that fails
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
from kdumpd.fakes.fakekernel import FakeKernel, KexecBusy
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
        kernel: FakeKernel | None = None,
    ) -> None:
        self.log = log
        self.kernel = kernel or FakeKernel(sysfs)
        self.delay_s = delay_ms / 1000  # how long each load holds the kexec lock
        self._fail_left = fail
        self._kind = "file" if hotplug_after_load else "plain"
        self._sleep = sleep
        self._wall = wall
        self.last_command = ""

    def reload(self) -> None:
        self.last_command = f"fake {self._kind} load"
        started = self._wall()
        ok = self._fail_left <= 0
        if not ok:
            self._fail_left -= 1
        try:
            self.kernel.load(self._kind, ok=ok,
                             during=(lambda: self._sleep(self.delay_s)) if self.delay_s
                             else None)
        except KexecBusy as error:
            raise BackendError(f"fake load: {error}") from None
        except OSError as error:
            raise BackendError(f"fake backend cannot write the fake sysfs: {error}") from None
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

    def fail_next(self, count: int) -> None:
        """The next ``count`` loads fail inside the syscall (a fault run injects them)."""
        self._fail_left += count

    def probe(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"fake (log {self.log})"
