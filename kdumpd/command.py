"""Running external commands: argv lists with a timeout, never a shell.

The one place kdumpd starts a process. Callers decide what a non-zero exit means
(a backend turns it into a failed reload, udev validation into a rejected file).

A bare command name (``kexec``, ``udevadm``, ``systemctl``) is looked up in
:data:`SEARCH_PATH` only, never in the caller's ``PATH``: a root daemon or a root shell
must not run whatever an inherited ``PATH`` names first.

The timeout is a bound on the whole call: the command runs in its own process group,
which is killed at the deadline, and its output is read only until then, even when
something it started left its session (``setsid``) and keeps the pipes open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess  # noqa: S404 - argv lists only, see run()
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

SEARCH_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
KILL_WAIT_S = 1.0  # how long a killed command may take to be reaped (past the timeout)


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


def resolve(name: str, search: Sequence[str] = SEARCH_PATH) -> str:
    """The absolute path of the executable ``name`` in ``search`` (a name with a ``/`` is
    taken as it is). Raises CommandError when it is in none of them."""
    if "/" in name:
        return name
    found = shutil.which(name, path=os.pathsep.join(search))
    if found is None:
        raise CommandError(f"{name}: command not found (looked in {':'.join(search)})")
    return found


def run(argv: Sequence[str], timeout: float, *, pass_fds: Sequence[int] = (),
        search: Sequence[str] = SEARCH_PATH) -> Completed:
    """Run ``argv`` (its first word found by :func:`resolve` in ``search``) and return
    within about ``timeout`` seconds. A command still running then is killed with its
    whole process group; one that ended while something it left behind keeps its output
    open is answered with what it wrote by then. ``pass_fds`` stay open in the command
    (as ``/proc/self/fd/N``).

    Raises CommandError naming the command when it is not found, cannot start or timed out.
    """
    command = " ".join(argv)
    executable = resolve(argv[0], search)
    try:
        # Its own process group (a new session), so a timeout kills what it started too.
        process = subprocess.Popen(  # noqa: S603 - argv list, no shell
            [executable, *argv[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found") from None
    except OSError as error:
        raise CommandError(f"{command}: {error.strerror}") from None
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        # Not reaped yet (at most a zombie), so its pid and group id cannot be reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        returncode = _stop_reading(process)
        if returncode is not None and returncode != -signal.SIGKILL:
            # It had ended by itself; what it left behind held the pipes open.
            return Completed(returncode, _text(expired.output), _text(expired.stderr))
        raise CommandError(f"{command}: timed out after {timeout:g} s (killed)") from None
    return Completed(process.returncode, _text(out), _text(err))


def _stop_reading(process: subprocess.Popen[bytes]) -> int | None:
    """Close our ends of the pipes (no waiting for an EOF that may never come) and reap
    the killed command; its return code, None when it is not gone after KILL_WAIT_S."""
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        return process.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        return None  # stuck in the kernel; Popen reaps it later


def _text(data: bytes | str | None) -> str:
    """Output as text, decoded like ``text=True`` would, invalid bytes replaced."""
    if data is None:
        return ""
    text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")
