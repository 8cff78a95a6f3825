"""Reload backends: how the crash kernel is loaded again.

A backend is a small object with ``reload()``, which raises :class:`BackendError` with a
one-line reason, ``probe()``, which says without touching the loaded image whether a
reload could work now, ``describe()`` and ``last_command``. Real ones run commands
through an injected runner; the fake one only records and keeps a fake sysfs tree consistent.
"""

from __future__ import annotations

from typing import Optional, Protocol


class BackendError(Exception):
    """A reload step failed; ``str(error)`` is one line naming the step and why.

    ``permanent`` when retrying cannot help (a setting or the sandbox is wrong).
    Whether the crash kernel survived is read from sysfs afterwards, not guessed here.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Backend(Protocol):
    name: str
    # The exact command of the last load attempt ("" before the first), for `kdumpd status`.
    last_command: str

    def reload(self) -> None:
        """Load the crash kernel again (replacing the loaded one). Raises BackendError."""

    def probe(self) -> Optional[str]:
        """Why a reload cannot work now, or None; never touches the loaded image."""

    def describe(self) -> str:
        """One line for `kdumpd status`: what a reload would run."""
