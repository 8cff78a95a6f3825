"""Debian 12's kernel 6.1, which has no crash_hotplug attributes: every burst the loaded
header read back lacks reloads, coalesced (a CPU going offline and online again changes
nothing the header holds). Last: booting it stops the trixie guest (one TCG guest at a
time).
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
    said,
    two_dimms_burst,
)


def test_6_old_kernel_without_crash_hotplug(bookworm: Guest, scenario: Callable) -> None:
    result = scenario(
        "6. Debian 12 kernel 6.1: crash_hotplug absent, the header read back decides",
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
        read_back_current = any("read back, is current" in r for r in burst.reasons)
        if burst.burst.startswith("CPU1 offline+online"):
            # The header has a note for every present CPU: offlining one changes nothing
            # a dump needs, and kdumpd reads that back instead of reloading.
            assert burst.reloads == 0 and read_back_current, said(burst)
        elif burst.burst.startswith("CPU hot-add") and read_back_current:
            assert burst.reloads == 0, said(burst)  # a header with every possible CPU
        else:
            assert_one_reload_per_burst(burst)
        assert burst.after.loaded == "1"
        assert (burst.after.cpu, burst.after.memory) == (None, None)
