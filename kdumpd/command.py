"""Running external commands: argv lists with a timeout, never a shell.

The one place kdumpd starts a process. Callers decide what a non-zero exit means
(a backend turns it into a failed reload, udev validation into a rejected file).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess  # noqa: S404 - argv lists only, see run()
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class CommandError(Exception):
    """A command could not run at all (not found, timed out); ``str()`` is one line."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def last_error_line(self) -> str:
        """The last non-empty line of stderr (else stdout), for a one-line message."""
        lines = [line.strip() for line in (self.stderr + "\n" + self.stdout).splitlines()]
        lines = [line for line in lines if line]
        return lines[-1] if lines else f"exit status {self.returncode}"


class Runner(Protocol):
    """What runs a command: :func:`run`, or a test's fake answering like the real tool."""

    def __call__(self, argv: Sequence[str], timeout: float, *,
                 pass_fds: Sequence[int] = ()) -> Completed: ...


def run(argv: Sequence[str], timeout: float, *, pass_fds: Sequence[int] = ()) -> Completed:
    """Run ``argv`` with ``timeout`` seconds; a command that runs over is killed, with
    whatever it started. ``pass_fds`` stay open in the command (as ``/proc/self/fd/N``).

    Raises CommandError naming the command when it is not found, cannot start or timed out.
    """
    command = " ".join(argv)
    try:
        # Its own process group, so a timeout kills what it started too.
        process = subprocess.Popen(  # noqa: S603 - argv list, no shell
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found") from None
    except OSError as error:
        raise CommandError(f"{command}: {error.strerror}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise CommandError(f"{command}: timed out after {timeout:g} s (killed)") from None
    return Completed(process.returncode, stdout, stderr)
