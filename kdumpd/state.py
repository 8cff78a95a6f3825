"""What kdumpd must remember across restarts, tied to the boot it describes.

One small JSON file, ``<state dir>/state.json``, replaced atomically: whether kdumpd owes
a crash kernel it unloaded, the fingerprint of the hardware the loaded image describes,
and how the image was last loaded. A file from another boot (``boot_id``) describes a
crash kernel that no longer exists and is ignored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from kdumpd import exposure
from kdumpd.atomic import WriteError, write_file
from kdumpd.exposure import Exposure
from kdumpd.security import fd_problem
from kdumpd.smallfile import read_regular

log = logging.getLogger("kdumpd")

FILE_NAME = "state.json"
MAX_BYTES = 64 * 1024
VERSION = 1


@dataclass(frozen=True)
class LastLoad:
    at: float  # unix seconds when the load started
    how: str  # the backend's description, "kexec -p -c --hotplug ..."
    ok: bool
    duration_s: float


@dataclass(frozen=True)
class State:
    boot_id: str
    owed: bool = False  # a reload of ours left no crash kernel loaded: restore it
    loading: bool = False  # a load of ours is in flight (if kdumpd dies now, it may owe one)
    fingerprint: str = ""  # the hardware the loaded image describes ("" unknown)
    hardware: str = ""  # the same, for people
    last_load: LastLoad | None = None
    exposure: Exposure = Exposure()  # this boot's exposure (exposure.py)

    def with_hardware(self, fingerprint: str, hardware: str) -> State:
        return replace(self, fingerprint=fingerprint, hardware=hardware)


# How often a state that could not be written is tried again (state.json a directory,
# a full or read-only filesystem): the daemon's timer, while the write fails.
RETRY_S = 30.0


class Store(Protocol):
    boot_id: str
    problem: str | None  # why the last write failed; None: the state on disk is current
    write_failures: int  # writes that failed since kdumpd started

    def load(self) -> State | None: ...

    def save(self, state: State) -> None: ...

    def retry(self) -> None:
        """Write the state a failed write left unsaved again (nothing when none)."""
        ...


def read_boot_id(root: Path) -> str:
    """This boot's id (``proc/sys/kernel/random/boot_id`` under ``root``); "" if unreadable."""
    try:
        data = read_regular(root / "proc/sys/kernel/random/boot_id", 64)
        return data.decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


class FileStore:
    """The state file in ``directory``; ``writable=False`` (dry run) never writes."""

    def __init__(self, directory: Path, boot_id: str, *, writable: bool = True) -> None:
        self.path = directory / FILE_NAME
        self.boot_id = boot_id
        self.writable = writable
        self.problem: str | None = None
        self.write_failures = 0
        self._unsaved: State | None = None  # what a failed write owes the disk

    def load(self) -> State | None:
        """The state of this boot, or None (none yet, another boot's, or unusable: logged)."""
        try:
            # Never blocks (a FIFO), never reads without bound, and as root the file read
            # is the file checked: root's, not writable by others.
            raw = read_regular(self.path, MAX_BYTES + 1, fd_problem)
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cannot read state file %s: %s; starting without it",
                        self.path, error.strerror)
            return None
        try:
            if len(raw) > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES} bytes")
            state = _from_json(json.loads(raw, parse_constant=_reject_constant))
        except (ValueError, TypeError, KeyError, RecursionError) as error:
            log.warning("state file %s is unusable (%s); starting without it", self.path, error)
            return None
        if not self.boot_id or state.boot_id != self.boot_id:
            return None
        return state

    def save(self, state: State) -> None:
        """Replace the file atomically. A failure never stops the daemon, which keeps the
        state (a crash kernel it owes) in memory and acts on it: it is logged at ERROR
        once per different reason, counted (``write_failures``), kept in ``problem`` (for
        status and the metrics) and tried again by :meth:`retry`; the write that works
        again is said at INFO."""
        if not self.writable:
            return
        try:
            data = json.dumps({"version": VERSION, **asdict(state)}, indent=1,
                              sort_keys=True, allow_nan=False)
        except ValueError as error:  # a non-finite number: the file would not be JSON
            self._failed(state, str(error))
            return
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            write_file(self.path, (data + "\n").encode())
        except (OSError, WriteError) as error:
            self._failed(state, str(error) if isinstance(error, WriteError)
                         else f"{error.strerror or error}")
            return
        if self.problem is not None:
            log.info("state saved to %s again (after %d failed write(s))", self.path,
                     self.write_failures)
        self.problem = None
        self._unsaved = None

    def retry(self) -> None:
        if self._unsaved is not None:
            self.save(self._unsaved)

    def _failed(self, state: State, problem: str) -> None:
        self.write_failures += 1
        self._unsaved = state
        if problem != self.problem:
            log.error("cannot save state to %s: %s; kdumpd keeps it in memory (a crash "
                      "kernel it owes is still restored) and tries again every %.0f s, but "
                      "a restart would not know it", self.path, problem, RETRY_S)
        self.problem = problem


class MemoryStore:
    """A store that keeps the state in memory: tests and the demo."""

    def __init__(self, state: State | None = None, boot_id: str = "boot-1") -> None:
        self.boot_id = boot_id
        self.state = state
        self.saves = 0
        self.problem: str | None = None
        self.write_failures = 0

    def load(self) -> State | None:
        return self.state

    def save(self, state: State) -> None:
        self.state = state
        self.saves += 1

    def retry(self) -> None:
        pass


# Unix seconds and durations kdumpd writes: anything else was not written by it.
_MAX_SECONDS = 1e11


def _finite(value: Any, name: str) -> float:
    """A number kdumpd could have written: finite, 0 to 1e11; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= _MAX_SECONDS:  # NaN and infinities fail the range too
        raise ValueError(f"{name} is not a number kdumpd writes")
    return float(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _from_json(document: Any) -> State:
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError("not a kdumpd state file of version 1")
    last = document.get("last_load")
    last_load = None
    if last is not None:
        last_load = LastLoad(at=_finite(last["at"], "last_load.at"), how=str(last["how"]),
                             ok=bool(last["ok"]),
                             duration_s=_finite(last["duration_s"], "last_load.duration_s"))
    owed = document.get("owed")
    if not isinstance(owed, bool):
        raise ValueError("owed is not a boolean")
    return State(
        boot_id=str(document["boot_id"]),
        owed=owed,
        loading=document.get("loading") is True,
        fingerprint=str(document.get("fingerprint", "")),
        hardware=str(document.get("hardware", "")),
        last_load=last_load,
        exposure=exposure.from_json(document.get("exposure")),
    )
