"""Debian 12's kernel 6.1, which has no crash_hotplug attributes: every burst reloads,
coalesced. Last: booting it stops the trixie guest (one TCG guest at a time).
"""

from __future__ import annotations

from collections.abc import Callable

from . import driver as d
from .harness import (
    Guest,
    assert_accounted,
    assert_kdumpd_read,
    assert_one_reload_per_burst,
    cpu_add_burst,
    cpu_cycle_burst,
    dimm_burst,
    restart_with,
    run_burst,
    two_dimms_burst,
)


def test_6_old_kernel_without_crash_hotplug(bookworm: Guest, scenario: Callable) -> None:
    result = scenario(
        "6. Debian 12 kernel 6.1: crash_hotplug absent means reload, coalesced",
        bookworm.release,
        "Same image booted with bookworm's kernel; crash kernel loaded with `kexec -p -c`; "
        "kdumpd load mode \"auto\".",
    )
    d.stop_kdumpd(bookworm.vm)
    d.kexec_load(bookworm.vm, bookworm.release, ["-c"])
    restart_with(bookworm, bookworm.config(load="auto"))
    for name, action in (("DIMM hot-add 512 MiB", dimm_burst(bookworm)),
                         ("CPU1 offline+online", cpu_cycle_burst(bookworm)),
                         ("CPU hot-add (QMP) + online", cpu_add_burst(bookworm)),
                         ("DIMM hot-remove (QMP device_del)",
                          lambda: bookworm.hotplug.remove_dimm("dimm1")),
                         ("2 DIMMs hot-added back to back", two_dimms_burst(bookworm))):
        result.bursts.append(run_burst(bookworm, name, action))
    for burst in result.bursts:
        assert_accounted(burst)
        assert (burst.before.cpu, burst.before.memory) == (None, None)
        assert_kdumpd_read(burst, "absent")
        assert_one_reload_per_burst(burst)
        assert burst.after.loaded == "1"
        assert (burst.after.cpu, burst.after.memory) == (None, None)
