"""The persisted state through the real file: every key round-tripped, the exact bytes,
the size cap, and every field that is not what kdumpd writes refused."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from kdumpd.exposure import Exposure
from kdumpd.state import MAX_BYTES, FileStore, LastLoad, MemoryStore, State, read_boot_id

FULL = State(
    boot_id="b-1", owed=True, loading=True, fingerprint="0123456789abcdef",
    hardware="cpus 0-1 online of 0-3, 2 RAM ranges, 2048 MiB online",
    last_load=LastLoad(at=1_790_000_000.25, how="kexec -s -p /boot/vmlinuz", ok=False,
                       duration_s=1.5),
    exposure=Exposure(no_crash_kernel_s=0.5, stale_s=2.25, reloads=3, reloads_avoided=4,
                      failures=1, longest_gap_s=0.4),
)


def test_every_key_round_trips_through_two_saves_into_an_existing_directory(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path, "b-1")
    store.save(State("b-1"))
    store.save(FULL)
    assert store.load() == FULL
    document = json.loads((tmp_path / "state.json").read_text())
    assert document == {
        "version": 1, "boot_id": "b-1", "owed": True, "loading": True,
        "fingerprint": "0123456789abcdef",
        "hardware": "cpus 0-1 online of 0-3, 2 RAM ranges, 2048 MiB online",
        "last_load": {"at": 1_790_000_000.25, "how": "kexec -s -p /boot/vmlinuz", "ok": False,
                      "duration_s": 1.5},
        "exposure": {"no_crash_kernel_s": 0.5, "stale_s": 2.25, "reloads": 3,
                     "reloads_avoided": 4, "failures": 1, "longest_gap_s": 0.4},
    }
    text = (tmp_path / "state.json").read_text()
    assert text.endswith("}\n") and text.startswith('{\n "boot_id": "b-1",\n')  # sorted
    assert stat.S_IMODE(os.stat(tmp_path / "state.json").st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


def test_a_dry_run_store_reads_but_never_writes(tmp_path: Path) -> None:
    FileStore(tmp_path, "b-1").save(FULL)
    before = (tmp_path / "state.json").read_bytes()
    dry = FileStore(tmp_path, "b-1", writable=False)
    dry.save(State("b-1"))
    assert (tmp_path / "state.json").read_bytes() == before
    assert dry.load() == FULL


def test_a_state_file_over_the_size_cap_is_unusable(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    padding = "x" * MAX_BYTES
    (tmp_path / "state.json").write_text(
        json.dumps({"version": 1, "boot_id": "b-1", "owed": False, "hardware": padding}))
    assert FileStore(tmp_path, "b-1").load() is None
    assert f"larger than {MAX_BYTES} bytes" in caplog.text
    exact = {"version": 1, "boot_id": "b-1", "owed": False}
    exact["hardware"] = "y" * (MAX_BYTES - len(json.dumps({**exact, "hardware": ""})))
    (tmp_path / "state.json").write_text(json.dumps(exact))
    assert len((tmp_path / "state.json").read_bytes()) == MAX_BYTES
    loaded = FileStore(tmp_path, "b-1").load()
    assert loaded is not None and loaded.hardware == exact["hardware"]


@pytest.mark.parametrize(("change", "why"), [
    ({"version": 2}, "not a kdumpd state file of version 1"),
    ({"owed": "false"}, "owed is not a boolean"),
    ({"owed": None}, "owed is not a boolean"),
    ({"last_load": {"at": 1.0, "how": "x", "ok": True}}, "duration_s"),
    ({"last_load": {"at": "1", "how": "x", "ok": True, "duration_s": 1}}, "last_load.at"),
    ({"last_load": {"at": 1, "how": "x", "ok": True, "duration_s": -1}},
     "last_load.duration_s"),
    ({"last_load": {"at": 1e12, "how": "x", "ok": True, "duration_s": 1}}, "last_load.at"),
    ({"exposure": {"reloads": -1}}, "exposure.reloads"),
    ({"exposure": {"stale_s": "1"}}, "exposure.stale_s"),
    ({"exposure": [1]}, "exposure is not an object"),
])
def test_a_field_kdumpd_never_writes_makes_the_file_unusable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: dict[str, object], why: str,
) -> None:
    document: dict[str, object] = {"version": 1, "boot_id": "b-1", "owed": False, **change}
    (tmp_path / "state.json").write_text(json.dumps(document))
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        assert FileStore(tmp_path, "b-1").load() is None
    assert "is unusable" in caplog.text and why in caplog.text


def test_what_is_optional_has_its_default(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(
        '{"version": 1, "boot_id": "b-1", "owed": false, "loading": "yes", "last_load": null,'
        ' "exposure": {"reloads": 2}}')
    loaded = FileStore(tmp_path, "b-1").load()
    assert loaded == State("b-1", exposure=Exposure(reloads=2))  # "yes" is not True
    assert isinstance(loaded.exposure.reloads, int)
    assert isinstance(loaded.exposure.stale_s, float)
    assert FileStore(tmp_path, "").load() is None  # no boot id: never this boot's


def test_an_unwritable_state_is_logged_and_the_old_file_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = FileStore(tmp_path, "b-1")
    store.save(FULL)
    with caplog.at_level(logging.ERROR, logger="kdumpd"):
        store.save(State("b-1", last_load=LastLoad(float("nan"), "x", True, 0.1)))
    assert "cannot save state to" in caplog.text and "Out of range float" in caplog.text
    assert store.load() == FULL


def test_the_memory_store_counts_saves() -> None:
    store = MemoryStore(boot_id="b-9")
    assert (store.load(), store.saves, store.boot_id) == (None, 0, "b-9")
    store.save(FULL)
    store.save(FULL)
    assert (store.load(), store.saves) == (FULL, 2)


def test_the_boot_id_is_one_stripped_line(tmp_path: Path) -> None:
    path = tmp_path / "proc/sys/kernel/random/boot_id"
    path.parent.mkdir(parents=True)
    path.write_text("  1234-abcd \n")
    assert read_boot_id(tmp_path) == "1234-abcd"
    path.write_bytes(b"\xff\xfe")
    assert read_boot_id(tmp_path) == ""
    path.unlink()
    assert read_boot_id(tmp_path) == ""


def test_an_unwritable_state_is_said_once_per_reason_counted_and_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state.json").mkdir()  # the attack: every write fails
    store = FileStore(tmp_path, "b-1")
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        store.save(FULL)
        store.save(replace(FULL, owed=False))
        store.retry()
    assert store.write_failures == 3 and store.problem is not None
    assert "rename" in store.problem  # which step failed, and why
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "tries again every 30 s" in errors[0].getMessage()
    caplog.clear()
    (tmp_path / "state.json").rmdir()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        store.retry()  # the last state is the one written
    assert store.problem is None
    assert json.loads((tmp_path / "state.json").read_text())["owed"] is False
    assert "state saved to" in caplog.text and "after 3 failed write(s)" in caplog.text
    store.retry()  # nothing owed to the disk: nothing written
    assert store.write_failures == 3



# -- what the journal is told, and the edges of what is accepted (state mutation survivors)

def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kdumpd"]


def test_an_unreadable_or_unusable_state_file_is_named_with_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FileStore(tmp_path, "boot-1")
    store.path.mkdir()  # a directory where the file should be
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        assert store.load() is None
    assert said(caplog) == [f"cannot read state file {store.path}: not a regular file; "
                            "starting without it"]
    store.path.rmdir()
    for text, why in (('{"version": 1, "boot_id": "boot-1", "exposure": NaN}',
                       "NaN is not JSON"),
                      ('{"version": 2}', "not a kdumpd state file of version 1")):
        store.path.write_text(text)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kdumpd"):
            assert store.load() is None
        assert said(caplog) == [f"state file {store.path} is unusable ({why}); "
                                "starting without it"]


def test_a_state_file_just_under_the_size_limit_is_read(tmp_path: Path) -> None:
    store = FileStore(tmp_path, "boot-1")
    store.save(State("boot-1", fingerprint="f"))
    text = store.path.read_text()
    store.path.write_text(text.rstrip() + " " * (MAX_BYTES - len(text) + 1) + "\n")
    assert len(store.path.read_bytes()) == MAX_BYTES + 1
    assert store.load() is None  # one byte over
    store.path.write_text(text.rstrip() + " " * (MAX_BYTES - len(text)) + "\n")
    assert len(store.path.read_bytes()) == MAX_BYTES
    assert store.load() == State("boot-1", fingerprint="f")


def test_times_from_0_to_the_limit_are_accepted_and_a_failed_load_is_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FileStore(tmp_path, "boot-1")
    for at in (0, 1e11):
        store.save(State("boot-1", last_load=LastLoad(at=at, how="kexec -s -p", ok=False,
                                                      duration_s=0.0)))
        loaded = store.load()
        assert loaded is not None and loaded.last_load is not None
        assert (loaded.last_load.at, loaded.last_load.ok) == (at, False)
    document = json.loads(store.path.read_text())
    document["last_load"]["at"] = 1e11 + 1
    store.path.write_text(json.dumps(document))
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        assert store.load() is None
    assert "last_load.at is not a number kdumpd writes" in said(caplog)[0]


def test_a_state_directory_is_created_with_its_parents_0755(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = FileStore(tmp_path / "a" / "b", "boot-1")
        store.save(State("boot-1"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755
    assert store.load() == State("boot-1")


def test_a_failed_write_and_its_recovery_are_said_once_each(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FileStore(tmp_path, "boot-1")
    store.path.mkdir()  # the rename onto it fails
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        store.save(State("boot-1", owed=True))
        store.save(State("boot-1", owed=True, fingerprint="x"))
    (error,) = said(caplog)
    assert error.startswith(f"cannot save state to {store.path}: ")
    assert error.endswith("; kdumpd keeps it in memory (a crash kernel it owes is still "
                          "restored) and tries again every 30 s, but a restart would not "
                          "know it")
    assert store.write_failures == 2 and store.problem is not None
    store.path.rmdir()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        store.retry()
    assert said(caplog) == [f"state saved to {store.path} again (after 2 failed write(s))"]
    assert store.load() == State("boot-1", owed=True, fingerprint="x")  # the latest
    assert store.problem is None and MemoryStore().write_failures == 0


def test_a_non_finite_number_is_a_failed_write_not_a_file_that_is_not_json(
        tmp_path: Path) -> None:
    store = FileStore(tmp_path, "boot-1")
    store.save(State("boot-1", exposure=Exposure(stale_s=float("nan"))))
    assert not store.path.exists() and store.problem is not None
    assert "not JSON compliant" in store.problem


def test_the_boot_id_is_read_whole_and_stripped(tmp_path: Path) -> None:
    boot_id = tmp_path / "proc/sys/kernel/random/boot_id"
    boot_id.parent.mkdir(parents=True)
    boot_id.write_text("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\n")
    assert read_boot_id(tmp_path) == "0123456789abcdef" * 3 + "0123456789abcd"
