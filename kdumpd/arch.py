"""What kdumpd must know per architecture (``uname -m``), in one place.

Pure: :func:`facts` maps a machine name to frozen facts; the composition root (app.py)
reads ``os.uname().machine`` once and passes the facts on. Nothing here is chosen at
import time.

Sources: the kernel's sources (torvalds/linux 6.6-6.12), kexec-tools 2.0.29, and the
guests of tests/vm (x86_64: Debian 13; ppc64le: a pseries guest under QEMU 7.2 TCG with
Debian's ppc64el 6.12.107, docs/ppc64le.md).

- x86: the kernel's own header update (crash_hotplug=1) rebuilds the header from the
  System RAM resources and runs at MEM_ONLINE/MEM_OFFLINE only; a removed DIMM stays in
  the header (seen in the Debian 13 guest). kexec-tools builds a kexec_load image from
  /proc/iomem (real addresses: CAP_SYS_ADMIN), /proc/kcore and ``_stext`` in
  /proc/kallsyms. The reservation is /proc/iomem's ``Crash kernel`` range.
- powerpc (pseries): the update also removes the range and rewrites the FDT. kexec-tools
  builds a kexec_load image from the device tree: it loaded a working ``-c --hotplug``
  image with /proc/kcore, /proc/kallsyms and /proc/iomem all empty. /proc/iomem has no
  ``Crash kernel`` line: the reservation is ``/proc/device-tree/chosen/
  linux,crashkernel-base`` and ``-size``. CPUs are never added or removed as devices:
  every possible CPU is in sysfs from boot and a hot-added core sends only ``online``
  (``offline`` on removal). A panic on a CPU that a kexec_load image without
  ``--hotplug`` does not know never reaches the crash kernel (the console stops at "I'm
  in purgatory"): the whole dump is lost, not a part of it.
  kexec-tools (crashdump-ppc64.c, exclude_crash_region()) leaves all memory at or above
  ``/chosen/linux,memory-limit`` out of a kexec_load header, and the kernel exported it
  at boot as the boot RAM's end (0x80000000 in the 2 GiB guest, no ``mem=``): a DIMM
  hot-added before a load is missing from that load's header until the kernel's own
  update rebuilds it at the next memory event (seen: a dump without the DIMM).
- s390: the dump kernel builds the ELF core header itself (elfcorehdr_alloc()); no
  event ever needs a reload.
"""

from __future__ import annotations

from dataclasses import dataclass

IOMEM = "iomem"
DEVICE_TREE = "device-tree"
X86_KEXEC_LOAD_READS = ("kcore", "iomem", "kallsyms")


@dataclass(frozen=True)
class Arch:
    machine: str  # uname -m
    family: str  # "x86", "powerpc", "s390", or the machine itself
    # The dump kernel builds its header itself: no event needs a reload (s390).
    header_built_by_dump_kernel: bool = False
    # The kernel's update leaves a hot-removed range in the header (x86).
    removal_leaves_range: bool = False
    # /proc files in which kexec-tools needs real addresses to build a kexec_load image.
    kexec_load_reads: tuple[str, ...] = X86_KEXEC_LOAD_READS
    # Where the crash kernel's reservation is published: IOMEM or DEVICE_TREE.
    reservation_in: str = IOMEM
    # The CPU uevents the kernel sends on hotplug.
    cpu_actions: tuple[str, ...] = ("add", "remove", "online", "offline")
    # A panic on a CPU that a kexec_load image without --hotplug does not know loses the
    # whole dump (powerpc), not only that CPU's registers.
    unknown_cpu_loses_dump: bool = False
    # kexec-tools' kexec_load header leaves RAM hot-added since boot out (powerpc:
    # linux,memory-limit), so auto prefers kexec_file_load where the kernel has it.
    kexec_load_omits_hot_added_ram: bool = False
    # `kdumpd verify` can read the loaded header back (loaded_header.py: x86_64, ppc64le).
    header_readback: bool = False

    def lines(self) -> tuple[str, ...]:
        """What differs from x86 here, one line each, for `kdumpd status`."""
        said = []
        if self.reservation_in == DEVICE_TREE:
            said.append("the crash reservation is read from the device tree "
                        "(/proc/device-tree/chosen/linux,crashkernel-base and -size)")
        if not self.kexec_load_reads:
            said.append("kexec_load needs no /proc/kcore, /proc/kallsyms or /proc/iomem "
                        "(kexec-tools reads the device tree)")
        if self.cpu_actions == ("online", "offline"):
            said.append("CPU hotplug sends only online/offline uevents (every possible CPU "
                        "is in sysfs from boot)")
        if self.unknown_cpu_loses_dump:
            said.append("a panic on a CPU a plain -c image does not know loses the whole "
                        "dump: such an image is replaced after any CPU hotplug")
        if self.header_built_by_dump_kernel:
            said.append("the dump kernel builds its ELF core header itself: no reload is "
                        "ever needed")
        if self.family == "powerpc":
            said.append("kexec-tools leaves RAM above the device tree's linux,memory-limit "
                        "(the boot RAM's end) out of a kexec_load header: memory hot-added "
                        "since boot is in the header only once the kernel has updated it "
                        "(crash_hotplug=1) at a memory event after the load")
            said.append("fadump (firmware-assisted dump) is left to the distribution's "
                        "kdump and rules")
        if not self.header_readback:
            said.append(f"the loaded header is not read back on {self.machine} (kdumpd "
                        "verify: x86_64 and ppc64le only)")
        return tuple(said)


X86 = ("x86_64", "i386", "i486", "i586", "i686")
POWERPC = ("ppc64le", "ppc64")
S390 = ("s390", "s390x")


def facts(machine: str) -> Arch:
    """The facts for ``machine`` (``uname -m``). An architecture kdumpd has not met keeps
    x86's kexec_load checks (the safe side: kdumpd then prefers kexec_file_load) and the
    reservation in /proc/iomem, as arm64 publishes it too."""
    if machine in X86:
        return Arch(machine, "x86", removal_leaves_range=True,
                    header_readback=machine == "x86_64")
    if machine in POWERPC:
        return Arch(machine, "powerpc", kexec_load_reads=(), reservation_in=DEVICE_TREE,
                    cpu_actions=("online", "offline"), unknown_cpu_loses_dump=True,
                    kexec_load_omits_hot_added_ram=True, header_readback=machine == "ppc64le")
    if machine in S390:
        return Arch(machine, "s390", header_built_by_dump_kernel=True)
    return Arch(machine, machine)
