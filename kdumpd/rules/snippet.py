"""The snippet template: ``rules.d/kdumpd-crash-hotplug.rules``, the one truth for its text.

The packages install that file to ``/usr/share/kdumpd/``; the Python package carries it as
package data (``kdumpd/rules/data/`` holds a symlink to ``rules.d/`` in the source tree,
which setuptools copies into wheels as a plain file).
"""

from __future__ import annotations

import re
from importlib import resources

from kdumpd.rules.planner import END_LABEL_PLACEHOLDER, HANDOVER_PLACEHOLDER

NAME = "kdumpd-crash-hotplug.rules"


class SnippetError(Exception):
    """The template is missing or broken (a packaging error); ``str()`` is one line."""


def template() -> str:
    """The template text with its placeholders. Raises :class:`SnippetError`."""
    try:
        text = (resources.files("kdumpd.rules") / "data" / NAME).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SnippetError(f"cannot read the rule template {NAME}: {error}") from None
    return check(text)


def check(text: str) -> str:
    """Return ``text`` if it has both placeholders, else raise :class:`SnippetError`."""
    for placeholder in (END_LABEL_PLACEHOLDER, HANDOVER_PLACEHOLDER):
        if placeholder not in text:
            raise SnippetError(f"the rule template {NAME} lacks the placeholder {placeholder}")
    return text


def without_handover(text: str) -> str:
    """The template without its hand-over section (the blank-line-separated paragraph
    that holds the placeholder): for hosts where the distribution's rules must always run
    (fadump)."""
    paragraphs = re.split(r"\n[ \t]*\n", text)
    return "\n\n".join(p for p in paragraphs if HANDOVER_PLACEHOLDER not in p)
