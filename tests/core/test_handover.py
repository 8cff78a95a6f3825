"""handover.py: the hand-over file the distribution's udev rules look for."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd.handover import Handover

HANDING_BACK = ("handing reloads back to the distribution's udev rules until kdumpd's "
                "backend works again")


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kdumpd"]


def test_a_new_handover_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "handles-reload"
    path.write_text("the last kdumpd's\n")
    handover = Handover(path)
    assert handover.held is False
    handover.exit(restarting=False)  # nothing of this kdumpd's is there to remove
    assert path.read_text() == "the last kdumpd's\n"


def test_following_working_reloads_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "handles-reload"
    handover = Handover(path)
    handover.follow(handed_back=False)
    assert handover.held and path.read_text() == f"{os.getpid()}\n"
    handover.follow(handed_back=False)  # already held: nothing to do
    assert path.exists()


def test_handing_back_removes_the_file_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "handles-reload"
    handover = Handover(path)
    handover.hold(True)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        handover.follow(handed_back=True)
        handover.follow(handed_back=True)
    assert not path.exists() and handover.held is False
    assert messages(caplog) == [HANDING_BACK]
    handover.follow(handed_back=False)  # the backend works again: taken back, quietly
    assert path.exists()


def test_a_hand_back_whose_removal_fails_is_said_once_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "handles-reload"
    handover = Handover(path)
    handover.hold(True)
    path.unlink()
    path.mkdir()  # the removal now fails (a directory where the file was)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        for _ in range(3):  # the loop's turns
            handover.follow(handed_back=True)
    assert handover.held  # the rules still see it: tried again on the next turn
    said = messages(caplog)
    assert said[0] == HANDING_BACK and len(said) == 2  # the warning and one error
    assert said[1].startswith(f"cannot remove hand-over file {path}: ")
    path.rmdir()
    handover.follow(handed_back=True)
    assert not handover.held


def test_without_a_path_holding_works_and_is_remembered() -> None:
    handover = Handover(None)
    assert handover.hold(True) is True and handover.held
    assert handover.hold(False) is True and not handover.held


def test_removing_a_file_that_is_gone_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handover = Handover(tmp_path / "handles-reload")
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert handover.hold(False) is True
    assert messages(caplog) == []


def test_a_file_that_cannot_be_created_is_logged_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "run").write_text("a file where the directory should be")
    path = tmp_path / "run" / "handles-reload"
    handover = Handover(path)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert handover.hold(True) is False
    assert messages(caplog) == [f"cannot create hand-over file {path}: File exists"]


def test_a_file_that_cannot_be_removed_is_logged_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "handles-reload"
    path.mkdir()  # unlink() of a directory fails
    handover = Handover(path)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert handover.hold(False) is False
    assert messages(caplog) == [f"cannot remove hand-over file {path}: Is a directory"]
    assert path.is_dir()


def test_the_file_is_created_with_its_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "run" / "kdumpd" / "handles-reload"
    assert Handover(path).hold(True) is True
    assert path.read_text() == f"{os.getpid()}\n"


def test_the_file_is_world_readable_and_written_by_root_only(
    tmp_path: Path, no_umask: None
) -> None:
    path = tmp_path / "handles-reload"
    Handover(path).hold(True)
    assert path.stat().st_mode & 0o7777 == 0o644


def test_an_older_file_is_replaced_by_this_pid(tmp_path: Path) -> None:
    path = tmp_path / "handles-reload"
    path.write_text("123456789012345678901234567890\n")
    Handover(path).hold(True)
    assert path.read_text() == f"{os.getpid()}\n"


def test_the_file_is_never_written_through_a_symlink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "precious"
    target.write_text("not kdumpd's\n")
    path = tmp_path / "handles-reload"
    path.symlink_to(target)
    with caplog.at_level(logging.ERROR, logger="kdumpd"):
        assert Handover(path).hold(True) is False
    assert target.read_text() == "not kdumpd's\n"
    assert messages(caplog) == [
        f"cannot create hand-over file {path}: Too many levels of symbolic links"]


def test_an_exit_for_a_restart_keeps_the_file_and_says_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "handles-reload"
    handover = Handover(path, runtime_dirs=str(tmp_path))  # the unit's RuntimeDirectory
    handover.hold(True)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        handover.exit(restarting=True)
    assert path.exists() and handover.held
    assert messages(caplog) == [
        f"systemd starts kdumpd again: the hand-over file {path} stays meanwhile"]


def test_an_exit_for_good_releases_the_file(tmp_path: Path) -> None:
    path = tmp_path / "handles-reload"
    handover = Handover(path)
    handover.hold(True)
    handover.exit(restarting=False)
    assert not path.exists() and handover.held is False


def test_a_restart_outside_the_runtime_directory_removes_the_file_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)  # not started by systemd
    path = tmp_path / "handles-reload"
    for runtime, shown in ((None, "unset"), ("/run/elsewhere", "/run/elsewhere")):
        caplog.clear()
        handover = Handover(path, runtime_dirs=runtime)
        handover.hold(True)
        with caplog.at_level(logging.INFO, logger="kdumpd"):
            handover.exit(restarting=True)
        assert not path.exists() and not handover.held
        assert messages(caplog) == [
            f"systemd starts kdumpd again, but the hand-over file {path} is not under the "
            f"unit's $RUNTIME_DIRECTORY ({shown}), which systemd keeps for it: removed"]


@pytest.mark.parametrize("runtime", ["relative/dir:{tmp}", "{tmp}/", "/"])
def test_the_runtime_directory_is_any_absolute_entry_of_the_list(
    tmp_path: Path, runtime: str
) -> None:
    path = tmp_path / "sub" / "handles-reload"
    handover = Handover(path, runtime_dirs=runtime.format(tmp=tmp_path))
    handover.hold(True)
    handover.exit(restarting=True)
    assert path.exists() and handover.held


def test_without_a_path_a_restart_keeps_nothing() -> None:
    handover = Handover(None, runtime_dirs="/")
    handover.hold(True)
    handover.exit(restarting=True)
    assert not handover.held


def test_after_a_failure_is_over_the_next_hand_back_is_said_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "handles-reload"
    path.mkdir()  # the create fails
    handover = Handover(path)
    assert not handover.hold(True)
    path.rmdir()
    assert handover.hold(True)  # works now: the failure is over
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        handover.follow(handed_back=True)
    assert messages(caplog) == [HANDING_BACK]
    assert Handover(tmp_path / "other").hold(True)
    fresh = Handover(tmp_path / "other")
    fresh.held = True
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        caplog.clear()
        fresh.follow(handed_back=True)
    assert messages(caplog) == [HANDING_BACK]  # a new hand-over has no failure to hide it
