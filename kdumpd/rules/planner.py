"""The pure rule planner: rules-file text in, new text and a diff out. No I/O.

This is the part the Ansible module imports. Public API::

    from kdumpd.rules import planner, snippet

    result = planner.plan(text, state="present", snippet=snippet.template(),
                          handover="/run/kdumpd/handles-reload")
    result.changed      # bool: after != before
    result.after        # the new text ("" never means delete; see manage.py for files)
    result.msg          # one line for humans
    result.label        # the end label the block jumps to
    planner.unified_diff(result, "before: f", "after: f")   # str, difflib

``plan`` raises :class:`PlanError` (a ``ValueError``) with a one-line message naming the
line for malformed markers (a BEGIN without an END, two blocks, ...). It never raises
anything else for any input text.

Semantics (like Ansible's ``blockinfile``):

- The managed block sits between ``# BEGIN kdumpd managed block`` and
  ``# END kdumpd managed block`` at the very beginning of the file; an existing block is
  replaced in place (it moves back to the top if someone moved it).
- The block jumps to the file's *end label*: the ``LABEL`` that ends the file (only blank
  lines and comments after it), e.g. ``kdump_reload_end`` (Fedora) or ``kdump_end``
  (SUSE). A file without one (Debian's kdump-tools rules) gets a second managed region at
  its end, ``# BEGIN kdumpd managed label`` ... ``LABEL="kdumpd_end"`` ...
  ``# END kdumpd managed label``, because udev resolves ``GOTO`` only within one file.
- Snippet lines the file already holds outside the block, among its leading rule lines
  (same assignments, jumping to the end label: Fedora's and SUSE's two ``crash_hotplug``
  lines) are left out of the block; when all are there, nothing is added at all.
- Removing restores the bytes the file had before the install exactly: the install only
  adds whole lines (a missing final newline is recorded by leaving the managed label's END
  marker without one, so remove knows to take the added newline away again).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

from kdumpd.rules import syntax
from kdumpd.udev_value import unsafe_value

BLOCK_BEGIN = "# BEGIN kdumpd managed block"
BLOCK_END = "# END kdumpd managed block"
LABEL_BEGIN = "# BEGIN kdumpd managed label"
LABEL_END = "# END kdumpd managed label"
MANAGED_LABEL = "kdumpd_end"
OVERRIDE_PREFIX = "# kdumpd override of "
END_LABEL_PLACEHOLDER = "@END_LABEL@"
HANDOVER_PLACEHOLDER = "@HANDOVER@"
STATES = ("present", "absent")


class PlanError(ValueError):
    """The file cannot be planned safely; ``str()`` is one line, naming the line number."""


@dataclass(frozen=True)
class Parsed:
    """A rules file split into the parts kdumpd owns and the rest.

    ``base`` is the text without the managed block and the managed label: exactly the
    bytes the file had before kdumpd touched it.
    """

    text: str
    base: str
    block: tuple[str, ...]  # lines between the block markers (without endings)
    block_line: int | None  # line number of the BEGIN marker
    has_label_region: bool

    @property
    def override_of(self) -> tuple[str, str] | None:
        """``(vendor path, sha256 of base)`` when the block says the file is an override."""
        for line in self.block:
            if line.startswith(OVERRIDE_PREFIX):
                rest = line[len(OVERRIDE_PREFIX):]
                path, _, digest = rest.partition(" sha256 ")
                digest = digest.split()[0] if digest.split() else ""
                if path and len(digest) == 64:
                    return path, digest
        return None


@dataclass(frozen=True)
class Plan:
    changed: bool
    before: str
    after: str
    msg: str
    label: str | None = None  # the end label the block jumps to (present only)
    managed_label: bool = False  # True when kdumpd adds LABEL="kdumpd_end"
    block: tuple[str, ...] = ()  # the managed block's lines, markers excluded
    covered: tuple[str, ...] = ()  # snippet lines the file already holds itself
    written: frozenset[int] = frozenset()  # line numbers in ``after`` that kdumpd wrote


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


# -- parsing ---------------------------------------------------------------------------


def _marker(line: str) -> str | None:
    stripped = line.strip()
    if stripped in (BLOCK_BEGIN, BLOCK_END, LABEL_BEGIN, LABEL_END):
        return stripped
    return None


def parse(text: str) -> Parsed:
    """Find the managed regions. Raises :class:`PlanError` for malformed markers."""
    lines = syntax.physical_lines(text)
    regions: dict[str, tuple[int, int]] = {}
    open_kind: str | None = None
    open_at = 0
    for index, line in enumerate(lines):
        marker = _marker(line)
        if marker is None:
            continue
        number = index + 1
        kind = "block" if marker in (BLOCK_BEGIN, BLOCK_END) else "label"
        begins = marker in (BLOCK_BEGIN, LABEL_BEGIN)
        if begins:
            if open_kind is not None:
                raise PlanError(f"line {number}: {marker!r} inside the region opened at "
                                f"line {open_at + 1} (missing END marker)")
            if kind in regions:
                raise PlanError(f"line {number}: a second kdumpd managed {kind} (the first "
                                f"starts at line {regions[kind][0] + 1}); remove one by hand")
            open_kind, open_at = kind, index
        else:
            if open_kind != kind:
                raise PlanError(f"line {number}: {marker!r} without a matching BEGIN marker")
            regions[kind] = (open_at, index)
            open_kind = None
    if open_kind is not None:
        begin = BLOCK_BEGIN if open_kind == "block" else LABEL_BEGIN
        raise PlanError(f"line {open_at + 1}: {begin!r} without a matching END marker")

    drop: set[int] = set()
    for start, end in regions.values():
        drop.update(range(start, end + 1))
    base_lines = [line for i, line in enumerate(lines) if i not in drop]
    if "label" in regions:
        start, end = regions["label"]
        if not lines[end].endswith("\n") and start > 0 and (start - 1) not in drop:
            # The install added this newline to a file that had none at its end.
            position = sum(1 for i in range(start) if i not in drop) - 1
            previous = base_lines[position]
            if previous.endswith("\n"):
                base_lines[position] = previous[:-1]
    block: tuple[str, ...] = ()
    block_line = None
    if "block" in regions:
        start, end = regions["block"]
        block = tuple(line.rstrip("\n").rstrip("\r") for line in lines[start + 1:end])
        block_line = start + 1
    return Parsed(text, "".join(base_lines), block, block_line, "label" in regions)


def end_label(text: str) -> str | None:
    """The label that ends ``text``: the last rule line is ``LABEL="..."`` alone."""
    lines = [ln for ln in syntax.logical_lines(syntax.physical_lines(text)) if ln.is_rule]
    if not lines:
        return None
    items = syntax.try_tokenize(lines[-1].content)
    if items and len(items) == 1 and items[0].key == "LABEL" and items[0].op == "=":
        return items[0].value or None
    return None


# -- the snippet -----------------------------------------------------------------------


def render(template: str, *, label: str, handover: str) -> str:
    """Substitute the placeholders. Raises :class:`PlanError` for unsafe values."""
    for name, value in (("end label", label), ("hand-over path", handover)):
        problem = unsafe_value(value)
        if problem:
            raise PlanError(f"{name} {value!r} {problem}")
    return template.replace(END_LABEL_PLACEHOLDER, label).replace(HANDOVER_PLACEHOLDER, handover)


def _sections(rendered: str) -> list[list[str]]:
    """Template lines grouped by blank lines; ``#!`` notes and outer blanks dropped."""
    sections: list[list[str]] = [[]]
    for raw in rendered.split("\n"):
        line = raw.rstrip("\r")
        if line.startswith("#!"):
            continue
        if line.strip():
            sections[-1].append(line)
        elif sections[-1]:
            sections.append([])
    return [s for s in sections if s]


