"""Talking to udev: validate a rules file, and tell udevd to re-read its rules.

Commands run through an injected :data:`Runner` (argv list and a timeout, never a shell),
so tests pass a fake that records argv and answers like udevadm would.

Validation: ``udevadm verify`` exists from systemd 254; where the installed udevadm is
older (Debian 12 and RHEL 9 have 252) kdumpd falls back to its own syntax check of the
lines it wrote (:mod:`kdumpd.rules.syntax`), which it also runs first in any case.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from kdumpd.command import CommandError, Completed, Runner, run
from kdumpd.rules import syntax

VERIFY_SINCE = 254  # systemd version that added `udevadm verify`
NO_STYLE_SINCE = 254  # `udevadm verify --no-style` came with verify itself
CONTROL_SOCKET = Path("/run/udev/control")


class ValidationError(Exception):
    """The new text is not valid udev rules; ``str()`` is one line naming the problem."""


def verify_diagnostic(done: Completed, path: Path) -> str:
    """The line of ``udevadm verify``'s output that says what is wrong.

    It logs ``PATH:LINE message`` on stderr and ends with a summary on stdout
    ("Success: 0", "Fail: 1"), which says nothing about the file.
    """
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    about = [line for line in errors if line.startswith(f"{path}:")]
    located = [line for line in about if re.match(re.escape(f"{path}:") + r"\d+", line)]
    for candidates in (located, about, errors):
        if candidates:
            return candidates[0]
    return done.last_error_line()


class Udev:
    """udevadm through an injected runner.

    ``control_socket`` tells whether a udevd runs (``udevadm control`` would otherwise
    wait for its timeout or fail with a connection error).
    """

    def __init__(
        self,
        runner: Runner = run,
        *,
        udevadm: str = "udevadm",
        timeout_s: float = 10.0,
        control_socket: Path = CONTROL_SOCKET,
        exists: Callable[[Path], bool] = os.path.exists,
    ) -> None:
        self._runner = runner
        self._udevadm = udevadm
        self._timeout_s = timeout_s
        self._control_socket = control_socket
        self._exists = exists
        self._version: int | None = None
        self._asked = False

    def version(self) -> int | None:
        """systemd's version from ``udevadm --version`` (``252``), None when unknown."""
        if not self._asked:
            self._asked = True
            try:
                done = self._runner([self._udevadm, "--version"], self._timeout_s)
            except CommandError:
                return None
            match = re.match(r"\s*(\d+)", done.stdout)
            if done.returncode == 0 and match:
                self._version = int(match.group(1))
        return self._version

    def has_verify(self) -> bool:
        version = self.version()
        return version is not None and version >= VERIFY_SINCE

    def validate(self, text: str, written: set[int], path: Path) -> str:
        """Check ``text`` (already written to ``path``); return how it was checked.

        Always runs the own check of the ``written`` lines (and that their GOTOs resolve),
        then ``udevadm verify path`` where available. Raises :class:`ValidationError`.
        """
        try:
            syntax.check_lines(text, written)
        except syntax.RuleSyntaxError as error:
            raise ValidationError(f"kdumpd's syntax check: {error}") from None
        if not self.has_verify():
            return "kdumpd's syntax check; udevadm verify needs systemd >= 254"
        argv = [self._udevadm, "verify", "--resolve-names=never"]
        if (self.version() or 0) >= NO_STYLE_SINCE:
            argv.append("--no-style")  # the vendor's style is not ours to judge
        argv.append(str(path))
        try:
            done = self._runner(argv, self._timeout_s)
        except CommandError as error:
            raise ValidationError(str(error)) from None
        if done.returncode != 0:
            raise ValidationError(f"udevadm verify: {verify_diagnostic(done, path)}")
        return "udevadm verify"

    def reload(self) -> str:
        """``udevadm control --reload``; returns a note. Raises :class:`CommandError`."""
        if not self._exists(self._control_socket):
            return f"no udevd is running ({self._control_socket} is missing): not reloaded"
        argv = [self._udevadm, "control", "--reload"]
        done = self._runner(argv, self._timeout_s)
        if done.returncode != 0:
            raise CommandError(f"{' '.join(argv)}: {done.last_error_line()}")
        return "udevd reloaded its rules"
