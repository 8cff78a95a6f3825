"""Hotplug events: the value type and the filter for the actions that matter."""

from __future__ import annotations

from dataclasses import dataclass

SUBSYSTEMS = ("cpu", "memory")
ACTIONS = frozenset({"add", "remove", "online", "offline"})


@dataclass(frozen=True)
class Event:
    """One udev/kernel event on a CPU or memory block device."""

    subsystem: str  # "cpu" | "memory"
    action: str  # "add" | "remove" | "online" | "offline"
    devpath: str  # e.g. "/devices/system/memory/memory42"


def relevant(subsystem: str | None, action: str | None) -> bool:
    """True for the events that can make the crash kernel's elfcorehdr stale."""
    return subsystem in SUBSYSTEMS and action in ACTIONS
