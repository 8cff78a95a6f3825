"""Whether a dump kernel may take memory hot-added before the panic as its own."""

from __future__ import annotations

import re
from pathlib import Path

from kdumpd.backends.distro.debian import DEBIAN_DEFAULTS
from kdumpd.backends.distro.files import SYSCONFIG
from kdumpd.backends.distro.image import CrashImage

# Where each family's dump kernel command line takes extra options.
APPEND_SETTING = {
    "debian": f"KDUMP_CMDLINE_APPEND in {DEBIAN_DEFAULTS}",
    "fedora": f"KDUMP_COMMANDLINE_APPEND in {SYSCONFIG}",
    "suse": f"KDUMP_COMMANDLINE_APPEND in {SYSCONFIG}",
}


def acpi_memory_hotplug(root: Path) -> bool:
    """Whether the machine has ACPI memory devices (PNP0C80): slots a DIMM can be hot-added to."""
    return any((root / "sys/bus/acpi/devices").glob("PNP0C80:*"))


def memory_hotplug_hazard(image: CrashImage, machine: str, acpi_slots: bool) -> str | None:
    """Why the dump kernel of ``image`` may take memory hot-added before the panic as its
    own, or None.

    On x86 with ACPI memory slots (``acpi_slots``) the dump kernel finds hot-added DIMMs in
    the ACPI tables and adds them as its own memory unless told not to with
    ``acpi_no_memhotplug``; it then runs in the memory it should dump, and makedumpfile's
    read of it fails ("ioremap on RAM"). Seen with Debian's kdump-tools in the Debian 13
    guest (tests/vm, scenario 14); Fedora's default append has ``acpi_no_memhotplug``.
    ``memhp_default_state=offline`` does not count: the memory is still added, and a udev
    rule in the dump initrd may online it.
    """
    if not acpi_slots or not re.fullmatch(r"i.86|x86_64", machine):
        return None
    words = image.append.split()
    if "acpi_no_memhotplug" in words:
        return None
    states = [word.split("=", 1)[1] for word in words
              if word.startswith("memhp_default_state=")]
    setting = ("reload.append" if image.append_from == "reload.append"
               else APPEND_SETTING.get(image.family, "reload.append"))
    inherited = f", and it has memhp_default_state={states[-1]}" if states else ""
    return (f"the dump kernel's command line lacks acpi_no_memhotplug{inherited}: after a "
            "memory hot-add it may online the new memory as its own and the dump can fail; "
            f"add acpi_no_memhotplug to {setting}")
