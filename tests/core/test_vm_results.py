"""tests/vm/results.py: a full vm-test run rewrites RESULTS.md but keeps the hand-written
vm-long section."""

from __future__ import annotations

from pathlib import Path

from tests.vm.results import HAND_WRITTEN, RunResults


def test_a_full_run_keeps_the_hand_written_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    results = RunResults()
    results.write(path)
    fresh = path.read_text()
    assert HAND_WRITTEN not in fresh
    path.write_text("an old run\n" + HAND_WRITTEN + "\n## vm-long\n64 GiB: COMPLETE\n")
    results.write(path)
    kept = path.read_text()
    assert kept.endswith("\n\n" + HAND_WRITTEN + "\n## vm-long\n64 GiB: COMPLETE\n")
    assert "an old run" not in kept and kept.startswith(fresh.split("\n", 1)[0])
