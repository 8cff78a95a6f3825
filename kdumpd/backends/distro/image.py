"""The crash kernel a reload loads, and where each of its parts came from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from kdumpd.backends import kexec_args
from kdumpd.backends.distro.origin import Origin
from kdumpd.backends.kexec_args import KexecArgs


class DistroError(Exception):
    """The distribution's kdump configuration cannot be used; one line naming the file."""


@dataclass(frozen=True)
class CrashImage:
    """The crash kernel a reload loads, and where each part came from."""

    kernel: Path
    initrd: Path | None
    append: str
    initrd_required: bool = False  # the distribution boots its dump path from an initrd
    family: str = "configured"  # "debian", "fedora", "suse", "generic" (none found)
    # Where each part came from (origin.py); initrd_from None when there is no initrd.
    kernel_from: Origin = Origin.own("reload.kernel")
    initrd_from: Origin | None = None
    append_from: Origin = Origin.own("reload.append")
    config_file: str = ""  # the distribution's kdump configuration it was read from
    # Options kdumpd put into or took out of the command line above, and why.
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed_why: str = ""
    # The administrator's kexec arguments from the distribution's configuration.
    kexec_args: KexecArgs = KexecArgs()
    kexec_args_from: Origin | None = None  # None: the distribution has no such setting
    # Parts of the command line the distribution's script would add that could not be
    # derived here (one line each, naming the part): the image is loaded without them.
    not_derived: tuple[str, ...] = ()

    def sources(self) -> dict[str, str]:
        """What would be loaded and where each part came from, for `kdumpd status`."""
        described = {
            "kernel": f"{self.kernel} ({self.kernel_from.text()})",
            "initrd": (f"{self.initrd} ({self.initrd_from.text()})"
                       if self.initrd is not None and self.initrd_from is not None
                       else "none"),
            "append": f"{self.append} ({self.append_from.text()})",
        }
        if self.added:
            described["added"] = f"{' '.join(self.added)} ({self.changed_why})"
        if self.removed:
            described["removed"] = f"{' '.join(self.removed)} ({self.changed_why})"
        return described


def missing_parts(image: CrashImage, root: Path) -> list[str]:
    """The kernel and initrd of ``image`` that do not exist under ``root``, named."""
    return [f"{label} {path}" for label, path in (("kernel", image.kernel),
                                                  ("initrd", image.initrd))
            if path is not None and not (root / str(path).lstrip("/")).exists()]


def admin_kexec_args(value: str, where: Origin) -> KexecArgs:
    """The distribution's kexec arguments setting ``value`` (read from ``where``)."""
    try:
        return kexec_args.parse(value)
    except ValueError as error:
        raise DistroError(f"{where.text()}: {error}") from None


def with_overrides(image: CrashImage, kernel: str, initrd: str, append: str) -> CrashImage:
    """kdumpd's own [reload] kernel/initrd/append, where set, win over the distribution's."""
    return dataclasses.replace(
        image,
        kernel=Path(kernel) if kernel else image.kernel,
        initrd=Path(initrd) if initrd else image.initrd,
        append=append or image.append,
        initrd_required=image.initrd_required and not initrd,
        kernel_from=Origin.own("reload.kernel") if kernel else image.kernel_from,
        initrd_from=Origin.own("reload.initrd") if initrd else image.initrd_from,
        append_from=Origin.own("reload.append") if append else image.append_from,
    )
