"""Refusing files a root daemon must not trust: config and crash kernel images that
someone other than root could have written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kdumpd.config import Config, ConfigError


def check_trusted_file(path: Path, label: str, *, euid: int | None = None) -> None:
    """As root, refuse ``path`` unless it is owned by root and not group/world-writable.

    A missing file is fine here (the caller decides what absence means).
    Raises ConfigError naming the file.
    """
    if (os.geteuid() if euid is None else euid) != 0:
        return
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as error:
        raise ConfigError("", f"cannot stat {label}: {error.strerror}", path) from None
    if info.st_uid != 0:
        raise ConfigError("", f"{label} is owned by uid {info.st_uid}, not root: refusing it", path)
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        raise ConfigError(
            "", f"{label} is group- or world-writable (mode {mode:04o}): refusing it", path
        )


def check_image_files(cfg: Config, *, euid: int | None = None) -> None:
    """The configured kernel and initrd will be loaded as the crash kernel: vet them."""
    for key, value in (("reload.kernel", cfg.reload.kernel), ("reload.initrd", cfg.reload.initrd)):
        if value:
            try:
                check_trusted_file(Path(value), key, euid=euid)
            except ConfigError as error:
                raise ConfigError(key, error.problem, error.path) from None
