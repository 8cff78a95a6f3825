"""The `kdumpd` command's entry point (the console script and ``python -m kdumpd``).

For `kdumpd run` the daemon's signals are caught before anything else of kdumpd is
imported (about 0.1 s): see startup_signals.py. Other commands keep the default actions
(Ctrl-C stops `kdumpd status`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kdumpd.startup_signals import StartupSignals


def command_word(argv: Sequence[str]) -> str | None:
    """The command `kdumpd` is asked to run: the first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    startup = StartupSignals().catch() if command_word(words) == "run" else None
    from kdumpd import cli  # the ~0.1 s import comes after the handlers

    return cli.main(words, startup=startup)