def _signature(content: str, label: str) -> frozenset[tuple[str, str | None, str, str]] | None:
    items = syntax.try_tokenize(content)
    if not items:
        return None
    gotos = [i for i in items if i.key == "GOTO"]
    if len(gotos) != 1 or gotos[0].value != label:
        return None
    return frozenset((i.key, i.attr, i.op, i.value) for i in items)


def _runs_program(content: str) -> bool:
    """A rule line with RUN, PROGRAM or IMPORT{program}: the only ways a rule reloads."""
    items = syntax.try_tokenize(content)
    if items is None:
        return True  # a line kdumpd cannot read may well run something
    return any(item.key in ("RUN", "PROGRAM") or (item.key == "IMPORT" and item.attr == "program")
               for item in items)


def _is_rule(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _missing_sections(
    rendered: str, base_logical: list[syntax.LogicalLine], label: str
) -> tuple[list[list[str]], list[str]]:
    """The snippet sections still needed, and the rule lines the file already holds.

    Only the file's leading rule lines count: a skip line after a reload rule comes too late.
    """
    sections = _sections(rendered)
    wanted = {_signature(line, label) for section in sections for line in section
              if _is_rule(line)} - {None}
    own: set[frozenset[tuple[str, str | None, str, str]] | None] = set()
    for line in base_logical:
        signature = _signature(line.content, label)
        if signature not in wanted:
            break
        own.add(signature)
    kept_sections: list[list[str]] = []
    covered: list[str] = []
    for section in sections:
        rules = [line for line in section if _is_rule(line)]
        missing = [line for line in rules if _signature(line, label) not in own]
        covered.extend(line for line in rules if line not in missing)
        if rules and not missing:
            continue
        kept_sections.append([line for line in section if not _is_rule(line) or line in missing])
    return kept_sections, covered


# -- planning --------------------------------------------------------------------------


def plan(
    text: str,
    *,
    state: str,
    snippet: str,
    handover: str = "/run/kdumpd/handles-reload",
    header: tuple[str, ...] = (),
) -> Plan:
    """Compute the new text for ``state`` ("present" or "absent").

    ``snippet`` is the template (see :mod:`kdumpd.rules.snippet`), ``handover`` the path
    the hand-over line tests, ``header`` extra comment lines for the top of the block (the
    override note). Raises :class:`PlanError`; see the module docstring.
    """
    if state not in STATES:
        raise PlanError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    for line in header:
        if not line.startswith("#") or "\n" in line or "\r" in line:
            raise PlanError(f"header line {line!r} must be a single comment line")
    parsed = parse(text)
    base = parsed.base
    if state == "absent":
        if base == text:
            return Plan(False, text, text, "no kdumpd managed block: nothing to do")
        return Plan(True, text, base, "removed the kdumpd managed block")

    base_logical = [ln for ln in syntax.logical_lines(syntax.physical_lines(base)) if ln.is_rule]
    found = end_label(base)
    label = found or MANAGED_LABEL
    if found is None:
        defined = syntax.labels(base_logical)
        if MANAGED_LABEL in defined:
            raise PlanError(f"line {defined[MANAGED_LABEL]}: LABEL=\"{MANAGED_LABEL}\" is "
                            "already used but does not end the file; kdumpd cannot add its own")
    rendered = render(snippet, label=label, handover=handover)
    if not any(_runs_program(line.content) for line in base_logical):
        # Nothing in the file reloads anything (SUSE's s390x file is comments only).
        if base == text:
            return Plan(False, text, text, "the file runs no program on any event (no "
                        "reload to skip): nothing to do")
        return Plan(True, text, base, "the file runs no program on any event any more: "
                    "removed the kdumpd managed block")
    kept_sections, covered = _missing_sections(rendered, base_logical, label)
    needed = any(_is_rule(line) for section in kept_sections for line in section)

    if not needed:
        after = base
        block: tuple[str, ...] = ()
        written: frozenset[int] = frozenset()
        if after == text:
            msg = (f"the file already holds equivalent lines (GOTO=\"{label}\") outside a "
                   "managed block: nothing to do")
        else:
            msg = "the file's own lines now cover the snippet: removed the managed block"
        return Plan(after != text, text, after, msg, label, False, block, tuple(covered), written)

    body: list[str] = list(header)
    for index, section in enumerate(kept_sections):
        if index:
            body.append("")
        body.extend(section)
    block = tuple(body)
    managed = found is None
    after, written_numbers = _assemble(base, block, managed)
    changed = after != text
    msg = _present_msg(changed, label, managed, len(covered), parsed)
    return Plan(changed, text, after, msg, label, managed, block, tuple(covered),
                frozenset(written_numbers))


def _assemble(base: str, block: tuple[str, ...], managed: bool) -> tuple[str, set[int]]:
    """The block on top of ``base`` (and the managed label at its end); the rule lines'
    numbers."""
    top = "".join(line + "\n" for line in (BLOCK_BEGIN, *block, BLOCK_END))
    after = top + base
    written = {i + 2 for i, line in enumerate(block) if _is_rule(line)}
    if managed:
        tail = f"{LABEL_BEGIN}\nLABEL=\"{MANAGED_LABEL}\"\n{LABEL_END}"
        label_line = after.count("\n") + 2
        if base == "" or base.endswith("\n"):
            after += tail + "\n"
        else:
            after += "\n" + tail  # no final newline: parse() takes the added one away
            label_line += 1
        written.add(label_line)
    return after, written


def _present_msg(changed: bool, label: str, managed: bool, covered: int, parsed: Parsed) -> str:
    if not changed:
        return f"the managed block is current (GOTO=\"{label}\"): nothing to do"
    if parsed.block_line is not None or parsed.has_label_region:
        msg = f"updated the kdumpd managed block (GOTO=\"{label}\")"
    else:
        msg = f"inserted the kdumpd managed block (GOTO=\"{label}\")"
    if managed:
        msg += f" and LABEL=\"{MANAGED_LABEL}\" at the end"
    if covered:
        msg += f"; {covered} snippet line(s) already in the file were left out"
    return msg


def unified_diff(result: Plan, before_header: str, after_header: str) -> str:
    """The change as a unified diff (empty when unchanged)."""
    return diff_texts(result.before, result.after, before_header, after_header)


def diff_texts(before: str, after: str, before_header: str, after_header: str) -> str:
    """A unified diff of two texts (difflib), empty when they are equal.

    Like diff(1), a last line without a newline is marked "\\ No newline at end of file".
    """
    lines = difflib.unified_diff(syntax.physical_lines(before), syntax.physical_lines(after),
                                 before_header, after_header)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)
