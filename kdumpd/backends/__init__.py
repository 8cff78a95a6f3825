"""Reload backends: how the crash kernel is unloaded and loaded again.

A backend is a small object with one method, ``reload()``, that raises
:class:`BackendError` with a one-line reason. Real ones run commands through an
injected runner; the fake one only records and keeps a fake sysfs tree consistent.
"""

from __future__ import annotations

from typing import Protocol


class BackendError(Exception):
    """A reload step failed; ``str(error)`` is one line naming the step and why.

    ``unloaded`` is True when the failure came after the crash kernel was unloaded;
    ``permanent`` when retrying cannot help (a setting or the sandbox is wrong).
    """

    def __init__(self, message: str, *, unloaded: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.unloaded = unloaded
        self.permanent = permanent


class Backend(Protocol):
    name: str

    def reload(self) -> None:
        """Unload, then load the crash kernel. Raises BackendError."""

    def describe(self) -> str:
        """One line for `kdumpd status`: what a reload would run."""
