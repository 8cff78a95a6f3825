"""kdumpd.source.udev_answers with the real udevadm against a stand-in udevd.

Each case runs in a private mount namespace with a tmpfs over /run, so udevadm's fixed
/run/udev/control is the stand-in's socket and the host's udev is never touched. Needs
root (the namespace; `udevadm control` refuses anyone else) and udevadm, else skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kdumpd.source import UDEV_PING_KILL_S

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("udevadm") is None,
    reason="needs root, unshare and udevadm")

# Inside the namespace: a stand-in udevd on /run/udev/control that behaves as MODE says,
# then one udev_answers() with the real runner; prints "True 0.01" (answer, seconds).
SCRIPT = textwrap.dedent("""\
    import os, socket, sys, threading, time
    from kdumpd.source import udev_answers

    mode = sys.argv[1]
    os.makedirs("/run/udev")
    if mode != "absent":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server.bind("/run/udev/control")
        if mode == "stale":
            server.close()  # the file stays, nobody listens: connect is refused
        else:
            server.listen(4)

            def serve():
                while True:
                    connection, _ = server.accept()
                    if mode == "hung":
                        time.sleep(60)  # reads nothing, never closes
                    # Like udevd: read messages (16-byte version, magic, type, value)
                    # until _UDEV_CTRL_END_MESSAGES (type 0), which udevadm sends after
                    # the ping, then close the connection: that is the answer.
                    while connection.recv(4096)[20:24] not in (bytes(4), b""):
                        pass
                    connection.close()

            threading.Thread(target=serve, daemon=True).start()
    start = time.monotonic()
    print(udev_answers(), round(time.monotonic() - start, 2))
""")


def ping_in_namespace(tmp_path: Path, mode: str) -> tuple[bool, float]:
    script = tmp_path / "ping.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
         'mount -t tmpfs kdumpd-test /run && exec "$0" "$@"',
         sys.executable, str(script), mode],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    answer, seconds = done.stdout.split()
    return answer == "True", float(seconds)


def test_a_udevd_that_takes_the_ping_answers(tmp_path: Path) -> None:
    assert ping_in_namespace(tmp_path, "answers")[0] is True


@pytest.mark.parametrize("mode", ["absent", "stale"])
def test_no_udevd_does_not_answer_at_once(tmp_path: Path, mode: str) -> None:
    answers, seconds = ping_in_namespace(tmp_path, mode)

    assert answers is False
    assert seconds < 1.0


def test_a_hung_udevd_does_not_answer_and_udevadm_gives_up_before_the_kill(
    tmp_path: Path,
) -> None:
    answers, seconds = ping_in_namespace(tmp_path, "hung")

    assert answers is False
    assert 0.9 < seconds < UDEV_PING_KILL_S
