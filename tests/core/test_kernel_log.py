"""Reading the kernel's "skipped header update" lines from this boot's journal."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from kdumpd.backends.fake import FakeBackend
from kdumpd.kernel_log import (
    FILE_POLL_S,
    FakeKernelLog,
    FileKernelLog,
    JournalKernelLog,
    is_skip,
    open_journal,
    open_kernel_log,
)
from kdumpd.status import gather
from kdumpd.sysfs import Sysfs

SKIP_NEW = "crash hp: kexec_trylock() failed, kdump image may be inaccurate"
SKIP_OLD = "crash hp: kexec_trylock() failed, elfcorehdr may be inaccurate"  # 6.6-6.10
SKIP = SKIP_NEW


class FakeReader:
    """sd_journal's cursor, in small: get_next() past the end returns {} and stays put,
    so entries appended later are returned by the next get_next()."""

    def __init__(self, messages: list[Any]) -> None:
        self.entries = [{"MESSAGE": m, "_TRANSPORT": "kernel"} for m in messages]
        self.cur = -1
        self.processed = 0
        self.closed = False

    def append(self, message: Any) -> None:
        self.entries.append({"MESSAGE": message, "_TRANSPORT": "kernel"})

    def seek_head(self) -> None:
        self.cur = -1

    def seek_tail(self) -> None:
        self.cur = len(self.entries)

    def get_previous(self) -> dict[str, Any]:
        self.cur = min(self.cur, len(self.entries)) - 1
        return self.entries[self.cur] if self.cur >= 0 else {}

    def get_next(self) -> dict[str, Any]:
        if self.cur + 1 < len(self.entries):
            self.cur += 1
            return self.entries[self.cur]
        return {}

    def process(self) -> int:
        self.processed += 1
        return 1

    def fileno(self) -> int:
        return 7

    def close(self) -> None:
        self.closed = True


def test_both_spellings_of_the_skip_line_count_and_nothing_else() -> None:
    assert is_skip(SKIP_NEW) and is_skip(SKIP_OLD)
    assert not is_skip("crash hp: hp_action 1, cpu 2")
    assert not is_skip("crash hp: updated elfcorehdr")


def test_lookback_counts_this_boots_skips_then_only_new_lines_are_reported() -> None:
    reader = FakeReader(["Linux version 6.12", SKIP_OLD, "memory online", SKIP_NEW])
    kernel = JournalKernelLog(reader)
    assert kernel.lookback() == (2, 4)
    assert kernel.new_skips() == []
    reader.append("crash hp: updated elfcorehdr")
    reader.append(SKIP_NEW.encode())  # a MESSAGE that is not UTF-8 clean arrives as bytes
    assert kernel.new_skips() == [SKIP_NEW]
    assert kernel.new_skips() == []
    assert reader.processed == 3  # every wakeup is acknowledged
    kernel.close()
    assert reader.closed


def test_without_a_lookback_only_what_comes_after_opening_counts() -> None:
    reader = FakeReader([SKIP_NEW, SKIP_NEW])
    kernel = JournalKernelLog(reader)
    assert kernel.new_skips() == []
    reader.append(SKIP_OLD)
    assert kernel.new_skips() == [SKIP_OLD]


def test_a_long_lookback_stops_at_its_budget_and_goes_on_from_the_end() -> None:
    ticks = iter(range(1000))
    reader = FakeReader([SKIP_NEW] * 50)
    kernel = JournalKernelLog(reader, clock=lambda: float(next(ticks)), budget_s=10.0)
    skips, seen = kernel.lookback()
    assert 0 < seen < 50 and skips == seen
    reader.append(SKIP_OLD)
    assert kernel.new_skips() == [SKIP_OLD]  # not the unread rest of the boot


def test_status_counts_the_skips_of_this_boot_and_says_when_it_cannot(root: Path) -> None:
    sysfs = Sysfs(root)
    backend = FakeBackend(root / "fake.log", sysfs)
    kernel = FakeKernelLog(earlier=["Linux version 6.12", SKIP_NEW, SKIP_OLD])
    status = gather(sysfs, backend, kernel_log=(kernel, ""))
    assert status.as_dict()["kernel_skips"] == 2
    assert "kernel log: 2 skipped header update(s) this boot" in status.as_text()
    blind = gather(sysfs, backend, kernel_log=(None, "the journal cannot be opened (EACCES)"))
    assert blind.as_dict()["kernel_skips"] is None
    assert "kernel log: cannot be read (the journal cannot be opened (EACCES))" \
        in blind.as_text()


class RecordingReader:
    """What open_journal asks of systemd's journal.Reader."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, str]]] = []

    def this_boot(self) -> None:
        self.asked.append(("this_boot", {}))

    def add_match(self, **match: str) -> None:
        self.asked.append(("add_match", match))


