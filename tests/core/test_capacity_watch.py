"""capacity_watch.py: the reservation checked against the RAM after memory changed."""

from __future__ import annotations

import logging

import pytest

from kdumpd import journal_ids
from kdumpd.capacity import Capacity
from kdumpd.capacity_watch import CapacityWatch
from kdumpd.hardware import Hardware

RESERVED = 256 << 20


def capacity(hardware: Hardware, loaded_cmdline: str | None = None) -> Capacity:
    """A reservation of 256 MiB that fits up to 4 GiB of RAM online (2 GiB with a dump
    kernel command line that takes hot-added memory)."""
    ram = hardware.present_pages * 4096 * (2 if loaded_cmdline == "takes" else 1)
    short = "the crash reservation is short" if ram > 4 << 30 else ""
    return Capacity(RESERVED, RESERVED if ram <= 4 << 30 else 512 << 20, "test rule",
                    short, ram)


def hardware(gib: int) -> Hardware:
    return Hardware("0-3", "0-3", ("100000-7fffffff",), gib * (1 << 30) // 4096)


def test_the_capacity_is_checked_for_the_hardware_given(
    caplog: pytest.LogCaptureFixture
) -> None:
    watch = CapacityWatch(capacity)
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        watch.check(hardware(2))
    assert watch.last is not None and watch.last.ram_bytes == 2 << 30
    assert caplog.records == []
    with caplog.at_level(logging.INFO, logger="kdumpd"):
        watch.check(hardware(8))
        watch.check(hardware(16))  # still short: said once
    assert watch.last.ram_bytes == 16 << 30
    (record,) = caplog.records
    assert record.getMessage() == "the crash reservation is short"
    assert record.MESSAGE_ID == journal_ids.CAPACITY_SHORT  # type: ignore[attr-defined]


def test_no_capacity_check_keeps_nothing() -> None:
    watch = CapacityWatch(None)
    watch.check(hardware(8))
    assert watch.last is None


def test_the_loaded_command_line_is_handed_to_the_rule() -> None:
    watch = CapacityWatch(capacity)
    watch.check(hardware(3))
    assert watch.last is not None and not watch.last.warning
    watch.check(hardware(3), "takes")
    assert watch.last.warning == "the crash reservation is short"
