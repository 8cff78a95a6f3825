"""A small, pure parser for udev rule lines: enough to reason about kdump rules files.

It does three jobs for the planner and the validator:

- split a rules file into *logical* lines (udev joins a line ending in a backslash with the
  next one) while keeping the exact original text, so nothing is ever lost;
- tokenise a rule line into ``(key, attribute, operator, value)`` assignments;
- check, strictly, the lines kdumpd writes itself (known keys, the right operators, a
  quoted value, commas between assignments): the fallback when ``udevadm verify`` is not
  available (systemd < 254).

The grammar follows udev(7): ``KEY[{attr}] OP "value"`` separated by commas; ``#`` starts a
comment line; operators ``==`` ``!=`` ``=`` ``+=`` ``-=`` ``:=``; values are double-quoted
with an optional ``e``/``r`` prefix. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MATCH_OPS = ("==", "!=")
ASSIGN_OPS = ("=", "+=", "-=", ":=")

# Keys udev(7) knows; True when the key takes a {attribute} part (required or optional).
KEYS: dict[str, bool] = {
    "ACTION": False, "DEVPATH": False, "KERNEL": False, "KERNELS": False, "NAME": False,
    "SYMLINK": False, "SUBSYSTEM": False, "SUBSYSTEMS": False, "DRIVER": False,
    "DRIVERS": False, "DEVTYPE": False, "TAG": False, "TAGS": False, "PROGRAM": False,
    "RESULT": False, "GOTO": False, "LABEL": False, "OWNER": False, "GROUP": False,
    "MODE": False, "OPTIONS": False, "PARENT": False,
    "ATTR": True, "ATTRS": True, "SYSCTL": True, "ENV": True, "CONST": True, "TEST": True,
    "IMPORT": True, "RUN": True, "SECLABEL": True,
}
# Keys that only match (never assign) and keys that only assign.
# (PROGRAM and IMPORT are matches written with "=" as often as with "==": udev accepts both.)
MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVERS",
              "ATTRS", "TAGS", "TEST", "RESULT", "CONST", "DEVTYPE", "PARENT"}
ASSIGN_ONLY = {"GOTO", "LABEL", "RUN", "OWNER", "GROUP", "MODE", "OPTIONS", "SECLABEL"}

_TOKEN = re.compile(
    r"""\s*(?P<key>[A-Za-z_]+)(?:\{(?P<attr>[^{}"]*)\})?\s*
        (?P<op>==|!=|\+=|-=|:=|=)\s*
        (?P<prefix>[er]?)"(?P<value>(?:[^"\\]|\\.)*)"\s*""",
    re.VERBOSE,
)


class RuleSyntaxError(ValueError):
    """A rule line does not parse; ``str()`` says where and what (one line)."""


@dataclass(frozen=True)
class Assignment:
    key: str
    attr: str | None
    op: str
    value: str


@dataclass(frozen=True)
class LogicalLine:
    """One logical udev line: ``raw`` is the exact text (all physical lines, with endings)."""

    number: int  # 1-based number of its first physical line
    raw: str

    @property
    def content(self) -> str:
        """The rule text with continuations joined and the line ending removed."""
        parts = self.raw.split("\n")
        joined = ""
        for part in parts:
            stripped = part.rstrip("\r")
            joined += stripped[:-1] if stripped.endswith("\\") else stripped
        return joined.strip()

    @property
    def is_rule(self) -> bool:
        """Not blank and not a comment."""
        text = self.content
        return bool(text) and not text.startswith("#")


def physical_lines(text: str) -> list[str]:
    """Split ``text`` on ``\\n`` only, keeping the endings; ``"".join()`` gives ``text`` back.

    (``str.splitlines`` also splits on form feeds and Unicode separators, which would not
    round-trip and is not what udev does.)
    """
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def logical_lines(lines: list[str], first_number: int = 1) -> list[LogicalLine]:
    """Group physical lines into logical ones (a trailing backslash continues a rule line)."""
    result: list[LogicalLine] = []
    pending = ""
    start = first_number
    for offset, line in enumerate(lines):
        if not pending:
            start = first_number + offset
        pending += line
        body = line.rstrip("\n").rstrip("\r")
        is_comment = pending.lstrip().startswith("#")
        if body.endswith("\\") and not is_comment and line.endswith("\n"):
            continue
        result.append(LogicalLine(start, pending))
        pending = ""
    if pending:
        result.append(LogicalLine(start, pending))
    return result