def test_the_journal_is_read_for_this_boot_and_the_kernels_messages_only() -> None:
    # Without _TRANSPORT=kernel kdumpd would read its own warning, which quotes the
    # kernel's line, as a skip; without this_boot() an earlier boot's lines.
    made: list[RecordingReader] = []
    kernel_log, why = open_journal(Path("/"), reader=lambda: made.append(
        RecordingReader()) or made[-1])
    assert kernel_log is not None and why == ""
    assert made[0].asked == [("this_boot", {}), ("add_match", {"_TRANSPORT": "kernel"})]
    assert open_journal(Path("/srv/root"), reader=RecordingReader) == (
        None, "[sysfs] root is /srv/root, not the host's /")


def test_a_journal_that_cannot_be_opened_says_why() -> None:
    def broken() -> RecordingReader:
        raise OSError(13, "Permission denied")

    assert open_journal(Path("/"), reader=broken) == (
        None, "the journal cannot be opened ([Errno 13] Permission denied)")


def test_a_file_of_kernel_messages_is_followed_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "kmsg"
    path.write_text(f"Linux version 6.12\n{SKIP}\n{SKIP}\n")
    log = FileKernelLog(path)
    try:
        assert log.poll_s == FILE_POLL_S
        assert log.lookback() == (2, 3)  # this boot's earlier messages
        assert log.new_skips() == []
        with path.open("a") as out:
            out.write(f"crash hp: hp_action 1, cpu 2\n{SKIP}\ncrash hp: kexec_try")
        assert log.new_skips() == [SKIP]
        with path.open("a") as out:
            out.write("lock() failed, kdump image may be inaccurate\n")
        assert log.new_skips() == ["crash hp: kexec_trylock() failed, kdump image may be "
                                   "inaccurate"]  # a line written in two parts: once
        path.write_text(f"{SKIP}\n")  # replaced by a shorter file: read from its start
        assert log.new_skips() == [SKIP]
    finally:
        log.close()


def test_the_kernel_log_setting_opens_a_file_or_says_why_not(tmp_path: Path) -> None:
    (tmp_path / "kmsg").write_text("")
    opened, why = open_kernel_log(str(tmp_path / "kmsg"), tmp_path)
    assert isinstance(opened, FileKernelLog) and why == ""
    opened.close()
    assert open_kernel_log(str(tmp_path / "none"), tmp_path) == (
        None, f"{tmp_path / 'none'}: No such file or directory")
    assert open_kernel_log("journal", tmp_path)[1].startswith("[sysfs] root is ")


def test_a_file_of_kernel_messages_must_be_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "kmsg")
    opened, why = open_kernel_log(str(tmp_path / "kmsg"), tmp_path)
    assert opened is None and why == (f"{tmp_path / 'kmsg'}: not a regular file (a file of "
                                      "kernel messages, one per line, is followed; "
                                      "/dev/kmsg is not)")


