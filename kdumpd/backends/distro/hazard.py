"""Whether a dump kernel may take memory hot-added before the panic as its own, and the
command line that keeps it from doing so.

On x86 with ACPI memory slots the dump kernel finds hot-added DIMMs in the ACPI tables and
adds them as its own memory unless told not to with ``acpi_no_memhotplug``: it then runs
in the memory it should dump. Measured in the Debian 13 guest with Debian's kdump-tools
(``crashkernel=256M``, its default command line, which inherits
``memhp_default_state=online_movable``): 3 GiB hot-added still gave a complete dump, 5.5 GiB
killed the dump kernel 2.8 s into its boot ("System is deadlocked on memory"), and the
same 5.5 GiB with ``acpi_no_memhotplug`` gave a complete dump. Fedora's kdumpctl adds it
by default; Debian's kdump-tools and kdumpd's generic image did not.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from kdumpd.backends.distro.debian import DEBIAN_DEFAULTS
from kdumpd.backends.distro.files import SYSCONFIG, cmdline_words
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
    setting = ("reload.append" if image.append_from.source == "kdumpd-config"
               else APPEND_SETTING.get(image.family, "reload.append"))
    inherited = f", and it has memhp_default_state={states[-1]}" if states else ""
    return (f"the dump kernel's command line lacks acpi_no_memhotplug{inherited}: after a "
            "memory hot-add it may online the new memory as its own and the dump can fail; "
            f"add acpi_no_memhotplug to {setting}")


NO_MEMHOTPLUG = "acpi_no_memhotplug"
# The first kernel's memory-hotplug options, which only matter to memory the dump kernel
# must not take: whether to online it and how.
_FIRST_KERNEL_ONLY = re.compile(r"^(memhp_default_state|memory_hotplug\.[^=]*)(=|$)")
GROWTH_WHY = ("x86 with ACPI memory slots: the dump kernel must not take hot-added memory "
              "as its own; [reload] growth_safe = false turns this off")


def survive_growth(image: CrashImage, machine: str, acpi_slots: bool) -> CrashImage:
    """``image`` with a dump kernel command line that leaves hot-added memory alone:
    ``acpi_no_memhotplug`` added and the first kernel's ``memhp_default_state=`` and
    ``memory_hotplug.*`` options removed, on x86 with ACPI memory slots (elsewhere, or
    when there is nothing to change, ``image`` itself). What changed is recorded in the
    image's ``added``/``removed`` for `kdumpd status`.
    """
    if not acpi_slots or not re.fullmatch(r"i.86|x86_64", machine):
        return image
    words = cmdline_words(image.append)
    removed = tuple(w for w in words if _FIRST_KERNEL_ONLY.match(w.replace('"', "")))
    kept = [w for w in words if w not in removed]
    added = () if NO_MEMHOTPLUG in kept else (NO_MEMHOTPLUG,)
    if not added and not removed:
        return image
    return dataclasses.replace(
        image, append=" ".join([*kept, *added]), added=image.added + added,
        removed=image.removed + removed, changed_why=GROWTH_WHY,
    )


def loaded_lacks_growth_safety(loaded_cmdline: str, machine: str, acpi_slots: bool
                               ) -> str | None:
    """Why the *loaded* dump kernel's command line (read back from the reservation,
    loaded_header.py) would not survive memory growth, or None: what
    :func:`survive_growth` would have added. On a day-one Debian 13 host kdump-tools' own
    ``kexec -s`` image (crash_hotplug 1/1: kdumpd never reloads it) lacked it, and after
    11 hot-added 512 MiB DIMMs its dump kernel died of out-of-memory 2.5 s into its boot
    while `kdumpd status` showed kdumpd's own, protected, command line."""
    if not acpi_slots or not re.fullmatch(r"i.86|x86_64", machine):
        return None
    words = cmdline_words(loaded_cmdline)
    if NO_MEMHOTPLUG in words:
        return None
    inherited = [w for w in words if _FIRST_KERNEL_ONLY.match(w.replace('"', ""))]
    also = f" and carries {' '.join(inherited)}" if inherited else ""
    return (f"the loaded dump kernel's command line lacks {NO_MEMHOTPLUG}{also}: after "
            "memory grows it may take the new memory as its own and die before the dump")
