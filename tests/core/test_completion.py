"""The bash completion the packages ship (packaging/kdumpd.bash), driven in a real bash
the way readline calls it, at every level; and current with the parser."""

from __future__ import annotations

import importlib.util
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "kdumpd.bash"
SHTAB_VERSION = "1.7.1"  # the Makefile's: `make completion`

# What bash does on Tab: set COMP_* from the line and call the function `complete` named;
# then what readline does with the words: with the file-name option (`complete -o
# filenames`, or `compopt -o filenames` during this completion) a word that names a
# directory in the current directory gets a "/".
DRIVER = r"""
source "$1"; shift
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
filenames=0
[[ " $(complete -p kdumpd) " == *" -o filenames "* ]] && filenames=1
compopt() { [ "$1 $2" = "-o filenames" ] && filenames=1; }
func=$(complete -p kdumpd | sed -E 's/.* -F ([^ ]+) .*/\1/')
"$func" kdumpd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
for word in "${COMPREPLY[@]}"; do
  if [ "$filenames" = 1 ] && [ -d "$word" ]; then word="$word/"; fi
  printf '%s\n' "$word"
done
"""


def complete(*words: str, cwd: Path | None = None) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    done = subprocess.run([bash, "--norc", "-c", DRIVER, "driver", str(SCRIPT), *words],
                          capture_output=True, text=True, timeout=30, check=True, cwd=cwd)
    return [line for line in done.stdout.splitlines() if line]


def readline_tab(line: str, cwd: Path) -> str:
    """The command line an interactive bash (readline in a pseudo-terminal) shows after
    typing ``line`` and one Tab in ``cwd``, with the shipped script sourced."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    try:
        fd, terminal = pty.openpty()
    except OSError as error:  # a build chroot without pseudo-terminals
        pytest.skip(f"no pseudo-terminal: {error}")
    # No startup files, no inputrc, no history written: the host's stay out, and are left
    # alone.
    env = {**os.environ, "HOME": str(cwd), "HISTFILE": "/dev/null", "INPUTRC": "/dev/null"}
    shell = subprocess.Popen([bash, "--norc", "--noprofile", "-i"], stdin=terminal,
                             stdout=terminal, stderr=terminal, cwd=cwd, env=env,
                             start_new_session=True)
    os.close(terminal)
    try:
        os.write(fd, f"PS1='$ '; source {SCRIPT}; echo READY$((6*7))\n".encode())
        read_until(fd, rb"READY42\r\n.*\$ ")  # sourced, and readline waits at the prompt
        # Tab, then back to the line's start to make it print itself: the words readline
        # completed come back as LINE:<the line>, ended by the shell's own arithmetic.
        os.write(fd, line.encode() + b'\t\x01echo "LINE:\x05";echo END$((6*7))\n')
        found = read_until(fd, rb"LINE:([^\r\n]*)\r\nEND42\r\n")
        return found.group(1).decode()
    finally:
        os.write(fd, b"exit\n")
        shell.wait(30)
        os.close(fd)


def read_until(fd: int, pattern: bytes) -> re.Match[bytes]:
    """Read the terminal until ``pattern`` matches what it wrote (at most 30 s without
    output)."""
    out = b""
    while True:
        found = re.search(pattern, out, re.DOTALL)
        if found:
            return found
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            raise AssertionError(f"bash wrote nothing matching {pattern!r}: {out!r}")
        out += os.read(fd, 4096)


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
        f"{tmp_path}/sub/"]


def test_only_file_and_directory_arguments_are_file_names(tmp_path: Path) -> None:
    # In / or /var (which hold run/) `kdumpd run<Tab>` gave `kdumpd run/`: shtab's
    # `complete -o filenames` made readline take the subcommand for a directory.
    (tmp_path / "run").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "rule").write_text("")
    assert "-o filenames" not in SCRIPT.read_text().splitlines()[-1]
    assert complete("kdumpd", "run", cwd=tmp_path) == ["run"]
    assert complete("kdumpd", "ru", cwd=tmp_path) == ["run", "rule"]
    assert complete("kdumpd", "rule", "install", "--root", "su", cwd=tmp_path) == ["sub/"]
    assert sorted(complete("kdumpd", "status", "--config", "r", cwd=tmp_path)) == [
        "rule", "run/"]


def test_readline_itself_completes_a_subcommand_without_a_slash(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "sub").mkdir()
    assert readline_tab("kdumpd run", tmp_path) == "kdumpd run "
    assert readline_tab("kdumpd rule install --root su", tmp_path) == (
        "kdumpd rule install --root sub/")


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_completion", REPO / "packaging" / "gen-completion.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_edit_refuses_a_script_it_does_not_know() -> None:
    generator = load_generator()
    with pytest.raises(generator.ShtabChanged, match="complete -o filenames"):
        generator.only_paths_are_filenames("complete -F _other kdumpd\n")


def test_the_shipped_script_is_what_the_parser_gives() -> None:
    shtab = pytest.importorskip("shtab")
    if shtab.__version__ != SHTAB_VERSION:
        pytest.skip(f"shtab {shtab.__version__} here; the script is made with "
                    f"{SHTAB_VERSION} (`make completion`)")
    done = subprocess.run([sys.executable, "packaging/gen-completion.py"],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=True)
    assert done.stdout == SCRIPT.read_text(), "packaging/kdumpd.bash is stale: make completion"
    # The same as shtab's own command line, but for the file-name option.
    raw = subprocess.run([sys.executable, "-m", "shtab", "--shell=bash", "--prog=kdumpd",
                          "kdumpd.cli.build_parser"], capture_output=True, text=True,
                         cwd=REPO, timeout=60, check=True).stdout
    assert load_generator().only_paths_are_filenames(raw) == done.stdout
