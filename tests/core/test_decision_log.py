"""decision_log.py: the counters' status line and the outcome lines of a reload, with the
journal fields they carry."""

from __future__ import annotations

import logging
import time

import pytest

from kdumpd import journal_ids
from kdumpd.decision_log import Stats, load_failed, reload_failed_later, status_line
from kdumpd.exposure import Exposure
from kdumpd.loaded_header import STALE, HeaderCheck
from kdumpd.reloader import Outcome
from kdumpd.sysfs import Value

FIELDS = {"KDUMPD_SUBSYSTEM": "memory", "KDUMPD_EVENTS": 8}


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kdumpd"]


def test_a_last_reload_is_shown_only_with_its_duration() -> None:
    assert Stats(last_reload_at=1000.0).status_line() == "events 0, skipped 0, reloads 0"
    assert Stats(last_duration_s=1.5).status_line() == "events 0, skipped 0, reloads 0"
    at = time.strftime("%H:%M:%S", time.localtime(1000.0))
    assert Stats(last_reload_at=1000.0, last_duration_s=1.5).status_line() == (
        f"events 0, skipped 0, reloads 0; last reload {at} took 1.50 s")


def test_the_exposure_is_added_when_either_part_is_not_zero() -> None:
    stats = Stats(events=1)
    assert status_line(stats, Exposure()) == "events 1, skipped 0, reloads 0"
    assert status_line(stats, Exposure(stale_s=2.0)) == (
        "events 1, skipped 0, reloads 0; this boot: stale 2.00 s, no crash kernel 0.00 s")
    assert status_line(stats, Exposure(no_crash_kernel_s=0.5)) == (
        "events 1, skipped 0, reloads 0; this boot: stale 0.00 s, no crash kernel 0.50 s")


def test_a_failed_load_carries_its_message_id_and_the_bursts_fields(
    caplog: pytest.LogCaptureFixture
) -> None:
    outcome = Outcome(False, 3, 4.0, "kexec: Device or resource busy", Value("1"))
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        load_failed(outcome, None, dict(FIELDS))
    (record,) = records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == ("reload failed after 3 attempt(s): kexec: Device or "
                                   "resource busy")
    assert record.MESSAGE_ID == journal_ids.RELOAD_FAILED  # type: ignore[attr-defined]
    assert record.KDUMPD_SUBSYSTEM == "memory"  # type: ignore[attr-defined]
    assert record.KDUMPD_EVENTS == 8  # type: ignore[attr-defined]


def test_after_a_stale_header_the_next_decision_is_announced_with_the_fields(
    caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        reload_failed_later(30.0, stale=True, missing=False, fields=dict(FIELDS))
    (record,) = records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "deciding again in 30 s"
    assert record.KDUMPD_SUBSYSTEM == "memory"  # type: ignore[attr-defined]
    assert not hasattr(record, "MESSAGE_ID")


def test_a_reload_that_failed_with_the_old_image_kept_says_when_it_retries(
    caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        reload_failed_later(10.0, stale=False, missing=False, fields=dict(FIELDS))
    (record,) = records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == ("the crash kernel may describe old hardware; retrying "
                                   "in 10 s")
    assert record.KDUMPD_EVENTS == 8  # type: ignore[attr-defined]


def test_a_reload_that_left_no_crash_kernel_is_critical(
    caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        reload_failed_later(60.0, stale=False, missing=True, fields=dict(FIELDS))
    (record,) = records(caplog)
    assert record.levelno == logging.CRITICAL
    assert record.getMessage().endswith("retrying in 60 s")
    assert record.MESSAGE_ID == journal_ids.CRASH_KERNEL_UNLOADED  # type: ignore[attr-defined]
    assert record.KDUMPD_SUBSYSTEM == "memory"  # type: ignore[attr-defined]


def test_a_load_that_left_a_stale_header_is_a_failed_reload_with_the_fields(
    caplog: pytest.LogCaptureFixture
) -> None:
    outcome = Outcome(True, 1, 0.5, "", Value("1"))
    stale = HeaderCheck(STALE, "memory 0x100000000-0x13fffffff missing")
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        load_failed(outcome, stale, dict(FIELDS))
    (record,) = records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == ("the load left a STALE header, read back: memory "
                                   "0x100000000-0x13fffffff missing")
    assert record.MESSAGE_ID == journal_ids.RELOAD_FAILED  # type: ignore[attr-defined]
    assert record.KDUMPD_SUBSYSTEM == "memory"  # type: ignore[attr-defined]
