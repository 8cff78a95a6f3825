"""The crash kernel each distribution loads: kernel, initrd and command line, and where
each came from.

kdumpd reloads *that* image (kdumpd's own load over the loaded one, in one syscall), so a
crash kernel it loads boots into the distribution's dump path. What each kdump tool does
was read from its sources (see tests/fixtures/distro/README.md); one module each:

- ``debian``: Debian's and Ubuntu's kdump-tools (``kdump-config load``);
- ``fedora``: Fedora's and RHEL's kdump-utils (``kdumpctl``), with ``watchdog`` for the
  watchdog drivers it names;
- ``suse``: openSUSE's and SLES's kdump (``load.sh``);
- ``generic``: no distribution kdump, the running kernel.

``shellvars`` reads their shell configuration without a shell, ``hazard`` judges whether
the dump kernel may take hot-added memory as its own, ``files`` holds the small bounded
reads they share. Every file is read under an injected root; nothing here runs a command.
To add a distribution: a module with a reader ``(root, release, machine) -> CrashImage``,
a line in :func:`family` that recognises it and one in :data:`READERS`.
"""

from __future__ import annotations

from pathlib import Path

from kdumpd.backends.distro.debian import DEBIAN_APPEND, DEBIAN_DEFAULTS, debian
from kdumpd.backends.distro.fedora import fedora
from kdumpd.backends.distro.files import SHELL_FILE_LIMIT, SYSCONFIG, exists
from kdumpd.backends.distro.generic import default_append, generic
from kdumpd.backends.distro.hazard import (
    APPEND_SETTING,
    NO_MEMHOTPLUG,
    acpi_memory_hotplug,
    loaded_lacks_growth_safety,
    memory_hotplug_hazard,
    survive_growth,
)
from kdumpd.backends.distro.image import (
    CrashImage,
    DistroError,
    missing_parts,
    with_overrides,
)
from kdumpd.backends.distro.origin import Origin, Setting
from kdumpd.backends.distro.shellvars import read_shell_vars
from kdumpd.backends.distro.suse import suse
from kdumpd.backends.distro.watchdog import Watchdogs, find_watchdogs, watchdog_drivers

__all__ = [
    "APPEND_SETTING", "DEBIAN_APPEND", "DEBIAN_DEFAULTS", "NO_MEMHOTPLUG", "SHELL_FILE_LIMIT",
    "SYSCONFIG",
    "CrashImage", "DistroError", "Origin", "Setting",
    "acpi_memory_hotplug", "crash_image", "debian",
    "default_append", "family", "fedora", "generic", "loaded_lacks_growth_safety",
    "memory_hotplug_hazard", "missing_parts",
    "read_shell_vars", "survive_growth", "suse", "Watchdogs", "find_watchdogs",
    "watchdog_drivers", "with_overrides",
]

READERS = {"debian": debian, "fedora": fedora, "suse": suse, "generic": generic}


def family(root: Path) -> str:
    """Which distribution kdump is installed under ``root``."""
    if exists(root, DEBIAN_DEFAULTS) or exists(root, "/usr/sbin/kdump-config"):
        return "debian"
    if exists(root, "/usr/lib/kdump/load.sh"):
        return "suse"
    if exists(root, "/usr/bin/kdumpctl") or exists(root, "/usr/sbin/kdumpctl"):
        return "fedora"
    return "generic"



def crash_image(root: Path, release: str, machine: str) -> CrashImage:
    """The image the distribution under ``root`` loads for kernel ``release``.

    Raises DistroError when its configuration cannot be evaluated safely.
    """
    return READERS[family(root)](root, release, machine)
