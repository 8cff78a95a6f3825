"""The administrator's own kexec arguments (Debian's ``KDUMP_KEXEC_ARGS``, Fedora's
``KEXEC_ARGS``, openSUSE's ``KEXEC_OPTIONS``), read as kexec-tools 2.0.28+ reads them.

kdumpd keeps every argument it does not need to decide itself. It decides the load
syscall (``-s``/``-c``/``-a``/``--hotplug`` become a preference, see kexec.py), the
panic load (``-p``), the kernel, initrd and command line (from the image); arguments that
are not a crash load at all (``-l``, ``-u``, ``-e``, ...) are dropped and said.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

# Which load syscall an argument asks for.
MODE_ARGS = {
    "-s": "file", "--kexec-file-syscall": "file",
    "-c": "plain", "--kexec-syscall": "plain",
    "-a": "auto", "--kexec-syscall-auto": "auto",
    "--hotplug": "hotplug",
}
# kdumpd's own: the panic load and the image's parts (with a value, as "--x=v" or "--x v").
OWN = ("-p", "--load-panic", "--reuse-cmdline", "--reuse-initrd")
OWN_WITH_VALUE = ("--initrd", "--ramdisk", "--append", "--command-line")
# Not a crash load: kdumpd never runs these.
NOT_A_LOAD = ("-l", "--load", "-u", "--unload", "-e", "--exec", "-f", "--force",
              "-x", "--no-ifdown", "-S", "--status", "--load-preserve-context",
              "--load-jump-back-helper", "--load-live-update", "--kexec-file-syscall-only")


@dataclass(frozen=True)
class KexecArgs:
    """``mode``: "file", "plain", "hotplug", "auto" or "" (not asked); ``kept``: passed on
    to kexec as given; ``dropped``: arguments kdumpd does not pass, each with why."""

    mode: str = ""
    kept: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def parse(value: str) -> KexecArgs:
    """``value`` as the distribution's script splits it (``eval``, so shell quoting).

    Raises ValueError (an unmatched quote) with a one-line reason.
    """
    words = shlex.split(value)
    mode, kept, dropped = "", [], []
    skip_next = False
    for index, word in enumerate(words):
        if skip_next:
            skip_next = False
            continue
        name = word.split("=", 1)[0]
        if word in MODE_ARGS:
            asked = MODE_ARGS[word]
            # "-c --hotplug" in either order is hotplug; "-s" or "-a" after it wins.
            mode = "hotplug" if {mode, asked} == {"plain", "hotplug"} else asked
        elif word in OWN or name in OWN_WITH_VALUE:
            dropped.append(f"{word} (kdumpd's own)")
            skip_next = name in OWN_WITH_VALUE and "=" not in word and index + 1 < len(words)
        elif name in NOT_A_LOAD:
            dropped.append(f"{word} (not a crash kernel load)")
        else:
            kept.append(word)
    return KexecArgs(mode, tuple(kept), tuple(dropped))

