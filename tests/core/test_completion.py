"""The bash completion the packages ship (packaging/kdumpd.bash), driven in a real bash
the way readline calls it, at every level; and current with the parser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "kdumpd.bash"
SHTAB_VERSION = "1.7.1"  # the Makefile's: `make completion`

# What bash does on Tab: set COMP_* from the line and call the function `complete` named.
DRIVER = r"""
source "$1"; shift
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
func=$(complete -p kdumpd | sed -E 's/.* -F ([^ ]+) .*/\1/')
"$func" kdumpd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(*words: str) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    done = subprocess.run([bash, "--norc", "-c", DRIVER, "driver", str(SCRIPT), *words],
                          capture_output=True, text=True, timeout=30, check=True)
    return [line for line in done.stdout.splitlines() if line]


def test_the_first_tab_lists_every_command_not_just_the_first() -> None:
    # shtab 1.5.5 (Debian 12) wrote a script that offers only "run" here: one Tab inserted
    # it, and after `kdumpd rule` one Tab inserted "install".
    assert complete("kdumpd", "") == ["run", "status", "verify", "reload", "config", "rule", "demo"]
    assert complete("kdumpd", "re") == ["reload"]


def test_each_level_offers_its_own_words() -> None:
    assert complete("kdumpd", "rule", "") == ["install", "remove"]
    assert complete("kdumpd", "config", "") == ["check"]
    assert set(complete("kdumpd", "status", "--")) >= {"--config", "--json", "--help"}
    options = complete("kdumpd", "rule", "install", "--")
    assert {"--check", "--diff", "--backup", "--json", "--root", "--path"} <= set(options)


def test_paths_complete_as_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "kdumpd.toml").write_text("")
    (tmp_path / "sub").mkdir()
    assert complete("kdumpd", "status", "--config", f"{tmp_path}/kd") == [
        f"{tmp_path}/kdumpd.toml"]
    assert complete("kdumpd", "rule", "install", "--root", f"{tmp_path}/") == [
        f"{tmp_path}/sub"]


def test_the_shipped_script_is_what_the_parser_gives() -> None:
    shtab = pytest.importorskip("shtab")
    if shtab.__version__ != SHTAB_VERSION:
        pytest.skip(f"shtab {shtab.__version__} here; the script is made with "
                    f"{SHTAB_VERSION} (`make completion`)")
    done = subprocess.run([sys.executable, "-m", "shtab", "--shell=bash", "--prog=kdumpd",
                           "kdumpd.cli.build_parser"], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=True)
    assert done.stdout == SCRIPT.read_text(), "packaging/kdumpd.bash is stale: make completion"
