"""The control socket alone, and the daemon answering `kdumpd reload` over it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from kdumpd.backends.fake import FakeBackend
from kdumpd.control_socket import (
    CONNECTION_DEADLINE_S,
    MAX_CONNECTIONS,
    Answer,
    ControlError,
    ControlServer,
    ask,
    ask_status,
    reply,
)
from kdumpd.fakes import fakesysfs
from kdumpd.status import gather
from kdumpd.sysfs import Sysfs
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
        answer = ask(tmp_path / "control", 10, server_uid=os.getuid())
        assert answer == Answer(True, "memory: crash_hotplug=0", True, "reloaded")
        thread.join(10)
    finally:
        server.close()
    assert not (tmp_path / "control").exists()


def test_a_peer_of_another_uid_is_refused_by_its_credentials(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control", allowed_uid=os.getuid() + 12345)
    server.open()
    try:
        serve_one(server, Answer(True, "must not be sent"))  # refuses, then waits
        answer = ask(tmp_path / "control", 10, server_uid=os.getuid())
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
        answers.append(ask(tmp_path / "control", 30, server_uid=os.getuid()))

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
        answers.append(ask(tmp_path / "control", 30, server_uid=os.getuid()))

    assert h.run(script) == 0
    assert answers[0].reload and answers[0].ok and answers[0].detail.startswith("reloaded in")
    assert h.ops() == ["load"]  # the running reload answered it: no second window


def test_a_status_request_is_answered_at_once_with_what_the_daemon_knows(
    tmp_path: Path,
) -> None:
    known = {"crash_hotplug": {"cpu": "1", "memory": "0"}, "crash_hotplug_read_at": 5.0}
    server = ControlServer(tmp_path / "control", allowed_uid=os.getuid(),
                           known=lambda: known)
    server.open()
    try:
        answers: list[dict[str, object]] = []
        thread = threading.Thread(
            target=lambda: answers.append(
                ask_status(tmp_path / "control", 10, server_uid=os.getuid())), daemon=True)
        thread.start()
        wait_for(lambda: server.accept() is None and bool(answers))
        thread.join(10)
    finally:
        server.close()
    assert answers == [known]


def test_status_takes_crash_hotplug_from_the_running_daemon_and_never_reads_it(
    tmp_path: Path,
) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="1")
    sysfs = Sysfs(root)
    backend = FakeBackend(root / "fake.log", sysfs)
    known = {"crash_hotplug": {"cpu": "0", "memory": "1"}, "crash_hotplug_read_at": 0.0,
             "status_line": "events 3, skipped 3, reloads 0",
             "header_verification": "on"}
    status = gather(sysfs, backend, daemon=(known, ""))
    assert {s: v.text for s, v in status.crash_hotplug.items()} == {"cpu": "0", "memory": "1"}
    assert status.crash_hotplug_from == {"source": "daemon", "read_at": 0.0, "why": None}
    assert "crash_hotplug: as the running kdumpd last read it (" in status.as_text()
    assert "kdumpd: events 3, skipped 3, reloads 0; header verification on" in \
        status.as_text()
    assert "state NOT saved" not in status.as_text()
    unsaved = gather(sysfs, backend, daemon=({**known, "state_file": {
        "problem": "cannot write /var/lib/kdumpd/state.json: rename: Is a directory",
        "write_failures": 4}}, ""))
    assert "warning: state NOT saved (4 failed write(s)): cannot write /var/lib/kdumpd/" \
        "state.json: rename: Is a directory" in unsaved.as_text()
    # A daemon that does not answer (a non-root caller): crash_hotplug is not read either.
    blind = gather(sysfs, backend, daemon=(None, "only root may ask it"))
    assert blind.crash_hotplug_from == {"source": "not-read", "read_at": None,
                                        "why": "kdumpd runs and only root may ask it"}
    assert "crash_hotplug: not read: kdumpd runs and only root may ask it" in \
        blind.as_text().splitlines()
    assert blind.as_dict()["crash_hotplug"] == {"cpu": None, "memory": None}
    # No daemon: read once, and only while a crash kernel is loaded.
    assert gather(sysfs, backend).crash_hotplug_from["source"] == "read-now"
    (root / "sys/kernel/kexec_crash_loaded").write_text("0\n")
    unloaded = gather(sysfs, backend)
    assert unloaded.crash_hotplug_from["source"] == "not-read"
    assert unloaded.crash_hotplug_from["why"].startswith("no crash kernel loaded")
    assert json.loads(unloaded.as_json())["crash_hotplug_from"] == unloaded.crash_hotplug_from


FORGER = r"""
import os, socket, sys
os.setgid(65534); os.setuid(65534)
sock = socket.socket(socket.AF_UNIX)
sock.bind(sys.argv[1]); sock.listen(1)
print("ready", flush=True)
conn, _ = sock.accept()
conn.sendall(b'{"reload": false, "reason": "forged", "ok": true, "detail": ""}\n')
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another user")
def test_a_socket_another_user_listens_on_is_not_asked() -> None:
    # A user's socket at the control path answered root's `kdumpd reload`, which printed
    # the forged answer and exited 0 (issue 30): the client checks who listens first.
    # Somewhere uid 65534 can reach and write, with a Python it may run (the test's own
    # may live under root's home).
    directory = Path(tempfile.mkdtemp(prefix="kdumpd-forged-", dir="/tmp"))
    directory.chmod(0o777)
    path = directory / "control"
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    forger = subprocess.Popen([python, "-c", FORGER, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert forger.stdout is not None and forger.stdout.readline() == "ready\n"
        with pytest.raises(ControlError, match="is answered by uid 65534, not by kdumpd"):
            ask(path, 5)
    finally:
        forger.kill()
        forger.wait(10)
        shutil.rmtree(directory)


def read_answer(client: socket.socket) -> dict[str, object]:
    client.settimeout(10)
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    client.close()
    answer = json.loads(data)
    assert isinstance(answer, dict)
    return answer


def test_a_silent_client_costs_the_server_no_wait_and_is_dropped_at_its_deadline(
        tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control", allowed_uid=os.getuid())
    server.open()
    try:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(str(tmp_path / "control"))
        half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        half.connect(str(tmp_path / "control"))
        half.sendall(b"rel")
        assert server.poll(100.0) == [] and server.connections == 2  # nothing waited for
        half.sendall(b"oad\n")  # the rest of its line comes later: still one request
        [(conn, pid)] = server.poll(100.5)
        assert pid == os.getpid() and conn.gettimeout() == 0.0  # never a blocking call
        reply(conn, Answer(False, "decided"))
        assert read_answer(half)["reason"] == "decided"
        server.expire(100.0 + CONNECTION_DEADLINE_S - 0.01)
        assert server.connections == 1
        server.expire(100.0 + CONNECTION_DEADLINE_S)
        assert server.connections == 0
        assert read_answer(silent)["reason"] == "refused: no request within 1 s"
    finally:
        server.close()


def test_more_waiting_connections_than_the_limit_are_refused(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control", allowed_uid=os.getuid())
    server.open()
    clients = []
    try:
        for _ in range(MAX_CONNECTIONS + 1):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(tmp_path / "control"))
            clients.append(client)
        assert server.poll(0.0) == [] and server.connections == MAX_CONNECTIONS
        assert "connections are waiting already" in str(read_answer(clients[-1])["reason"])
    finally:
        server.close()
        for client in clients:
            client.close()
