"""Which load modes ``auto`` tries, in order (pure: what the host allows in, modes out).

``file`` is kexec_file_load (``-s``), ``hotplug`` kexec_load with ``--hotplug`` and
``plain`` kexec_load (``-c``). A mode the distribution's kexec arguments ask for is
followed: ``-s`` is file; ``-c`` is kexec_load, loaded as ``-c --hotplug`` where the
kernel can update it (crash_elfcorehdr_size) and as ``-s`` only where kexec_load cannot
work at all. A kernel without kexec_file_load gets kexec_load whatever was asked: it is
the only syscall there. Otherwise ``hotplug`` first (the shortest window), then ``file``,
then ``plain``, except on powerpc, where a kexec_load header lacks hot-added RAM and
``file`` comes first; what worked last is tried first (kexec.py remembers it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    """What decides the modes: the kernel and the sandbox kdumpd runs in."""

    hotplug: bool  # the kernel can update a kexec_load image (crash_elfcorehdr_size)
    file_load: bool | None  # the kernel has kexec_file_load (None: cannot tell)
    file_load_line: str = ""  # where that was read, for the note
    blocker: str | None = None  # why kexec_load cannot work here (None: it can)
    # kexec-tools' kexec_load header leaves hot-added RAM out (powerpc: RAM above the
    # device tree's linux,memory-limit; arch.py): kexec_file_load, whose header the kernel
    # builds from memblock, comes first where the kernel has it.
    userspace_omits_ram: bool = False


def choose(asked: str, host: Host, asked_from: str, worked: str | None = None
           ) -> tuple[list[str], str]:
    """The modes to try for ``auto``, in order, and the note when the distribution's
    kexec arguments (``asked``: "file", "plain", "hotplug" or "", set in ``asked_from``)
    asked for one ("" otherwise)."""
    def said(what: str) -> str:
        return f"{asked_from} asks for {what}"

    if host.file_load is False:
        userspace = ["hotplug", "plain"] if host.hotplug else ["plain"]
        flag = "-c --hotplug" if host.hotplug else "-c"
        note = (said(f"-s (kexec_file_load), which this kernel lacks "
                     f"({host.file_load_line}): loading with {flag}")
                if asked == "file" else "")
        return worked_first(userspace, worked), note
    if asked == "file":
        return ["file"], said("-s (kexec_file_load): loading with -s")
    if asked in ("plain", "hotplug"):
        if host.blocker is not None:
            return ["file"], said(f"-c (kexec_load), which cannot work here ({host.blocker}): "
                                  "loading with -s, which the kernel keeps current")
        if host.hotplug:
            return ["hotplug", "plain"], said(
                "-c (kexec_load): loading with -c --hotplug, so the kernel keeps it current")
        return ["plain"], said("-c (kexec_load): loading with -c")
    if host.blocker is not None:
        candidates = ["file"]  # kexec_load cannot work here (now)
    elif host.userspace_omits_ram and host.file_load:
        candidates = ["file", "hotplug", "plain"] if host.hotplug else ["file", "plain"]
    elif host.hotplug:
        candidates = ["hotplug", "file", "plain"]
    else:
        candidates = ["file", "plain"]
    return worked_first(candidates, worked), ""


def worked_first(candidates: list[str], worked: str | None) -> list[str]:
    """What worked last first, the others after it."""
    if worked in candidates:
        candidates = [worked, *(c for c in candidates if c != worked)]
    return candidates
