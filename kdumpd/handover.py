"""The hand-over file: while it exists, the distribution's kdump udev rules leave reloads
to kdumpd (see rules.d/ and docs/rules.md).

Under systemd the file lies in the unit's RuntimeDirectory, which the unit keeps across
restarts (RuntimeDirectoryPreserve=restart) and systemd removes when the service stops for
good. kdumpd then leaves the file at exit: a restart or a package upgrade hands no events
to a distribution rule that may not be able to reload (Debian 13's udevd cannot kexec),
and the start after it decides over whatever changed meanwhile (the hardware fingerprint).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger("kdumpd")


class Handover:
    """Holds or releases the hand-over file at ``path`` (None: nothing to tell, as in
    dry-run). A failure is logged, never raised: the loop keeps serving."""

    def __init__(self, path: Path | None, runtime_dirs: Collection[Path] = ()) -> None:
        self.path = path
        self.held = False
        # systemd's $RUNTIME_DIRECTORY: a file inside is systemd's to remove at the stop.
        self._left_to_systemd = path is not None and any(
            path.parent == directory for directory in runtime_dirs)

    def hold(self, present: bool) -> bool:
        """Create (with kdumpd's PID) or remove the file; False when that failed."""
        self.held = present
        if self.path is None:
            return True
        try:
            if present:
                _write_pid(self.path)
            else:
                self.path.unlink(missing_ok=True)
        except OSError as error:
            log.error("cannot %s hand-over file %s: %s",
                      "create" if present else "remove", self.path, error.strerror)
            return False
        return True

    def exit(self) -> None:
        """kdumpd stops: release the file, unless systemd removes it when the stop is final."""
        if not self.held:
            return  # handed back, or never created: nothing of kdumpd's is there
        if self._left_to_systemd:
            log.debug("leaving %s to systemd: removed when the service stops for good, kept "
                      "across a restart", self.path)
            return
        self.hold(False)


def runtime_dirs(value: str | None) -> tuple[Path, ...]:
    """The directories in systemd's $RUNTIME_DIRECTORY (colon-separated; unset: none)."""
    return tuple(Path(part) for part in (value or "").split(":") if part.startswith("/"))


def _write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never through a symlink: root must not truncate a file someone pointed the name at.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