def test_journal_messages_in_bytes_or_missing_are_read_without_failing() -> None:
    # journald hands over a MESSAGE that is not valid UTF-8 as bytes; an entry may lack it.
    reader = FakeReader([b"kexec_trylock() failed, kdump image may be inaccurate \xff"])
    reader.entries.append({"_TRANSPORT": "kernel"})
    assert JournalKernelLog(reader).lookback() == (1, 2)


def test_a_followed_file_is_read_from_its_first_byte_and_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "kmsg"
    path.write_bytes(b"kexec_trylock() failed, kdump image may be inaccurate\n\xff\xfe\n")
    log = FileKernelLog(path)
    try:
        assert log.path == path and log.lookback() == (1, 2)  # not a byte skipped
    finally:
        log.close()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError) as caught:
        FileKernelLog(tmp_path / "fifo")
    assert (caught.value.errno, caught.value.filename) == (errno.EINVAL,
                                                           str(tmp_path / "fifo"))


def test_the_lookback_budget_is_a_bound_not_a_step_early(
        caplog: pytest.LogCaptureFixture) -> None:
    # At exactly the budget it reads on; past it, it says so and goes on from the end.
    ticks = iter([0.0, 5.0, 10.0, 11.0, 12.0])
    reader = FakeReader([SKIP_NEW] * 5)
    with caplog.at_level("WARNING", logger="kdumpd"):
        assert JournalKernelLog(reader, clock=lambda: next(ticks), budget_s=10.0
                                ).lookback() == (3, 3)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "reading back this boot's kernel messages took over 10 s: stopped early, at the "
        "end of the journal"]


def test_the_journals_descriptor_is_the_readers() -> None:
    assert JournalKernelLog(FakeReader([])).fileno() == 7


def test_an_entry_without_a_message_is_an_empty_message() -> None:
    from kdumpd.kernel_log import _message

    assert _message({"_TRANSPORT": "kernel"}) == ""
    assert _message({"MESSAGE": b"a \xff"}) == "a \ufffd"


def test_the_hosts_journal_opens_for_the_hosts_tree() -> None:
    pytest.importorskip("systemd.journal")
    opened, why = open_journal(Path("/"))
    assert why == "" and opened is not None
    try:
        assert opened.fileno() >= 0
    finally:
        opened.close()


def test_a_followed_file_gives_its_lines_whole_and_refuses_a_symlink(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "kmsg"
    path.write_text(f"{SKIP}\nother\n", encoding="utf-8")
    log = FileKernelLog(path)
    try:
        assert fcntl.fcntl(log.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert log.new_skips() == [SKIP]
    finally:
        log.close()
        log.close()  # twice: nothing raised
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(OSError) as caught:
        FileKernelLog(tmp_path / "link")
    assert caught.value.errno == errno.ELOOP
    assert open_kernel_log("journal", tmp_path) == (
        None, f"[sysfs] root is {tmp_path}, not the host's /")


def test_a_followed_file_that_grew_past_its_limit_drops_the_partial_line(
        tmp_path: Path) -> None:
    from kdumpd import kernel_log

    path = tmp_path / "kmsg"
    path.write_bytes(b"half a li")
    log = FileKernelLog(path)
    try:
        assert log.new_skips() == []
        # The file grows so that its last FILE_LIMIT bytes start with a skip line: the
        # half line before the gap must not be glued to it.
        line = SKIP.encode() + b"\n"
        rest = kernel_log.FILE_LIMIT - len(line)
        with path.open("ab") as grown:
            grown.write(b"x" * 99 + b"\n" + line)
            grown.write((b"y" * 99 + b"\n") * (rest // 100) + b"z" * (rest % 100))
        assert log.new_skips() == [SKIP]
    finally:
        log.close()


def test_the_fake_kernel_log_answers_at_once_when_nothing_came(tmp_path: Path) -> None:
    fake = FakeKernelLog()
    try:
        assert fake.new_skips() == []
        fake.push(SKIP)
        fake.push("other")
        assert fake.new_skips() == [SKIP]
    finally:
        fake.close()
        fake.close()
