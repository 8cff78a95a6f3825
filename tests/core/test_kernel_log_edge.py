"""kernel_log_edge.py: the look-back at start, skip lines as they arrive, and going blind
loudly, once, when the kernel's messages cannot be read any more."""

from __future__ import annotations

import logging
import os
import selectors
from collections.abc import Iterator

import pytest

from kdumpd.fakes.fakekernel import SKIP_LINE
from kdumpd.kernel_log import FakeKernelLog
from kdumpd.kernel_log_edge import KERNEL, KernelLogEdge

BLIND = ("kdumpd does not see the header updates the kernel skips "
         "(\"kexec_trylock() failed\")")
NO_KERNEL_MESSAGE = ("the journal holds no kernel message of this boot (is "
                     "systemd-journald running?): a header update the kernel skips "
                     "cannot be seen until one arrives")


class BrokenLog:
    """A kernel log whose reads fail as a journal that went away does."""

    def __init__(self, *, poll_s: float | None = None, lookback_fails: bool = False,
                 close_fails: bool = False) -> None:
        self.poll_s = poll_s
        self._read, self._write = os.pipe()
        self._lookback_fails = lookback_fails
        self._close_fails = close_fails
        self.closed = 0
        self.reads = 0

    def fileno(self) -> int:
        return self._read

    def lookback(self) -> tuple[int, int]:
        if self._lookback_fails:
            raise OSError("journal files rotated away")
        return 1, 5

    def new_skips(self) -> list[str]:
        self.reads += 1
        raise OSError("Bad file descriptor")

    def close(self) -> None:
        self.closed += 1
        for fd in (self._read, self._write):
            os.close(fd)
        if self._close_fails:
            raise OSError("closed twice")


@pytest.fixture
def selector() -> Iterator[selectors.BaseSelector]:
    with selectors.DefaultSelector() as chosen:
        yield chosen


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kdumpd"]


def test_no_kernel_log_reads_nothing_and_registers_nothing(
    selector: selectors.BaseSelector, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    edge = KernelLogEdge(None, seen.append)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert edge.start(selector) == 0
        edge.read(selector)
    assert edge.poll_s is None
    assert seen == [] and selector.get_map() == {} and messages(caplog) == []


def test_the_lookback_counts_this_boots_skips_and_registers_the_log_as_the_kernel(
    selector: selectors.BaseSelector, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernelLog([SKIP_LINE, "usb 1-1: new device", SKIP_LINE])
    edge = KernelLogEdge(kernel, lambda _: None)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert edge.start(selector) == 2
    assert selector.get_key(kernel.fileno()).data == KERNEL
    assert messages(caplog) == []  # kernel messages were seen: nothing to warn about
    kernel.close()


def test_a_journal_with_no_kernel_message_of_this_boot_is_warned_about(
    selector: selectors.BaseSelector, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernelLog([])
    edge = KernelLogEdge(kernel, lambda _: None)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert edge.start(selector) == 0
    assert messages(caplog) == [NO_KERNEL_MESSAGE]
    assert edge.poll_s is None  # still listening: the selector wakes it
    kernel.close()


def test_a_followed_file_is_read_on_its_timer_not_through_the_selector(
    selector: selectors.BaseSelector,
) -> None:
    kernel = FakeKernelLog([SKIP_LINE])
    kernel.poll_s = 0.5
    edge = KernelLogEdge(kernel, lambda _: None)
    assert edge.start(selector) == 1
    assert edge.poll_s == 0.5
    assert selector.get_map() == {}
    kernel.close()


def test_a_lookback_that_fails_goes_blind_loudly_and_counts_nothing(
    selector: selectors.BaseSelector, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenLog(lookback_fails=True)
    edge = KernelLogEdge(broken, lambda _: None)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        assert edge.start(selector) == 0
    assert messages(caplog) == [
        f"the journal cannot be read (journal files rotated away): {BLIND}"]
    assert broken.closed == 1 and edge.poll_s is None and selector.get_map() == {}


def test_new_skip_lines_are_handed_on_as_they_arrive(
    selector: selectors.BaseSelector,
) -> None:
    seen: list[str] = []
    kernel = FakeKernelLog()
    edge = KernelLogEdge(kernel, seen.append)
    edge.start(selector)
    kernel.push("usb 1-1: new device")
    kernel.push(SKIP_LINE)
    kernel.push(SKIP_LINE + " again")
    edge.read(selector)
    assert seen == [SKIP_LINE, SKIP_LINE + " again"]
    edge.read(selector)
    assert len(seen) == 2
    kernel.close()


def test_a_failed_read_unregisters_the_log_and_goes_blind_once(
    selector: selectors.BaseSelector, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    broken = BrokenLog()
    edge = KernelLogEdge(broken, seen.append)
    edge.start(selector)
    assert broken.fileno() in selector.get_map()
    fd = broken.fileno()
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        edge.read(selector)
        edge.read(selector)  # blind now: not read again, not said again
    assert fd not in selector.get_map()
    assert messages(caplog) == [
        f"reading the kernel's messages failed (Bad file descriptor): {BLIND}"]
    assert broken.reads == 1 and broken.closed == 1 and seen == []
    assert edge.poll_s is None


def test_a_followed_file_that_fails_is_not_unregistered_from_the_selector(
    selector: selectors.BaseSelector, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenLog(poll_s=1.0)
    edge = KernelLogEdge(broken, lambda _: None)
    edge.start(selector)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        edge.read(selector)
    assert messages(caplog) == [
        f"reading the kernel's messages failed (Bad file descriptor): {BLIND}"]
    assert edge.poll_s is None and broken.closed == 1


def test_a_close_that_fails_while_going_blind_is_not_raised(
    selector: selectors.BaseSelector, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenLog(close_fails=True)
    edge = KernelLogEdge(broken, lambda _: None)
    edge.start(selector)
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        edge.read(selector)
    assert broken.closed == 1 and edge.poll_s is None
    assert len(messages(caplog)) == 1
