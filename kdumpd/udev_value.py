"""What may go inside a quoted udev value (``TEST=="<path>"``): udev has no escape for
the quote, expands ``%`` and ``$`` substitutions, and a line ends at a newline. Used by
the configuration (the hand-over path) and by the rules planner alike."""

from __future__ import annotations

UNSAFE = frozenset('"\\%$\n\r\0')


def unsafe_value(value: str) -> str | None:
    """Why ``value`` cannot go inside a quoted udev value, or None."""
    bad = sorted(UNSAFE & set(value))
    if not bad:
        return None
    return "must not contain " + " ".join(repr(c) for c in bad)
