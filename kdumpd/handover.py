"""The hand-over file: while it exists, the distribution's kdump udev rules leave reloads
to kdumpd (see rules.d/ and docs/rules.md).

A kdumpd that stops cleanly while systemd has a start of it queued (a restart, a package
upgrade) leaves the file: no event goes to a distribution rule that may not be able to
reload (Debian 13's udevd cannot kexec), and the start after it decides over whatever
changed meanwhile (the hardware fingerprint). The unit keeps its RuntimeDirectory, where
the file lies, across restarts (RuntimeDirectoryPreserve=restart). Only there: a file
elsewhere (``[rule] handover`` moved, or kdumpd run outside the unit, with no
``$RUNTIME_DIRECTORY``) is removed at every exit, since nothing would remove it if the
queued start never came (the distribution's rules would stay silenced for good).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("kdumpd")


class Handover:
    """Holds or releases the hand-over file at ``path`` (None: nothing to tell, as in
    dry-run). A failure is logged, never raised: the loop keeps serving."""

    def __init__(self, path: Path | None, *, runtime_dirs: str | None = None) -> None:
        self.path = path
        self.held = False
        # $RUNTIME_DIRECTORY (colon-separated), read at exit when None.
        self._runtime_dirs = runtime_dirs
        self._failed = ""  # the last failure said, not said again

    def hold(self, present: bool) -> bool:
        """Create (with kdumpd's PID) or remove the file; False when that failed, and
        :attr:`held` then still says what the rules see (:meth:`follow` tries again)."""
        if self.path is None:
            self.held = present
            return True
        try:
            if present:
                _write_pid(self.path)
            else:
                self.path.unlink(missing_ok=True)
        except OSError as error:
            said = f"cannot {'create' if present else 'remove'} hand-over file {self.path}: " \
                   f"{error.strerror}"
            if said != self._failed:  # once per reason: follow() tries on every turn
                log.error("%s", said)
                self._failed = said
            return False
        self.held = present
        self._failed = ""
        return True

    def follow(self, *, handed_back: bool) -> None:
        """Keep the distribution's rules off only while kdumpd's reloads work: after a
        reload failed for good, give events back to them until kdumpd's backend works
        again (the controller then stops reloading on events: never two reloaders)."""
        if self.held != handed_back:
            return
        if handed_back and not self._failed:  # said once, not on every turn a removal fails
            log.warning("handing reloads back to the distribution's udev rules "
                        "until kdumpd's backend works again")
        self.hold(not handed_back)

    def exit(self, *, restarting: bool) -> None:
        """kdumpd stops: release the file, unless the next kdumpd starts right away."""
        if not self.held:
            return  # handed back, or never created: nothing of kdumpd's is there
        if restarting and self._in_runtime_directory():
            log.info("systemd starts kdumpd again: the hand-over file %s stays meanwhile",
                     self.path)
            return
        if restarting:
            log.info("systemd starts kdumpd again, but the hand-over file %s is not under "
                     "the unit's $RUNTIME_DIRECTORY (%s), which systemd keeps for it: "
                     "removed", self.path, self._runtime_value() or "unset")
        self.hold(False)

    def _runtime_value(self) -> str:
        if self._runtime_dirs is not None:
            return self._runtime_dirs
        return os.environ.get("RUNTIME_DIRECTORY", "")

    def _in_runtime_directory(self) -> bool:
        if self.path is None:
            return False
        where = os.path.realpath(self.path.parent)
        for directory in filter(None, self._runtime_value().split(":")):
            if not os.path.isabs(directory):
                continue
            base = os.path.realpath(directory)
            if where == base or where.startswith(base.rstrip("/") + "/"):
                return True
        return False


def _write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never through a symlink: root must not truncate a file someone pointed the name at.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
