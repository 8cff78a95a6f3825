"""`kdumpd run` as a real process, signalled during its start-up: a SIGTERM stops it
cleanly with a word in the log, a SIGHUP is applied once the loop runs, never the
default action (issue 30 item 6: rc -1 and no log line).

Time zero is when the process has its handlers (the first thing `kdumpd run` does,
seen in /proc/PID/status); before that, only the interpreter's own start runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.core.test_cli import write_config

WAIT_S = 30.0
OFFSETS_S = (0.0, 0.01, 0.05, 0.1)
# Start-up (imports, config, rules, the event socket) takes about 0.15 s after the
# handlers: a signal this soon always comes before the loop's own handlers.
SURELY_EARLY_S = 0.01
LISTENING = "listening for cpu and memory events"


def wait_for(condition: Callable[[], bool], what: str, within_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:g} s: {what}")
        time.sleep(0.001)


def caught(pid: int) -> int:
    """The SigCgt mask of ``pid`` (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def catches(pid: int, *signums: int) -> bool:
    mask = caught(pid)
    return all(mask & (1 << (signum - 1)) for signum in signums)


class Kdumpd:
    """`python -m kdumpd run --dry-run` on a fake tree, its log lines read as they come."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kdumpd", "run", "--dry-run", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def said(self, *texts: str) -> bool:
        return any(text in line for line in list(self.lines) for text in texts)

    def signal_at(self, offset_s: float, signum: int) -> None:
        """``signum`` ``offset_s`` after the process catches the daemon's signals."""
        wait_for(lambda: catches(self.process.pid, signal.SIGTERM, signal.SIGHUP)
                 or self.process.poll() is not None, "kdumpd run catches its signals")
        time.sleep(offset_s)  # the stimulus' timing, not a wait for a result
        self.process.send_signal(signum)

    def exit_status(self) -> int:
        status = self.process.wait(WAIT_S)
        self._reader.join(WAIT_S)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@pytest.fixture
def config(tmp_path: Path, root: Path) -> Path:
    return write_config(tmp_path, root, '[events]\nsource = "kernel"\n'
                        '[metrics]\ntextfile_dir = ""\n')


@pytest.fixture
def start(config: Path) -> Iterator[Callable[[], Kdumpd]]:
    started: list[Kdumpd] = []

    def start() -> Kdumpd:
        started.append(Kdumpd(config))
        return started[-1]

    yield start
    for daemon in started:  # each ended by its own pid, whatever the test did
        daemon.kill()


@pytest.mark.parametrize("offset_s", OFFSETS_S)
def test_a_sigterm_during_start_up_is_a_clean_stop_that_says_so(
        start: Callable[[], Kdumpd], offset_s: float) -> None:
    daemon = start()
    daemon.signal_at(offset_s, signal.SIGTERM)
    assert daemon.exit_status() == 0, daemon.lines
    early = "SIGTERM arrived during start-up: stopping before serving"
    assert daemon.said(early, "stopping (SIGTERM)"), daemon.lines
    assert offset_s > SURELY_EARLY_S or daemon.said(early), daemon.lines
    assert not daemon.said("Traceback"), daemon.lines


@pytest.mark.parametrize("offset_s", OFFSETS_S)
def test_a_sighup_during_start_up_is_applied_once_the_loop_runs(
        start: Callable[[], Kdumpd], offset_s: float) -> None:
    daemon = start()
    daemon.signal_at(offset_s, signal.SIGHUP)
    wait_for(lambda: daemon.said("configuration reloaded") or daemon.process.poll() is not None,
             "the configuration is read again")
    assert daemon.process.poll() is None, daemon.lines  # still serving
    assert daemon.said(LISTENING), daemon.lines
    early = "SIGHUP arrived during start-up: the configuration is read again"
    assert offset_s > SURELY_EARLY_S or daemon.said(early), daemon.lines
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.exit_status() == 0, daemon.lines
    assert daemon.said("stopping (SIGTERM)"), daemon.lines


def test_other_commands_keep_the_default_actions() -> None:
    from kdumpd.launch import command_word

    assert command_word(["-v", "run", "--dry-run"]) == "run"
    assert command_word(["status", "--config", "run"]) == "status"
    assert command_word(["--version"]) is None
