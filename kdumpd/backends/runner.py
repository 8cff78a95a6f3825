"""The backends' command runner: :func:`kdumpd.command.run`, where a command that fails
is a failed reload step (BackendError) instead of a status to look at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kdumpd import command
from kdumpd.backends import BackendError


class CheckedRunner(Protocol):
    """:func:`run`, or a test's fake: stdout, or BackendError."""

    def __call__(self, argv: Sequence[str], timeout: float, *,
                 pass_fds: Sequence[int] = ()) -> str: ...


STDERR_LINES = 3  # how much of a failed command's stderr goes into the one-line error


def run(argv: Sequence[str], timeout: float, *, pass_fds: Sequence[int] = ()) -> str:
    """Run ``argv`` (see :func:`kdumpd.command.run`) and return its stdout.

    Raises BackendError naming the command: not found, timed out, or non-zero exit
    (with the last lines of its stderr: kexec says why before it says "Cannot load").
    """
    try:
        done = command.run(argv, timeout, pass_fds=pass_fds)
    except command.CommandError as error:
        raise BackendError(str(error)) from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        detail = f": {' / '.join(lines[-STDERR_LINES:])}" if lines else ""
        raise BackendError(f"{' '.join(argv)}: exit status {done.returncode}{detail}")
    return done.stdout
