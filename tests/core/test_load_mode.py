"""load_mode.choose: which modes `auto` tries, from what the host allows (pure)."""

from __future__ import annotations

import pytest

from kdumpd.backends.load_mode import Host, choose, worked_first

FROM = "/etc/default/kdump-tools (KDUMP_KEXEC_ARGS)"
OPEN = Host(hotplug=True, file_load=True)
NO_FILE_LOAD = Host(hotplug=True, file_load=False, file_load_line="no (config)")
SANDBOXED = Host(hotplug=True, file_load=True, blocker="/proc/kcore cannot be read")


@pytest.mark.parametrize(("asked", "host", "modes", "note"), [
    ("", OPEN, ["hotplug", "file", "plain"], ""),
    ("", Host(hotplug=False, file_load=True), ["file", "plain"], ""),
    ("", SANDBOXED, ["file"], ""),
    ("", NO_FILE_LOAD, ["hotplug", "plain"], ""),
    ("", Host(hotplug=False, file_load=False), ["plain"], ""),
    ("file", OPEN, ["file"], f"{FROM} asks for -s (kexec_file_load): loading with -s"),
    ("file", NO_FILE_LOAD, ["hotplug", "plain"],
     f"{FROM} asks for -s (kexec_file_load), which this kernel lacks (no (config)): "
     "loading with -c --hotplug"),
    ("file", Host(hotplug=False, file_load=False, file_load_line="x"), ["plain"],
     f"{FROM} asks for -s (kexec_file_load), which this kernel lacks (x): loading with -c"),
    ("plain", OPEN, ["hotplug", "plain"],
     f"{FROM} asks for -c (kexec_load): loading with -c --hotplug, so the kernel keeps it "
     "current"),
    ("hotplug", Host(hotplug=False, file_load=True), ["plain"],
     f"{FROM} asks for -c (kexec_load): loading with -c"),
    ("plain", SANDBOXED, ["file"],
     f"{FROM} asks for -c (kexec_load), which cannot work here (/proc/kcore cannot be "
     "read): loading with -s, which the kernel keeps current"),
    ("", Host(hotplug=True, file_load=None), ["hotplug", "file", "plain"], ""),
    # powerpc: kexec_load's header lacks hot-added RAM; kexec_file_load first where it is
    ("", Host(hotplug=True, file_load=True, userspace_omits_ram=True),
     ["file", "hotplug", "plain"], ""),
    ("", Host(hotplug=False, file_load=True, userspace_omits_ram=True), ["file", "plain"], ""),
    ("", Host(hotplug=True, file_load=False, userspace_omits_ram=True),
     ["hotplug", "plain"], ""),
    ("", Host(hotplug=True, file_load=None, userspace_omits_ram=True),
     ["hotplug", "file", "plain"], ""),
    ("plain", Host(hotplug=True, file_load=True, userspace_omits_ram=True),
     ["hotplug", "plain"], f"{FROM} asks for -c (kexec_load): loading with -c --hotplug, "
     "so the kernel keeps it current"),
])
def test_the_modes_auto_tries(asked: str, host: Host, modes: list[str], note: str) -> None:
    assert choose(asked, host, FROM) == (modes, note)


def test_what_worked_last_is_tried_first_among_the_candidates_only() -> None:
    assert choose("", OPEN, FROM, worked="plain")[0] == ["plain", "hotplug", "file"]
    assert choose("", NO_FILE_LOAD, FROM, worked="file")[0] == ["hotplug", "plain"]
    assert choose("file", OPEN, FROM, worked="plain")[0] == ["file"]  # asked wins
    candidates = ["hotplug", "file"]
    assert worked_first(candidates, "file") == ["file", "hotplug"]
    assert candidates == ["hotplug", "file"]  # not changed in place
