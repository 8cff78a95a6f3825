"""Small reads under an injected root, shared by the distributions' readers: nothing
here runs a command, blocks on a FIFO or reads without bound."""

from __future__ import annotations

import re
from pathlib import Path

from kdumpd.smallfile import read_regular

SYSCONFIG = "/etc/sysconfig/kdump"

SHELL_FILE_LIMIT = 1 << 20  # a kdump tool's shell configuration is a few KiB

SMALL_FILE_LIMIT = 64 << 10  # a modalias, /etc/machine-id, an EFI variable, /proc/cmdline


def boot_cpu_apicid(root: Path, field: str) -> str:
    """CPU 0's ``apicid`` (or ``initial apicid``) from /proc/cpuinfo; "" if none."""
    try:
        text = (root / "proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    cpu = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            cpu = value
        elif key == field and cpu == "0":
            return value
    return ""


def proc_cmdline(root: Path) -> str:
    return small_text(root, "/proc/cmdline").strip()


def small_text(root: Path, path: str) -> str:
    """A small file's text under ``root``; "" when it cannot be read."""
    try:
        data = read_regular(root / path.lstrip("/"), SMALL_FILE_LIMIT)
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def exists(root: Path, path: str) -> bool:
    return (root / path.lstrip("/")).exists()


def is_file(root: Path, path: Path) -> bool:
    return (root / str(path).lstrip("/")).is_file()


def mtime(root: Path, path: Path) -> float:
    try:
        return (root / str(path).lstrip("/")).stat().st_mtime
    except OSError:  # removed since it was seen: the other one, if any
        return float("-inf")


def cmdline_words(cmdline: str) -> list[str]:
    """A kernel command line's words; a double-quoted value with spaces is one word."""
    return re.findall(r'(?:"[^"]*"?|[^"\s])+', cmdline)


def squeeze(text: str) -> str:
    return " ".join(text.split())
