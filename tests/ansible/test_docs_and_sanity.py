"""The collection's documentation agrees with its code; ansible-test sanity (opt-in).

The doc checks are a fast subset of what ``ansible-test sanity`` (validate-modules)
checks, and run everywhere. The full sanity run needs PyPI (ansible-test fills one
virtualenv per sanity test), 42 s from nothing and 8 s cached: it runs with
KDUMPD_ANSIBLE_SANITY=1, which .ci/run sets for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ansible import sanity
from tests.ansible.conftest import COLLECTION, REPO, Ansible, load_module

MODULE_FILE = COLLECTION / "plugins/modules/crash_hotplug_rule.py"
ROLE_DIR = COLLECTION / "roles/kdumpd"


def ansible_doc(ansible: Ansible, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "ansible", "doc", "--json", *args],
                          cwd=ansible.workdir, env=ansible.env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def module_argument_spec() -> dict[str, Any]:
    argument_spec: dict[str, Any] = load_module(MODULE_FILE).ARGUMENT_SPEC
    return argument_spec


def test_module_documentation_matches_its_argument_spec(ansible: Ansible) -> None:
    doc = ansible_doc(ansible, "kdumpd.kdumpd.crash_hotplug_rule")
    entry = doc["kdumpd.kdumpd.crash_hotplug_rule"]
    options = entry["doc"]["options"]
    spec = module_argument_spec()

    assert set(options) == set(spec)
    for name, option in spec.items():
        assert options[name]["type"] == option["type"], name
        assert options[name].get("default") == option.get("default"), name
        assert options[name].get("choices") == option.get("choices"), name
    assert entry["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert entry["doc"]["attributes"]["diff_mode"]["support"] == "full"
    assert {"changed", "msg", "diff", "backup_file"} <= set(entry["return"])


def test_role_argument_spec_matches_its_defaults(ansible: Ansible) -> None:
    import yaml  # PyYAML comes with ansible-core

    doc = ansible_doc(ansible, "-t", "role", "kdumpd.kdumpd.kdumpd")
    options = doc["kdumpd.kdumpd.kdumpd"]["entry_points"]["main"]["options"]
    defaults = yaml.safe_load((ROLE_DIR / "defaults/main.yml").read_text())

    assert set(options) == set(defaults)
    for name, value in defaults.items():
        assert options[name]["default"] == value, name


def test_the_collection_builds(ansible: Ansible) -> None:
    done = subprocess.run([sys.executable, "-m", "ansible", "galaxy", "collection", "build",
                           "--output-path", str(ansible.workdir), str(COLLECTION)],
                          cwd=ansible.workdir, env=ansible.env(), capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    assert (ansible.workdir / "kdumpd-kdumpd-0.1.0.tar.gz").is_file()


@pytest.mark.skipif(os.environ.get("KDUMPD_ANSIBLE_SANITY") != "1",
                    reason="ansible-test sanity needs PyPI and minutes: "
                           "set KDUMPD_ANSIBLE_SANITY=1 (or run python -m tests.ansible.sanity)")
def test_ansible_test_sanity_passes(ansible_core: str) -> None:
    sanity.install_get_pip_stand_in()  # only when ansible-test has no pip bootstrap cached
    done = sanity.run([], capture=True)

    assert done.returncode == 0, done.stdout + done.stderr


GPL2_HEADER = ("# GNU General Public License v2.0+ "
               "(see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)")
GPL3_IGNORE = "validate-modules:missing-gplv3-license"


def test_every_module_keeps_the_project_licence_and_every_sanity_ignore_says_so() -> None:
    # ansible-test wants Ansible's GPL-3.0-or-later header in the first 20 lines of a
    # module; kdumpd's modules keep the project's GPL-2.0-or-later one, so every module
    # needs its ignore line in every ignore-2.NN.txt (a module added without one fails
    # validate-modules, which only KDUMPD_ANSIBLE_SANITY=1 runs).
    modules = sorted((COLLECTION / "plugins/modules").glob("*.py"))
    ignore_files = sorted((COLLECTION / "tests/sanity").glob("ignore-2.*.txt"))
    assert len(modules) >= 2 and len(ignore_files) >= 7

    for module in modules:
        head = module.read_text().splitlines()[:20]
        assert GPL2_HEADER in head, module.name
    for ignore_file in ignore_files:
        ignored = {tuple(line.split("#", 1)[0].split())
                   for line in ignore_file.read_text().splitlines() if line.strip()}
        for module in modules:
            entry = (module.relative_to(COLLECTION).as_posix(), GPL3_IGNORE)
            assert entry in ignored, f"{ignore_file.name}: {module.name}"


def test_ci_runs_the_sanity_test() -> None:
    # make test skips it (KDUMPD_ANSIBLE_SANITY unset), so .ci/run must run it itself,
    # by node id: a renamed test then fails CI instead of being deselected quietly.
    node = "tests/ansible/test_docs_and_sanity.py::test_ansible_test_sanity_passes"
    script = (REPO / ".ci/run").read_text().replace("\\\n", " ")
    commands = [line.strip() for line in script.splitlines()
                if not line.strip().startswith("#")]

    assert any("KDUMPD_ANSIBLE_SANITY=1" in line and node in line for line in commands)
    assert callable(globals()[node.rsplit("::", 1)[1]])


def test_sanity_runs_on_a_copy_shaped_like_a_collection(tmp_path: Path) -> None:
    dest = sanity.copy_collection(tmp_path)

    assert dest.parts[-3:] == ("ansible_collections", "kdumpd", "kdumpd")
    assert (dest / "galaxy.yml").is_file()
    assert (dest / "plugins/modules/crash_hotplug_rule.py").is_file()
