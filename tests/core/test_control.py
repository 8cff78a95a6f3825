"""The control socket alone, and the daemon answering `kdumpd reload` over it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from kdumpd import fakesysfs
from kdumpd.control import Answer, ControlError, ControlServer, ask, reply
from tests.core.test_daemon import Harness, events, wait_for


def serve_one(server: ControlServer, answer: Answer) -> threading.Thread:
    def run() -> None:
        for _ in range(1000):
            request = server.accept()
            if request is not None:
                reply(request[0], answer)
                return
            threading.Event().wait(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_request_gets_the_answer_and_the_socket_is_root_only(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control", allowed_uid=os.getuid())
    server.open()
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "control").st_mode) == 0o600
        thread = serve_one(server, Answer(True, "memory: crash_hotplug=0", True, "reloaded"))
        assert ask(tmp_path / "control", 10) == Answer(True, "memory: crash_hotplug=0", True,
                                                        "reloaded")
        thread.join(10)
    finally:
        server.close()
    assert not (tmp_path / "control").exists()


def test_a_peer_of_another_uid_is_refused_by_its_credentials(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control", allowed_uid=os.getuid() + 12345)
    server.open()
    try:
        serve_one(server, Answer(True, "must not be sent"))  # refuses, then waits
        answer = ask(tmp_path / "control", 10)
    finally:
        server.close()
    assert not answer.ok and answer.reason == f"refused: uid {os.getuid()} may not ask (root only)"


def test_a_stale_socket_is_replaced_and_any_other_file_is_not(tmp_path: Path) -> None:
    first = ControlServer(tmp_path / "control", allowed_uid=os.getuid())
    first.open()
    first._sock.close()  # type: ignore[union-attr]  # died without cleaning up
    second = ControlServer(tmp_path / "control", allowed_uid=os.getuid())
    second.open()
    second.close()
    (tmp_path / "control").write_text("precious\n")
    with pytest.raises(ControlError, match="exists and is not a socket: not replaced"):
        ControlServer(tmp_path / "control", allowed_uid=os.getuid()).open()
    assert (tmp_path / "control").read_text() == "precious\n"


def test_no_daemon_listening_is_told_apart_from_a_bad_answer(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ask(tmp_path / "none", 1)


@pytest.mark.parametrize(("crash_hotplug", "reload", "detail"), [
    ("0", True, "reloaded in "), ("1", False, ""),
])
def test_the_daemon_answers_with_its_decision_and_the_reloads_outcome(
    tmp_path: Path, crash_hotplug: str, reload: bool, detail: str,
) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug=crash_hotplug)
    h = Harness(root, control=ControlServer(tmp_path / "control", allowed_uid=os.getuid()))
    answers: list[Answer] = []

    def script(h: Harness) -> None:
        answers.append(ask(tmp_path / "control", 30))

    assert h.run(script) == 0
    (answer,) = answers
    assert answer.reload is reload and answer.ok
    assert answer.detail.startswith(detail) and (detail or answer.detail == "")
    assert h.ops() == (["load"] if reload else [])
    assert not (tmp_path / "control").exists()


def test_a_request_during_a_reload_is_answered_by_that_reload(tmp_path: Path) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    h = Harness(root, delay_ms=300,
                control=ControlServer(tmp_path / "control", allowed_uid=os.getuid()))
    answers: list[Answer] = []

    def script(h: Harness) -> None:
        h.source.push(events(3))
        wait_for(lambda: h.controller.scheduler.running)
        answers.append(ask(tmp_path / "control", 30))

    assert h.run(script) == 0
    assert answers[0].reload and answers[0].ok and answers[0].detail.startswith("reloaded in")
    assert h.ops() == ["load"]  # the running reload answered it: no second window
