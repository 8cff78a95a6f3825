"""Whether udevd answers: `udevadm control --ping` through the command runner.

The fakes answer like udevadm 252 does (exit 0 when udevd took the ping and closed the
connection; 1 with "Failed to send a ping message" or "Failed to wait for daemon to
reply: Connection timed out"). The real udevadm against a stand-in udevd is in
tests/integration/test_udev_ping.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kdumpd.command import CommandError, Completed
from kdumpd.source import UDEV_PING_TIMEOUT_S, resolve_source, udev_answers


class FakeUdevadm:
    def __init__(self, returncode: int = 0, raises: CommandError | None = None) -> None:
        self.returncode = returncode
        self.raises = raises
        self.calls: list[tuple[list[str], float]] = []

    def __call__(self, argv: Sequence[str], timeout: float, *,
                 pass_fds: Sequence[int] = ()) -> Completed:
        self.calls.append((list(argv), timeout))
        if self.raises is not None:
            raise self.raises
        stderr = "" if self.returncode == 0 else "Failed to send a ping message: No such file"
        return Completed(self.returncode, "", stderr)


def test_udevd_answers_when_udevadm_ping_succeeds() -> None:
    udevadm = FakeUdevadm(0)

    assert udev_answers(udevadm) is True
    argv, timeout = udevadm.calls[0]
    assert argv == ["udevadm", "control", "--ping", f"--timeout={UDEV_PING_TIMEOUT_S}"]
    # udevadm gives up on a udevd that never replies after its --timeout (1.24 s for
    # --timeout=1, measured); the runner kills it only later, for a connect() that
    # blocks on a full backlog, which --timeout does not cover.
    assert timeout > UDEV_PING_TIMEOUT_S + 0.5


def test_udevd_does_not_answer_when_the_ping_fails() -> None:
    assert udev_answers(FakeUdevadm(1)) is False


@pytest.mark.parametrize("error", ["udevadm: command not found",
                                   "udevadm control --ping --timeout=1: timed out after 3 s"])
def test_udevd_does_not_answer_when_udevadm_cannot_run_or_hangs(error: str) -> None:
    assert udev_answers(FakeUdevadm(raises=CommandError(error))) is False


def test_auto_resolves_by_the_ping_and_other_settings_never_ping() -> None:
    assert resolve_source("auto", lambda: udev_answers(FakeUdevadm(0))) == "udev"
    assert resolve_source("auto", lambda: udev_answers(FakeUdevadm(1))) == "kernel"
    udevadm = FakeUdevadm(0)
    assert resolve_source("kernel", lambda: udev_answers(udevadm)) == "kernel"
    assert udevadm.calls == []
