"""A fake backend for tests and demos: records operations, keeps a fake sysfs consistent.

Each operation appends one JSON line to the log: ``{"op": "unload"|"load", "t": <unix
seconds when it started>, "ok": bool}``. It never runs a command.
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
        self._operation("unload", loaded="0", ok=True)
        ok = self._fail_left <= 0
        if not ok:
            self._fail_left -= 1
        self._operation("load", loaded="1" if ok else "0", ok=ok)
        if not ok:
            raise BackendError("fake load failed (reload.fake.fail)", unloaded=True)

    def _operation(self, op: str, *, loaded: str, ok: bool) -> None:
        started = self._wall()
        if self._delay_s:
            self._sleep(self._delay_s)
        # Like the kernel: crash_hotplug reads 0 with nothing loaded, 1 after a
        # hotplug-capable load (only modelled when asked to).
        self._write("kernel/kexec_crash_loaded", loaded)
        if self._hotplug_after_load:
            for subsystem in SUBSYSTEMS:
                self._write(f"devices/system/{subsystem}/crash_hotplug", loaded)
        line = json.dumps({"op": op, "t": round(started, 6), "ok": ok, "pid": os.getpid()})
        try:
            with self.log.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as error:
            raise BackendError(f"fake backend log {self.log}: {error.strerror}") from None

    def _write(self, relative: str, value: str) -> None:
        path = self._sysfs.path(relative)
        try:
            path.write_text(value + "\n", encoding="ascii")
        except OSError as error:
            raise BackendError(f"fake backend cannot write {path}: {error.strerror}") from None

    def describe(self) -> str:
        return f"fake (log {self.log})"
