"""Running the kdumpd Ansible collection with ansible-core from PyPI, against localhost.

Every playbook runs with ``connection: local`` and the test's own Python as the target
interpreter (kdumpd is importable there), with all Ansible state (config, temp dirs,
collections path) inside pytest's temp dirs, and every file it manages under a temp root.

Without ansible-core the tests skip, except with ``CI=true``, where they fail: CI must
not go green by not running them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible"
NAMESPACE, NAME = "kdumpd", "kdumpd"
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"
PLAYBOOK_TIMEOUT_S = 120


def ansible_core_version() -> str | None:
    """ansible-core's version, or None when it cannot be imported.

    ``ansible.release`` rather than ``ansible``: the collection directory ``ansible/`` at
    the repository root would import as an empty namespace package.
    """
    try:
        from ansible.release import __version__
    except ImportError:
        return None
    return str(__version__)


@pytest.fixture(scope="session")
def ansible_core() -> str:
    version = ansible_core_version()
    if version is None:
        reason = ("ansible-core is not importable (pip install ansible-core, or "
                  "pip install -e '.[ansible]')")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return version


@pytest.fixture(scope="session")
def collections_path(ansible_core: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path holding ansible_collections/kdumpd/kdumpd -> the repo's ansible/."""
    base = tmp_path_factory.mktemp("collections")
    parent = base / "ansible_collections" / NAMESPACE
    parent.mkdir(parents=True)
    (parent / NAME).symlink_to(COLLECTION, target_is_directory=True)
    return base


@dataclass(frozen=True)
class Run:
    """One ansible-playbook run: its output, and what the recording callback saw."""

    returncode: int
    stdout: str
    results: dict[str, Any]  # task name -> its (last) result, with "_status"
    handlers: list[str]  # handlers that ran (their tasks started), in order

    def recap(self) -> dict[str, int]:
        """The PLAY RECAP counters for localhost (ok, changed, failed, ...)."""
        for line in self.stdout.splitlines():
            if line.startswith("localhost") and ":" in line and "ok=" in line:
                pairs = (item.split("=") for item in line.split(":", 1)[1].split())
                return {key: int(value) for key, value in pairs}
        raise AssertionError(f"no PLAY RECAP in the output:\n{self.stdout}")


@dataclass(frozen=True)
class Ansible:
    """Writes playbooks into ``workdir`` and runs them."""

    workdir: Path
    collections: Path
    python: str = sys.executable

    @property
    def record_file(self) -> Path:
        return self.workdir / "record.json"

    def env(self) -> dict[str, str]:
        home = self.workdir / "ansible-home"
        cfg = self.workdir / "ansible.cfg"
        cfg.write_text("[defaults]\n")
        env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
        env.update({
            "ANSIBLE_CONFIG": str(cfg),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TMP": str(home / "remote-tmp"),
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_ROLES_PATH": str(self.workdir / "roles"),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
            "ANSIBLE_CALLBACKS_ENABLED": "kdumpd_record",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "KDUMPD_RECORD_FILE": str(self.record_file),
            "PYTHONDONTWRITEBYTECODE": "1",
            # The target's kdumpd command: the one installed beside this Python.
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        })
        return env

    def playbook(self, tasks: list[dict[str, Any]] | None = None, *, check: bool = False,
                 diff: bool = False, play: dict[str, Any] | None = None) -> Run:
        """Run ``tasks`` (and whatever ``play`` adds: roles, vars) on localhost."""
        body: dict[str, Any] = {
            "name": "kdumpd test play",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": self.python},
            "tasks": list(tasks or ()),
        }
        for key, value in (play or {}).items():
            if key == "vars":
                body["vars"].update(value)
            else:
                body[key] = value
        path = self.workdir / "playbook.yml"
        path.write_text(json.dumps([body], indent=2))  # JSON is YAML
        argv = [sys.executable, "-m", "ansible", "playbook", "-i", "localhost,", str(path)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        self.record_file.unlink(missing_ok=True)
        done = subprocess.run(argv, cwd=self.workdir, env=self.env(), capture_output=True,
                              text=True, timeout=PLAYBOOK_TIMEOUT_S, check=False)
        output = done.stdout + done.stderr
        assert self.record_file.exists(), f"the playbook did not run:\n{output}"
        record = json.loads(self.record_file.read_text())
        return Run(done.returncode, output, record["results"], record["handlers"])


@pytest.fixture
def ansible(collections_path: Path, tmp_path: Path) -> Ansible:
    workdir = tmp_path / "ansible"
    workdir.mkdir()
    return Ansible(workdir, collections_path)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """The target's root: an empty /etc/udev/rules.d and vendor directory."""
    root = tmp_path / "root"
    (root / "etc/udev/rules.d").mkdir(parents=True)
    (root / "usr/lib/udev/rules.d").mkdir(parents=True)
    return root


def load_module(path: Path) -> ModuleType:
    """A module file of the collection, imported without writing bytecode into ansible/."""
    spec = importlib.util.spec_from_file_location(f"kdumpd_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # keep ansible/ clean
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module
