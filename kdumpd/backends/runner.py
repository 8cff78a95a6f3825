"""Running external commands: argv lists with a timeout, never a shell."""

from __future__ import annotations

import subprocess  # noqa: S404 - argv lists only, see run()
from collections.abc import Sequence
from typing import Callable

from kdumpd.backends import BackendError

Runner = Callable[[Sequence[str], float], str]


def run(argv: Sequence[str], timeout: float) -> str:
    """Run ``argv`` and return its stdout. A timeout kills the command.

    Raises BackendError naming the command: not found, timed out, or non-zero exit
    (with the last line of stderr).
    """
    command = " ".join(argv)
    try:
        done = subprocess.run(  # noqa: S603 - argv list from configuration, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise BackendError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{command}: timed out after {timeout:g} s (killed)") from None
    except OSError as error:
        raise BackendError(f"{command}: {error.strerror}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        detail = f": {lines[-1].strip()}" if lines else ""
        raise BackendError(f"{command}: exit status {done.returncode}{detail}")
    return done.stdout
