"""The systemd edges: a notification never ends the daemon; the watchdog period."""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence

import pytest

from kdumpd import systemd
from kdumpd.command import CommandError, Completed

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


CGROUP = "0::/system.slice/kdumpd.service\n"
UNDER_SYSTEMD = {"INVOCATION_ID": "6a1c0e2b9d4f4b0e8f3a2c1d0e9f8a7b"}


class Systemctl:
    """`systemctl list-jobs` as it answers: JOB UNIT TYPE STATE per line."""

    def __init__(self, stdout: str = "", returncode: int = 0,
                 error: CommandError | None = None) -> None:
        self.stdout, self.returncode, self.error = stdout, returncode, error
        self.argv: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float, *,
                 pass_fds: Sequence[int] = ()) -> Completed:
        self.argv.append(list(argv))
        if self.error is not None:
            raise self.error
        return Completed(self.returncode, self.stdout, "Failed to connect to bus")


@pytest.mark.parametrize(("jobs", "pending"), [
    ("1234 kdumpd.service restart running\n", True),  # systemctl restart, an upgrade
    ("1234 kdumpd.service stop running\n1235 kdumpd.service start waiting\n", True),
    ("1234 kdumpd.service stop running\n", False),  # systemctl stop, shutdown, removal
    ("", False),  # SIGTERM from someone else: nobody starts kdumpd again
    ("1234 other.service restart running\n", False),
])
def test_restart_pending_reads_the_jobs_systemd_has_for_this_unit(jobs: str,
                                                                  pending: bool) -> None:
    run = Systemctl(jobs)
    assert systemd.restart_pending(run, CGROUP, UNDER_SYSTEMD) is pending
    assert run.argv == [["systemctl", "list-jobs", "--no-legend", "--plain", "kdumpd.service"]]


def test_restart_pending_is_false_whenever_systemd_cannot_say(
    caplog: pytest.LogCaptureFixture
) -> None:
    restart = "1 kdumpd.service restart running\n"
    assert not systemd.restart_pending(Systemctl(restart), CGROUP, {})  # not a service
    assert not systemd.restart_pending(Systemctl(restart), "0::/user.slice/session-3.scope\n",
                                       UNDER_SYSTEMD)
    with caplog.at_level(logging.WARNING, logger="kdumpd.systemd"):
        assert not systemd.restart_pending(Systemctl("", returncode=1), CGROUP,
                                           UNDER_SYSTEMD)
        assert not systemd.restart_pending(
            Systemctl(error=CommandError("systemctl: command not found")), CGROUP,
            UNDER_SYSTEMD)
    assert caplog.messages == [
        "cannot ask systemd whether kdumpd.service restarts: Failed to connect to bus",
        "cannot ask systemd whether kdumpd.service restarts: systemctl: command not found"]


def test_own_unit_is_the_service_in_the_cgroup_path() -> None:
    assert systemd.own_unit("0::/system.slice/kdumpd.service\n") == "kdumpd.service"
    assert systemd.own_unit("12:pids:/system.slice/x.service\n0::/\n") == "x.service"
    assert systemd.own_unit("0::/\n") is None
