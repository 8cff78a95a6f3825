#!/usr/bin/env python3
"""Write kdumpd's bash completion (packaging/kdumpd.bash) to stdout: shtab's script for
``kdumpd.cli.build_parser()``, with ``-o filenames`` set only where a file or directory
is completed.

shtab registers the whole function with ``complete -o filenames``: readline then treats
every word offered as a file name and appends ``/`` to one that names a directory in the
current directory, so ``kdumpd run<Tab>`` in ``/`` or ``/var`` (which hold ``run/``) gave
``kdumpd run/``. Here the script registers the function without it, and the branch that
calls shtab's file or directory generator (``--config``, ``--path``, ``--root``,
``--handover``) turns it on with ``compopt -o filenames`` for that completion only.

Usage: PYTHONPATH=<shtab> packaging/gen-completion.py    (``make completion``; shtab's
version is the Makefile's SHTAB_VERSION). Exit 1 with one line when shtab's script does
not have the lines this edits (another shtab version): nothing half-edited is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGISTER = "complete -o filenames -F _shtab_kdumpd kdumpd\n"
PATH_WORDS = """\
    COMPREPLY=( $([ -n "${current_action_compgen}" ] \\
                  && "${current_action_compgen}" "${completing_word}") )
"""
# Only file and directory arguments are file names (compopt exists in bash >= 4.0; the
# script needs newer anyway).
PATH_WORDS_FILENAMES = PATH_WORDS + """\
    if [ -n "${current_action_compgen}" ]; then
      compopt -o filenames  # a file or directory argument: mark directories with /
    fi
"""


class ShtabChanged(Exception):
    """shtab's script lacks a line this edits."""


def only_paths_are_filenames(script: str) -> str:
    """``script`` (shtab's) with ``-o filenames`` set by the file and directory branch
    only; raises ShtabChanged when a line to edit is missing."""
    for needed in (REGISTER, PATH_WORDS):
        if script.count(needed) != 1:
            raise ShtabChanged(f"shtab's script does not hold {needed.splitlines()[0]!r} "
                               "once: check the edit in packaging/gen-completion.py")
    return (script.replace(REGISTER, "complete -F _shtab_kdumpd kdumpd\n")
            .replace(PATH_WORDS, PATH_WORDS_FILENAMES))


def generate() -> str:
    import shtab

    from kdumpd.cli import build_parser

    parser = build_parser()
    parser.prog = "kdumpd"
    return only_paths_are_filenames(shtab.complete(parser, shell="bash") + "\n")


def main() -> int:
    try:
        sys.stdout.write(generate())
    except ShtabChanged as error:
        print(f"gen-completion: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
