"""`kdumpd status`: what the kernel says, which backend would run, and the verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kdumpd.backends import Backend
from kdumpd.events import SUBSYSTEMS
from kdumpd.policy import kernel_updates
from kdumpd.sysfs import OK, Sysfs, Value


@dataclass(frozen=True)
class Status:
    crash_loaded: Value
    crash_size: Value
    elfcorehdr_size: Value
    crash_hotplug: dict[str, Value]
    backend: str
    backend_action: str

    @property
    def loaded(self) -> bool:
        return self.crash_loaded.kind == OK and self.crash_loaded.text == "1"

    def kernel_keeps_current(self, subsystem: str) -> bool:
        return self.loaded and kernel_updates(self.crash_hotplug[subsystem])

    def as_dict(self) -> dict[str, Any]:
        return {
            "kexec_crash_loaded": str(self.crash_loaded),
            "kexec_crash_size": str(self.crash_size),
            "crash_elfcorehdr_size": str(self.elfcorehdr_size),
            "crash_hotplug": {s: str(v) for s, v in self.crash_hotplug.items()},
            "kernel_keeps_current": {s: self.kernel_keeps_current(s) for s in self.crash_hotplug},
            "crash_kernel_loaded": self.loaded,
            "backend": self.backend,
            "backend_action": self.backend_action,
        }

    def as_text(self) -> str:
        loaded = "loaded" if self.loaded else "NOT loaded"
        lines = [
            f"crash kernel: {loaded} (kexec_crash_loaded={self.crash_loaded}, "
            f"kexec_crash_size={self.crash_size}, crash_elfcorehdr_size={self.elfcorehdr_size})",
        ]
        for subsystem, value in self.crash_hotplug.items():
            verdict = "yes" if self.kernel_keeps_current(subsystem) else "no"
            lines.append(
                f"{subsystem + ':':8}crash_hotplug={value}; "
                f"kernel keeps the crash kernel current: {verdict}"
            )
        lines.append(f"backend: {self.backend} ({self.backend_action})")
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def gather(sysfs: Sysfs, backend: Backend) -> Status:
    snapshot = sysfs.snapshot(SUBSYSTEMS)
    return Status(
        crash_loaded=snapshot.crash_loaded,
        crash_size=sysfs.read("kernel/kexec_crash_size"),
        elfcorehdr_size=sysfs.read("kernel/crash_elfcorehdr_size"),
        crash_hotplug=snapshot.crash_hotplug,
        backend=backend.name,
        backend_action=backend.describe(),
    )
