"""Run ``ansible-test sanity`` on the collection in ``ansible/``.

ansible-test wants the collection at a path ending in ``ansible_collections/NS/NAME``, so
this copies it into a temp dir of that shape and runs there::

    .venv/bin/python -m tests.ansible.sanity                  # --venv --python <this one>
    .venv/bin/python -m tests.ansible.sanity --python 3.13    # extra args go to ansible-test
    .venv/bin/python -m tests.ansible.sanity --all-pythons    # 3.8 ... 3.13 found on PATH
    .venv/bin/python -m tests.ansible.sanity --pip-from-pypi  # see below

Every sanity test runs in its own virtualenv that ansible-test fills from PyPI (cached
under ``~/.ansible/test/venv``), so the first run needs the network and takes a minute or
two. ansible-test bootstraps pip in those virtualenvs with a script it downloads from
ci-files.testing.ansible.com; where only PyPI is reachable, ``--pip-from-pypi`` puts a
stand-in for that script into ansible-test's cache (``~/.ansible/test/cache``) that takes
pip from the interpreter's ensurepip bundle and then pip itself from PyPI.

Exit status: ansible-test's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible"
NAMESPACE, NAME = "kdumpd", "kdumpd"
TIMEOUT_S = 1800

GET_PIP_STAND_IN = '''\
"""Stand-in for get-pip.py written by kdumpd's tests/ansible/sanity.py --pip-from-pypi.

Bootstraps pip from the interpreter's ensurepip bundle, then lets that pip install the
requested packages (pip==X, ...) from PyPI with the system's pip configuration.
"""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip sets it to /dev/null
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *args]))
'''


def pip_version() -> str:
    """The pip version ansible-test bootstraps its virtualenvs with (``24.2``)."""
    from types import SimpleNamespace

    # A private function of ansible-test; the fallback is what 2.19 pins.
    try:
        from ansible_test._internal.python_requirements import get_venv_packages

        python = SimpleNamespace(version=f"{sys.version_info.major}.{sys.version_info.minor}")
        return str(get_venv_packages(python)["pip"])  # type: ignore[arg-type]
    except (ImportError, AttributeError, KeyError, TypeError):
        return "24.2"


def install_get_pip_stand_in() -> Path:
    version = pip_version()
    path = Path.home() / ".ansible/test/cache" / f"get_pip_{version.replace('.', '_')}.py"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(GET_PIP_STAND_IN)
    return path


def copy_collection(base: Path) -> Path:
    """Copy ``ansible/`` to ``base/ansible_collections/NS/NAME``; return that path."""
    dest = base / "ansible_collections" / NAMESPACE / NAME
    shutil.copytree(COLLECTION, dest, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "output"))
    return dest


def run(args: Sequence[str], *, capture: bool = False,
        all_pythons: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``ansible-test sanity ARGS`` on a copy of the collection.

    Without ``--python`` in ARGS: this Python, or with ``all_pythons`` every Python
    version ansible-test supports for modules that it finds on PATH.
    """
    args = list(args)
    if "--venv" not in args and "--local" not in args and "--docker" not in args:
        args.append("--venv")
    if "--python" not in args and not all_pythons:
        args += ["--python", f"{sys.version_info.major}.{sys.version_info.minor}"]
    with tempfile.TemporaryDirectory(prefix="kdumpd-sanity-") as temp:
        dest = copy_collection(Path(temp))
        argv = [sys.executable, "-m", "ansible", "test", "sanity", "--color", "no", *args]
        return subprocess.run(argv, cwd=dest, text=True, capture_output=capture,
                              timeout=TIMEOUT_S, check=False)


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if "--pip-from-pypi" in args:
        args.remove("--pip-from-pypi")
        print(f"pip bootstrap stand-in: {install_get_pip_stand_in()}", file=sys.stderr)
    all_pythons = "--all-pythons" in args
    if all_pythons:
        args.remove("--all-pythons")
    return run(args, all_pythons=all_pythons).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
