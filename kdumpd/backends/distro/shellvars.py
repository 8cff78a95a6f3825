"""The ``NAME=value`` settings of a kdump tool's shell configuration, read without a
shell: a value only the shell could know is refused, not guessed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from kdumpd.backends.distro.files import SHELL_FILE_LIMIT
from kdumpd.backends.distro.image import DistroError
from kdumpd.security import fd_problem
from kdumpd.smallfile import read_regular


def read_shell_vars(root: Path, path: str) -> dict[str, str]:
    """``NAME=value`` lines of a shell file that a kdump tool sources; missing file: {}.

    Quotes are undone the way the shell would; a value that needs the shell to expand
    (``$``, backquotes) cannot be known without running it and raises DistroError.
    """
    try:
        # Never blocks (a FIFO), never reads without bound, and as root the file read is
        # the file checked: root's, not writable by others.
        data = read_regular(root / path.lstrip("/"), SHELL_FILE_LIMIT + 1, fd_problem)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise DistroError(f"{path}: cannot read: {error.strerror}") from None
    if len(data) > SHELL_FILE_LIMIT:
        raise DistroError(f"{path}: larger than {SHELL_FILE_LIMIT} bytes: not a kdump "
                          "configuration")
    text = data.decode("utf-8", errors="replace")
    values: dict[str, str] = {}
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not match:
            continue
        name, raw = match.groups()
        first = number
        while True:  # a quoted value may go on over several lines
            try:
                words = shlex.split(raw, comments=True, posix=True)
                break
            except ValueError as error:
                if number >= len(lines):
                    raise DistroError(f"{path}:{first}: {name}: {error}") from None
                raw += "\n" + lines[number]
                number += 1
        if _needs_expansion(raw):
            raise DistroError(f"{path}:{first}: {name} needs the shell to expand it; "
                              "kdumpd does not run it: set reload.kernel/initrd/append instead")
        value = " ".join(words)
        if "'" not in raw:  # in double quotes the shell undoes \$ and \` (shlex does not)
            value = value.replace("\\$", "$").replace("\\`", "`")
        values[name] = value
    return values


def _needs_expansion(raw: str) -> bool:
    """True when the shell would expand something in ``raw`` ($, backquotes outside
    single quotes and not escaped with a backslash)."""
    quote = ""
    escaped = False
    for char in raw:
        if escaped:
            escaped = False
        elif quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif char == "'" and not quote:
            quote = "'"
        elif char == "#" and not quote:
            return False
        elif char in "$`":
            return True
        elif char == '"':
            quote = "" if quote == '"' else '"'
    return False
