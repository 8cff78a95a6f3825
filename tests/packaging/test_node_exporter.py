"""The real node exporter (Debian's prometheus-node-exporter binary, on 127.0.0.1) scrapes
the kdumpd.prom a running kdumpd writes, and serves nothing of kdumpd's after a final stop.

The daemon is kdumpd's own loop (tests/core/test_daemon.py's harness: fake event source and
backend); the exporter is the packaged binary, run from the unpacked .deb with only its
textfile collector. What a Prometheus server would see is read from its /metrics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.test_daemon import Harness, events, wait_for

from .helpers import REPO, unavailable

pytestmark = pytest.mark.packaging

CACHE = REPO / "out" / "node-exporter"


@pytest.fixture(scope="module")
def exporter_binary() -> Path:
    """prometheus-node-exporter from this machine's Debian suite, unpacked (cached)."""
    binary = CACHE / "root/usr/bin/prometheus-node-exporter"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", "prometheus-node-exporter"], cwd=CACHE,
                       check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        unavailable(f"apt-get download prometheus-node-exporter failed: {error}")
    (deb,) = CACHE.glob("prometheus-node-exporter_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / "root")], check=True,
                   timeout=120)
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, str]:
    """/metrics as {sample name with labels: value}, and the HELP/TYPE lines by family."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            kind, family = line.split()[1:3]
            samples[f"# {kind} {family}"] = line
        elif line:
            name, value = line.rsplit(" ", 1)
            samples[name] = value
    return samples


@pytest.fixture
def exporter(exporter_binary: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    directory = tmp_path / "textfile"
    directory.mkdir(mode=0o755)
    port = free_port()
    process = subprocess.Popen(
        [str(exporter_binary), f"--web.listen-address=127.0.0.1:{port}",
         "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={directory}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(port)
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "the node exporter did not answer: "
                        f"{process.stderr.read().decode() if process.stderr else ''}"
                    ) from None
                time.sleep(0.05)
        yield port, directory
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_node_exporter_serves_kdumpds_metrics_and_nothing_after_a_stop(
        exporter: tuple[int, Path], root: Path) -> None:
    pytest.importorskip("prometheus_client")
    from kdumpd.metrics import TextFile, gather

    port, directory = exporter
    seen: dict[str, str] = {}

    def metrics(h: Harness) -> TextFile:
        return TextFile(directory, lambda: gather(h.controller.knowledge(), h.sysfs,
                                                  h.controller.hardware),
                        owner=os.geteuid())

    def script(h: Harness) -> None:
        h.source.push(events(4))
        wait_for(lambda: h.controller.stats.reloads == 1)
        wait_for(lambda: scrape(port).get("kdumpd_reloads_total") == "1")
        seen.update(scrape(port))

    harness = Harness(root, metrics=metrics)  # a final stop: no restart queued
    assert harness.run(script) == 0
    assert seen["node_textfile_scrape_error"] == "0"
    assert seen["kdumpd_crash_kernel_loaded"] == "1"
    assert seen['kdumpd_kernel_keeps_current{subsystem="memory"}'] == "0"
    assert seen["kdumpd_events_total"] == "4"
    families = {key.split()[2] for key in seen if key.startswith("# TYPE kdumpd_")}
    assert len(families) >= 14
    assert all(f"# HELP {family}" in seen for family in families)
    assert any(key.startswith('node_textfile_mtime_seconds{file=') and "kdumpd.prom" in key
               for key in seen)  # what the README's staleness alert watches
    after = scrape(port)
    assert after["node_textfile_scrape_error"] == "0"
    assert not [key for key in after if "kdumpd" in key]  # the file is gone, and its mtime
