"""The command runner on real processes: the timeout is a bound, and bare names are
found in a fixed list of system directories, never through PATH."""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd import command
from kdumpd.command import CommandError

SH = "/bin/sh"
TIMEOUT_S = 1.0


def state(pid: int) -> str:
    """/proc's state letter of ``pid`` ("" when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return text.rsplit(")", 1)[1].split()[0]


def dead(pid: int, within_s: float = 5.0) -> bool:
    """Gone or a zombie (its parent was killed; pid 1 may not reap it), waited for."""
    deadline = time.monotonic() + within_s
    while state(pid) not in ("", "Z"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def pid_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Where the test's shells write the pids of what they leave behind, which the test
    ends by pid afterwards whatever happened."""
    files = (tmp_path / "escaped.pid", tmp_path / "grouped.pid")
    yield files
    for file in files:
        if file.exists():
            pid = int(file.read_text())
            if state(pid) not in ("", "Z"):
                os.kill(pid, signal.SIGKILL)


def test_a_command_that_ends_while_an_escaped_child_holds_its_output_returns_in_time(
        pid_files: tuple[Path, Path]) -> None:
    escaped, _ = pid_files
    # The child leaves its session (setsid) and keeps stdout open for 30 s: no EOF
    # before then. The command itself is done at once.
    script = f'setsid sleep 30 & echo $! > {escaped}; echo hi'
    started = time.monotonic()
    done = command.run([SH, "-c", script], TIMEOUT_S)
    assert time.monotonic() - started < TIMEOUT_S + 1.0
    assert (done.returncode, done.stdout) == (0, "hi\n")


def test_a_command_over_its_timeout_is_killed_with_its_group_and_returns_in_time(
        pid_files: tuple[Path, Path]) -> None:
    escaped, grouped = pid_files
    script = (f"setsid sleep 30 & echo $! > {escaped}; "
              f"sleep 30 & echo $! > {grouped}; echo started; wait")
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"timed out after 1 s \(killed\)$"):
        command.run([SH, "-c", script], TIMEOUT_S)
    assert time.monotonic() - started < TIMEOUT_S + 1.0
    assert dead(int(grouped.read_text()))  # what it started in its group went with it
    assert state(int(escaped.read_text())) not in ("", "Z")  # setsid: out of reach


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(stat.S_IRWXU)
    return path


def test_bare_names_are_found_in_the_fixed_list_not_in_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = tmp_path / "planted"
    planted.mkdir()
    executable(planted / "true", "#!/bin/sh\necho planted\n")
    monkeypatch.setenv("PATH", f"{planted}:{os.environ.get('PATH', '')}")
    done = command.run(["true"], 10)
    assert (done.returncode, done.stdout) == (0, "")  # /usr/bin/true, not the planted one
    assert command.resolve("true") in ("/usr/bin/true", "/bin/true")
    assert command.resolve("true", search=(str(planted),)) == str(planted / "true")


def test_a_name_in_none_of_the_directories_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"^kdumpd-no-such-tool: command not found "
                       r"\(looked in /usr/sbin:/usr/bin:/sbin:/bin\)$"):
        command.run(["kdumpd-no-such-tool"], 10)
    assert command.resolve("/opt/tool") == "/opt/tool"  # a path is taken as it is