def tokenize(content: str) -> list[Assignment]:
    """Parse one rule line into assignments. Raises :class:`RuleSyntaxError` (no line number)."""
    assignments: list[Assignment] = []
    pos = 0
    length = len(content)
    while True:
        match = _TOKEN.match(content, pos)
        if match is None:
            raise RuleSyntaxError(f"cannot parse at column {pos + 1}: {content[pos:pos + 30]!r}")
        assignments.append(Assignment(match["key"], match["attr"], match["op"], match["value"]))
        pos = match.end()
        if pos >= length:
            return assignments
        if content[pos] != ",":
            raise RuleSyntaxError(f"expected ',' at column {pos + 1}")
        pos += 1
        if content[pos:].strip() == "":
            return assignments  # udev tolerates a trailing comma


def try_tokenize(content: str) -> list[Assignment] | None:
    """Like :func:`tokenize` but None for lines this parser does not understand."""
    try:
        return tokenize(content)
    except RuleSyntaxError:
        return None


def check_assignment(item: Assignment) -> str | None:
    """The problem with one assignment under udev(7)'s rules, or None."""
    if item.key not in KEYS:
        return f"unknown key {item.key}"
    takes_attr = KEYS[item.key]
    if item.attr is not None and not takes_attr:
        return f"{item.key} takes no {{attribute}}"
    if item.attr is None and item.key in ("ATTR", "ATTRS", "SYSCTL", "ENV", "CONST"):
        return f"{item.key} needs an {{attribute}}"
    if item.key in MATCH_ONLY and item.op not in MATCH_OPS:
        return f"{item.key} only matches (== or !=), got {item.op}"
    if item.key in ASSIGN_ONLY and item.op in MATCH_OPS:
        return f"{item.key} cannot be matched with {item.op}"
    if item.key in ("GOTO", "LABEL") and item.op != "=":
        return f"{item.key} needs '=', got {item.op}"
    if item.key in ("GOTO", "LABEL") and not item.value:
        return f"{item.key} needs a non-empty value"
    return None


def check_rule_line(content: str) -> None:
    """Strict check of one rule line. Raises :class:`RuleSyntaxError` naming the problem."""
    items = tokenize(content)
    for item in items:
        problem = check_assignment(item)
        if problem:
            raise RuleSyntaxError(problem)
    # PROGRAM and IMPORT{program} run a program when they match (Debian's kdump-tools
    # rules reload with PROGRAM= alone), so they act whatever their operator.
    if not any(i.key in ASSIGN_ONLY or i.op in ASSIGN_OPS or i.key in ("PROGRAM", "IMPORT")
               for i in items):
        raise RuleSyntaxError("a rule with matches only does nothing")


def labels(lines: list[LogicalLine]) -> dict[str, int]:
    """``LABEL`` name -> line number of its first definition."""
    found: dict[str, int] = {}
    for line in lines:
        if not line.is_rule:
            continue
        for item in try_tokenize(line.content) or ():
            if item.key == "LABEL":
                found.setdefault(item.value, line.number)
    return found


def gotos(lines: list[LogicalLine]) -> list[tuple[int, str]]:
    """``(line number, label)`` of every ``GOTO``."""
    found: list[tuple[int, str]] = []
    for line in lines:
        if not line.is_rule:
            continue
        for item in try_tokenize(line.content) or ():
            if item.key == "GOTO":
                found.append((line.number, item.value))
    return found


def check_lines(text: str, numbers: set[int] | None = None) -> None:
    """Check rule lines of ``text`` strictly, and that every GOTO in them has a later LABEL.

    ``numbers`` limits the strict check to logical lines starting at those line numbers
    (the lines kdumpd wrote); the label check uses the whole text. Raises
    :class:`RuleSyntaxError` with ``line N: ...``.
    """
    lines = logical_lines(physical_lines(text))
    for line in lines:
        if not line.is_rule or (numbers is not None and line.number not in numbers):
            continue
        try:
            check_rule_line(line.content)
        except RuleSyntaxError as error:
            raise RuleSyntaxError(f"line {line.number}: {error}") from None
    for number, label in gotos(lines):
        if numbers is not None and number not in numbers:
            continue
        later = [ln for ln in lines if ln.number > number]
        if label not in labels(later):
            raise RuleSyntaxError(f"line {number}: GOTO=\"{label}\" has no LABEL after it")
