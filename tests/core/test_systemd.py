"""The systemd edges: a notification never ends the daemon; the watchdog period."""

from __future__ import annotations

import errno
import logging

import pytest

from kdumpd import systemd

SOCKET = {"NOTIFY_SOCKET": "/run/systemd/notify"}


class FlakySend:
    """sd_notify that fails with the given errors first, then records what it sent."""

    def __init__(self, *errors: OSError) -> None:
        self.errors = list(errors)
        self.sent: list[str] = []

    def __call__(self, message: str) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message)


def test_without_notify_socket_nothing_is_sent() -> None:
    send = FlakySend()
    systemd.notifier({}, send)("READY=1")
    assert send.sent == []


def test_a_notification_interrupted_by_a_signal_is_sent_again() -> None:
    # SIGTERM during a STATUS= update: sd_notify's sendmsg() fails with EINTR (seen on
    # Python 3.9 in CI: the daemon died with a traceback instead of stopping).
    send = FlakySend(InterruptedError(errno.EINTR, "Interrupted system call"))
    systemd.notifier(SOCKET, send)("STATUS=idle")
    assert send.sent == ["STATUS=idle"]


def test_a_failed_notification_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    send = FlakySend(FileNotFoundError(errno.ENOENT, "No such file or directory"))
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        systemd.notifier(SOCKET, send)("WATCHDOG=1")
    assert send.sent == []
    assert "sd_notify(WATCHDOG) failed: [Errno 2] No such file or directory" in caplog.text


def test_a_notification_interrupted_every_time_gives_up_and_says_so(
    caplog: pytest.LogCaptureFixture
) -> None:
    eintr = [InterruptedError(errno.EINTR, "x") for _ in range(systemd.NOTIFY_ATTEMPTS)]
    send = FlakySend(*eintr, InterruptedError(errno.EINTR, "x"))
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        systemd.notifier(SOCKET, send)("STOPPING=1")
    assert send.sent == [] and len(send.errors) == 1
    assert f"sd_notify(STOPPING) interrupted {systemd.NOTIFY_ATTEMPTS} times" in caplog.text


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, None),  # another process's
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval(env, pid=42) == expected
