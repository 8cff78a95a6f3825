"""The distributions' own reload commands: Fedora/RHEL kdumpctl, Debian/Ubuntu kdump-config."""

from __future__ import annotations

from kdumpd.backends.runner import Runner


class ToolBackend:
    """Delegates the whole reload to the distribution's tool (which unloads and loads)."""

    def __init__(self, name: str, argv: tuple[str, ...], runner: Runner, timeout_s: float) -> None:
        self.name = name
        self.argv = argv
        self._run = runner
        self._timeout_s = timeout_s

    def reload(self) -> None:
        self._run(self.argv, self._timeout_s)

    def describe(self) -> str:
        return " ".join(self.argv)


def kdumpctl(runner: Runner, timeout_s: float) -> ToolBackend:
    return ToolBackend("kdumpctl", ("kdumpctl", "reload"), runner, timeout_s)


def kdump_config(runner: Runner, timeout_s: float) -> ToolBackend:
    return ToolBackend("kdump-config", ("kdump-config", "reload"), runner, timeout_s)
