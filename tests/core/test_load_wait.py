import logging

import pytest

from kdumpd import journal_ids
from kdumpd.load_wait import LoadWait
from kdumpd.policy import Decision


def test_looks_again_each_poll_until_the_longest_wait_then_gives_up_once() -> None:
    wait = LoadWait(poll_s=0.25, longest_s=1.0)
    assert not wait.waiting
    assert wait.next_look(10.0) == 10.25 and wait.waiting
    assert wait.next_look(10.75) == 11.0
    assert wait.next_look(11.0) is None and not wait.waiting
    assert wait.next_look(20.0) == 20.25  # a new wait starts afresh


def test_a_decision_without_waiting_ends_the_wait() -> None:
    wait = LoadWait(poll_s=0.25, longest_s=1.0)
    wait.next_look(0.0)
    wait.over()
    assert not wait.waiting and wait.next_look(5.0) == 5.25


def test_look_again_defers_a_zero_to_confirm_and_says_so_at_debug(
        caplog: pytest.LogCaptureFixture) -> None:
    deferred: list[float] = []
    confirm = Decision(False, "memory: crash_hotplug=0, read again", confirm=True)
    with caplog.at_level(logging.DEBUG, logger="kdumpd"):
        assert LoadWait().look_again(confirm, 100.0, about="2 event(s) on memory",
                                     confirm_s=0.01, defer=deferred.append) is None
    assert deferred == [100.01]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "2 event(s) on memory: memory: crash_hotplug=0, read again")]


def test_a_wait_that_ran_out_is_said_as_no_crash_kernel(
        caplog: pytest.LogCaptureFixture) -> None:
    wait = LoadWait(poll_s=1.0, longest_s=2.0)
    waiting = Decision(False, "a load is under way", wait_for_load=True)
    deferred: list[float] = []
    assert wait.look_again(waiting, 0.0, about="x", confirm_s=0.01,
                           defer=deferred.append) is None
    with caplog.at_level(logging.WARNING, logger="kdumpd"):
        final = wait.look_again(waiting, 2.0, about="x", confirm_s=0.01,
                                defer=deferred.append)
    assert deferred == [1.0] and final is not None and not final.reload
    assert final.reason == "no crash kernel loaded after waiting 2 s: nothing to keep current"
    (record,) = caplog.records
    assert getattr(record, "MESSAGE_ID", "") == journal_ids.CRASH_KERNEL_UNLOADED
