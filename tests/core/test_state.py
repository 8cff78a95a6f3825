"""The state that survives restarts, the hardware fingerprint and the one-owner lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdumpd import lock
from kdumpd.hardware import Reservation, crash_reservation, present_pages, ram_ranges, read_hardware
from kdumpd.state import FileStore, LastLoad, State, read_boot_id


def test_state_round_trips_through_an_atomic_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "state", "boot-a")
    assert store.load() is None
    state = State("boot-a", owed=True, fingerprint="f00", hardware="cpus 0-1",
                  last_load=LastLoad(at=1.5, how="kexec", ok=False, duration_s=0.25))
    store.save(state)
    assert FileStore(tmp_path / "state", "boot-a").load() == state
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["state.json"]  # no temp left


def test_state_of_another_boot_is_ignored(tmp_path: Path) -> None:
    FileStore(tmp_path, "boot-a").save(State("boot-a", owed=True))
    assert FileStore(tmp_path, "boot-b").load() is None
    assert FileStore(tmp_path, "").load() is None  # boot unknown: trust nothing


@pytest.mark.parametrize("garbage", [b"", b"{", b"[]", b'{"version": 9}',
                                     b'{"version": 1, "boot_id": "b", "owed": "yes"}',
                                     b"x" * 70000])
def test_an_unusable_state_file_is_a_warning_not_a_crash(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.json").write_bytes(garbage)
    assert FileStore(tmp_path, "b").load() is None
    assert "unusable" in caplog.text


def test_dry_run_store_writes_nothing(tmp_path: Path) -> None:
    FileStore(tmp_path / "s", "b", writable=False).save(State("b"))
    assert not (tmp_path / "s").exists()


def test_a_state_dir_that_cannot_be_written_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")
    FileStore(tmp_path / "file", "b").save(State("b"))
    assert "cannot save state" in caplog.text


def test_boot_id_is_read_under_the_root(tmp_path: Path) -> None:
    path = tmp_path / "proc/sys/kernel/random/boot_id"
    path.parent.mkdir(parents=True)
    path.write_text("1234-abcd\n")
    assert read_boot_id(tmp_path) == "1234-abcd"
    assert read_boot_id(tmp_path / "nothing") == ""


IOMEM = """00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  01000000-01ffffff : Kernel code
100000000-11fffffff : System RAM
"""


def test_ram_ranges_are_the_system_ram_lines() -> None:
    assert ram_ranges(IOMEM) == ("00001000-0009fbff", "00100000-7ffdffff", "100000000-11fffffff")


def test_ram_ranges_include_driver_managed_ram_at_any_depth() -> None:
    # virtio-mem adds a top-level "System RAM (virtio_mem)", dax/kmem a nested
    # "System RAM (kmem)": the x86 elfcorehdr includes both.
    iomem = IOMEM + ("140000000-17fffffff : System RAM (virtio_mem)\n"
                     "180000000-1ffffffff : Persistent Memory\n"
                     "  180000000-1ffffffff : namespace0.0\n"
                     "    180000000-1ffffffff : dax0.0\n"
                     "      180000000-1ffffffff : System RAM (kmem)\n"
                     "200000000-200000fff : System RAMBLE\n")
    assert ram_ranges(iomem)[3:] == ("140000000-17fffffff", "180000000-1ffffffff")


def test_crash_reservation_is_the_sum_of_the_crash_kernel_ranges() -> None:
    iomem = IOMEM + ("  6f000000-7effffff : Crash kernel\n"
                     "  3f000000-3fffffff : Crash kernel\n"
                     "  40000000-4000ffff : Crash kernel notes\n")
    assert crash_reservation(iomem) == Reservation(True, 256 * 2**20 + 16 * 2**20)
    assert crash_reservation(IOMEM) == Reservation(False, None)
    # Without CAP_SYS_ADMIN every address reads 0: reserved, size unknown.
    assert crash_reservation("00000000-00000000 : Crash kernel\n") == Reservation(True, None)
    assert crash_reservation("zz-yy : Crash kernel\n") == Reservation(True, None)
    # A line that cannot be read does not hide the ones after it.
    assert crash_reservation("zz-yy : Crash kernel\n  10000000-1fffffff : Crash kernel\n"
                             ) == Reservation(True, 256 * 2**20)


def test_present_pages_sum_every_zone() -> None:
    zoneinfo = ("Node 0, zone      DMA\n  pages free     3840\n        present  3998\n"
                "        managed  3840\nNode 0, zone   Normal\n        present  131072\n")
    assert present_pages(zoneinfo) == 3998 + 131072
    assert present_pages("") == -1


def test_the_fingerprint_changes_with_each_kind_of_hotplug(tmp_path: Path) -> None:
    def write(cpus: str = "0-1", present: str = "0-3", ram: str = IOMEM,
              pages: int = 1000) -> str:
        for relative, text in {"sys/devices/system/cpu/online": cpus,
                               "sys/devices/system/cpu/present": present,
                               "proc/iomem": ram,
                               "proc/zoneinfo": f"Node 0, zone Normal\n present {pages}\n"}.items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return read_hardware(tmp_path).fingerprint

    base = write()
    assert write() == base
    others = {write(cpus="0"), write(present="0-4"), write(pages=2000),
              write(ram=IOMEM.replace("11fffffff", "13fffffff"))}
    assert base not in others and len(others) == 4
    write()
    assert "cpus 0-1 online of 0-3, 3 RAM ranges" in read_hardware(tmp_path).summary()


def test_hardware_of_an_empty_root_reads_empty_without_raising(tmp_path: Path) -> None:
    hardware = read_hardware(tmp_path)
    assert hardware.ram_ranges == () and hardware.present_pages == -1
    assert "?" in hardware.summary()


def test_one_owner_a_second_lock_names_the_first(tmp_path: Path) -> None:
    fd = lock.acquire(tmp_path)
    try:
        with pytest.raises(lock.LockHeld) as held:
            lock.acquire(tmp_path)
        assert held.value.pid == os.getpid()
        assert f"pid {os.getpid()}" in str(held.value)
    finally:
        lock.release(fd)
    lock.release(lock.acquire(tmp_path))  # free again once released


def test_a_deeply_nested_state_file_is_unusable_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.json").write_text("[" * 60000)
    assert FileStore(tmp_path, "b").load() is None
    assert "unusable" in caplog.text


def test_changed_subsystems_name_what_moved(tmp_path: Path) -> None:
    from kdumpd.hardware import Hardware

    base = Hardware("0-3", "0-1", ("100-1ff",), 100)
    assert base.changed_subsystems(base) == frozenset()
    assert base.changed_subsystems(Hardware("0-3", "0-2", ("100-1ff",), 100)) == {"cpu"}
    assert base.changed_subsystems(Hardware("0-4", "0-1", ("100-1ff",), 100)) == {"cpu"}
    assert base.changed_subsystems(Hardware("0-3", "0-1", ("100-2ff",), 100)) == {"memory"}
    assert base.changed_subsystems(Hardware("0-3", "0-1", ("100-1ff",), 90)) == {"memory"}
    assert base.changed_subsystems(Hardware("0", "0", (), 1)) == {"cpu", "memory"}


@pytest.mark.parametrize("text", [
    '"at": 1e308', '"at": 1e400', '"at": NaN', '"at": -Infinity', '"at": true',
    '"duration_s": 1e400',
])
def test_a_state_with_numbers_kdumpd_never_writes_is_unusable(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = text.split(":", maxsplit=1)[0].strip('"')
    last = {"at": "1.0", "how": '"x"', "ok": "true", "duration_s": "0.5"}
    last[key] = text.split(":", 1)[1].strip()
    body = ", ".join(f'"{k}": {v}' for k, v in last.items())
    (tmp_path / "state.json").write_text(
        f'{{"version": 1, "boot_id": "b", "owed": false, "last_load": {{{body}}}}}')
    assert FileStore(tmp_path, "b").load() is None
    assert "unusable" in caplog.text


def test_a_fifo_as_the_state_file_or_boot_id_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state.json")
    assert FileStore(tmp_path, "b").load() is None  # returns at once, nothing read
    boot_id = tmp_path / "root/proc/sys/kernel/random/boot_id"
    boot_id.parent.mkdir(parents=True)
    os.mkfifo(boot_id)
    assert read_boot_id(tmp_path / "root") == ""


def test_saved_numbers_are_always_json(tmp_path: Path) -> None:
    store = FileStore(tmp_path, "b")
    store.save(State("b", last_load=LastLoad(at=float("inf"), how="x", ok=True,
                                             duration_s=0.1)))
    assert not (tmp_path / "state.json").exists()  # refused and logged, never Infinity


def test_the_hardware_summary_for_people() -> None:
    from kdumpd.hardware import Hardware

    known = Hardware("0-3", "0-1", ("0-9fbff", "100000-7fffffff"), 524288)
    assert known.summary() == "cpus 0-1 online of 0-3, 2 RAM ranges, 2048 MiB online"
    assert Hardware("", "", (), -1).summary() == "cpus ? online of ?, 0 RAM ranges, ? MiB online"
    assert Hardware("0", "0", (), 0).summary().endswith(", 0 MiB online")


def test_iomem_lines_without_a_name_are_skipped_not_the_end() -> None:
    iomem = ("garbage line\n"
             "6f000000-7effffff : Crash kernel\n"
             "00100000-7fffffff : System RAM\n")
    assert crash_reservation(iomem) == Reservation(True, 0x10000000)
    assert ram_ranges(iomem) == ("00100000-7fffffff",)
