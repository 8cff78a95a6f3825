"""The ``NAME=value`` settings of a kdump tool's shell configuration, read without a
shell: a value only the shell could know is refused, not guessed.

The file is read only when every line is one kdumpd reads exactly as sh would: blank
lines, comments, one-line function definitions (they set nothing while the file is
read), and ``NAME=value`` or ``export NAME=value`` with sh's quoting (single
quotes, double quotes with their backslash escapes, backslashes, a value over several
lines inside quotes, a comment after whitespace). Anything else (``if``, ``&&``, ``;``,
``unset``, two words after the ``=``, ``$`` or backquotes outside single quotes, an
unquoted ``~`` where sh expands it to a home directory (the start of the value or after
a ``:``), a carriage return, which sh keeps in the value of a file with CRLF line ends)
makes the file a refused one, naming the line. One pass over the file: linear time.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdumpd.backends.distro.files import SHELL_FILE_LIMIT
from kdumpd.backends.distro.image import DistroError
from kdumpd.security import fd_problem
from kdumpd.smallfile import read_regular

_ASSIGNMENT = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")
# A one-line function definition sets no variable while the file is read (its body runs
# only when called): kdump-tools' own test setups override reboot() this way.
_FUNCTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*[ \t]*\(\)[ \t]*\{[^\n]*\}[ \t]*(#.*)?")
_DOUBLE_QUOTE_ESCAPES = "$`\"\\\n"
_OPERATORS = ";&|<>()"


def read_shell_vars(root: Path, path: str) -> dict[str, str]:
    """``NAME=value`` lines of a shell file that a kdump tool sources; missing file: {}.

    Raises DistroError (one line, naming the file and line) for a file kdumpd cannot
    read exactly as sh would.
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
    return _Reader(data.decode("utf-8", errors="replace"), path).assignments()


class _Reader:
    """One pass over ``text``: ``pos`` only moves forward."""

    def __init__(self, text: str, path: str) -> None:
        self.text, self.path, self.pos, self.line = text, path, 0, 1

    def assignments(self) -> dict[str, str]:
        values: dict[str, str] = {}
        while self.pos < len(self.text):
            start = self.line
            match = _ASSIGNMENT.match(self.text, self.pos)
            if match is None:
                self._blank_or_comment()
                continue
            self.pos = match.end()
            values[match.group(1)] = self._value(match.group(1), start)
        return values

    def _fail(self, line: int, why: str) -> DistroError:
        return DistroError(f"{self.path}:{line}: {why}")

    def _blank_or_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        content = self.text[self.pos:end].strip(" \t")
        if "\r" in content and not content.startswith("#"):
            raise self._fail(self.line, "a carriage return (CRLF line ends?), which sh "
                             "reads as part of the line; convert the file to LF line ends")
        if content and not content.startswith("#") and not _FUNCTION.fullmatch(content):
            raise self._fail(self.line, f"not a line kdumpd reads exactly as sh would: "
                             f"{content[:60]!r}; set reload.kernel/initrd/append instead")
        self._next_line(end)

    def _next_line(self, end: int) -> None:
        self.pos = end + 1
        self.line += 1

    def _value(self, name: str, start: int) -> str:
        """The word after ``NAME=``, its quotes undone; the rest of its line must be
        blank or a comment."""
        text = self.text
        word: list[str] = []
        quote = ""
        tilde_expands = True  # sh expands an unquoted ~ here: the value's start, after ':'
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            expands, tilde_expands = tilde_expands, False
            if char == "\r":
                raise self._fail(self.line, f"{name}: a carriage return (CRLF line ends?), "
                                 "which sh keeps in the value; convert the file to LF line "
                                 "ends")
            if char == "\n":
                self.line += 1
                if not quote:
                    return "".join(word)
                word.append(char)
            elif quote == "'":
                if char == "'":
                    quote = ""
                else:
                    word.append(char)
            elif char == "\\":
                self._escaped(word, quote)
            elif char in "$`":
                raise self._fail(start, f"{name} needs the shell to expand it; kdumpd does "
                                 "not run it: set reload.kernel/initrd/append instead")
            elif quote == '"':
                if char == '"':
                    quote = ""
                else:
                    word.append(char)
            elif char in "'\"":
                quote = char
            elif char in " \t":
                self._rest_of_line(name, start)
                return "".join(word)
            elif char in _OPERATORS:
                raise self._fail(start, f"{name}: {char!r} makes this a shell command, "
                                 "not a setting kdumpd reads")
            elif char == "~" and expands:
                raise self._fail(start, f"{name}: sh expands an unquoted ~ to a home "
                                 "directory; kdumpd does not: write the path out")
            else:
                tilde_expands = char == ":"
                word.append(char)
        if quote:
            raise self._fail(start, f"{name}: No closing quotation")
        return "".join(word)

    def _escaped(self, word: list[str], quote: str) -> None:
        """A backslash: outside quotes it keeps the next character; inside double quotes
        only before $ ` " \\ and a newline (a newline after it is removed either way)."""
        if self.pos >= len(self.text):
            word.append("\\")
            return
        char = self.text[self.pos]
        self.pos += 1
        if char == "\n":
            self.line += 1
            return
        if quote == '"' and char not in _DOUBLE_QUOTE_ESCAPES:
            word.append("\\")
        word.append(char)

    def _rest_of_line(self, name: str, start: int) -> None:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        rest = self.text[self.pos:end].strip(" \t")
        if rest and not rest.startswith("#"):
            raise self._fail(start, f"{name}: a second word {rest[:40]!r} makes this a "
                             "command run with the setting, not a setting kdumpd reads")
        self._next_line(end)
