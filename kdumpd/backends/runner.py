"""The backends' command runner: a command that fails is a failed reload step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

from kdumpd import command
from kdumpd.backends import BackendError

Runner = Callable[[Sequence[str], float], str]
STDERR_LINES = 3  # how much of a failed command's stderr goes into the one-line error


def run(argv: Sequence[str], timeout: float) -> str:
    """Run ``argv`` (see :func:`kdumpd.command.run`) and return its stdout.

    Raises BackendError naming the command: not found, timed out, or non-zero exit
    (with the last lines of its stderr: kexec says why before it says "Cannot load").
    """
    try:
        done = command.run(argv, timeout)
    except command.CommandError as error:
        raise BackendError(str(error)) from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        detail = f": {' / '.join(lines[-STDERR_LINES:])}" if lines else ""
        raise BackendError(f"{' '.join(argv)}: exit status {done.returncode}{detail}")
    return done.stdout
