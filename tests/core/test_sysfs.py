from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdumpd.fakes import fakesysfs
from kdumpd.sysfs import ABSENT, OK, UNREADABLE, Sysfs, read_value


def test_snapshot_reads_the_files_now(root: Path) -> None:
    sysfs = Sysfs(root)
    before = sysfs.snapshot(["cpu", "memory"])
    assert before.crash_hotplug["cpu"].text == "0"
    fakesysfs.build(root, crash_hotplug="1")
    after = sysfs.snapshot(["cpu", "memory"])
    assert after.crash_hotplug["cpu"].text == "1"
    assert after.crash_loaded.text == "1"


def test_absent_file(tmp_path: Path) -> None:
    assert read_value(tmp_path / "nope").kind == ABSENT


def test_non_ascii_bytes_are_kept_visible(tmp_path: Path) -> None:
    path = tmp_path / "attr"
    path.write_bytes(b"\xff1\n")
    value = read_value(path)
    assert value.kind == OK
    assert value.text == "\\xff1"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "attr"
    path.write_text("1")
    path.chmod(0)
    assert read_value(path).kind == UNREADABLE


def test_directory_in_place_of_a_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "attr").mkdir()
    value = read_value(tmp_path / "attr")
    assert value.kind == UNREADABLE
    assert value.text


def test_a_fifo_in_the_tree_is_unreadable_not_a_hang(tmp_path: Path) -> None:
    import os

    from kdumpd.sysfs import UNREADABLE, read_value

    fifo = tmp_path / "crash_hotplug"
    os.mkfifo(fifo)
    value = read_value(fifo)
    assert value.kind == UNREADABLE and "regular" in value.text
