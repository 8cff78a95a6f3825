"""The distributions' own reload commands: Fedora/RHEL kdumpctl, Debian/Ubuntu kdump-config."""

from __future__ import annotations

import shutil
from typing import Callable, Optional

from kdumpd.backends.runner import CheckedRunner

Which = Callable[[str], Optional[str]]


class ToolBackend:
    """Delegates the whole reload to the distribution's tool (which unloads and loads)."""

    def __init__(self, name: str, argv: tuple[str, ...], runner: CheckedRunner, timeout_s: float,
                 which: Which = shutil.which) -> None:
        self.name = name
        self.argv = argv
        self._run = runner
        self._timeout_s = timeout_s
        self._which = which
        self.last_command = ""

    def reload(self) -> None:
        self.last_command = " ".join(self.argv)
        self._run(self.argv, self._timeout_s)

    def probe(self) -> str | None:
        return None if self._which(self.argv[0]) else f"{self.argv[0]}: command not found"

    def describe(self) -> str:
        return " ".join(self.argv)


def kdumpctl(runner: CheckedRunner, timeout_s: float) -> ToolBackend:
    return ToolBackend("kdumpctl", ("kdumpctl", "reload"), runner, timeout_s)


def kdump_config(runner: CheckedRunner, timeout_s: float) -> ToolBackend:
    return ToolBackend("kdump-config", ("kdump-config", "reload"), runner, timeout_s)
