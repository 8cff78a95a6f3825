"""The fleet report (playbooks/fleet_report.yml and its fleet_report filter): one aligned
row per host, failed and unreachable hosts and hosts without kdumpd included with the
problem named in the row, and one failure listing the hosts without a usable crash
kernel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from kdumpd.fakes import fakesysfs
from tests.ansible.conftest import COLLECTION, Ansible, load_module
from tests.ansible.test_info import config_for, info_module, status_of

PLAYBOOK = COLLECTION / "playbooks/fleet_report.yml"
SBIN = "/sbin:/usr/sbin:/usr/local/sbin"  # where AnsibleModule.get_bin_path looks besides PATH
# kdumpd_info's own failure on a host without kdumpd (its main()).
NOT_INSTALLED = ("kdumpd is not installed on the target (no kdumpd command on PATH): "
                 "install kdumpd on the target first (the kdumpd.kdumpd.kdumpd role does)")


def fleet() -> ModuleType:
    return load_module(COLLECTION / "plugins/filter/fleet_report.py")


def registered(tmp: Path, **build: str) -> dict[str, Any]:
    """What kdumpd_info registers on a host built with ``build`` (real status JSON)."""
    status = status_of(tmp, fakesysfs.build(tmp / "root", **build))
    return {"changed": False, "status": status,
            "kdumpd_summary": info_module().summarise(status)}


def columns(line: str, header: str) -> list[str]:
    """``line`` cut at the header's column starts."""
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]


def test_each_host_has_one_aligned_row_with_its_problem(tmp_path: Path) -> None:
    hostvars = {
        "web1": {"kdumpd_info": registered(tmp_path / "a", crash_hotplug="1")},
        "db-primary-02": {"kdumpd_info": registered(tmp_path / "b", crash_loaded="0")},
        "bare": {"kdumpd_info": {"failed": False, "msg": NOT_INSTALLED, "changed": False}},
        "gone": {"kdumpd_info": {"unreachable": True, "changed": False,
                                 "msg": "Task failed: Failed to connect to the host via "
                                        "ssh: connection refused"}},
        "new": {},  # in the inventory, no result (unreachable without ignore_unreachable)
    }
    report = fleet().fleet_report(list(hostvars), hostvars)
    header, *rows, summary = report["lines"]
    assert header.split() == ["HOST", "STATE", "LOADED", "HEADER", "KERNEL", "KEEPS", "OWED",
                              "AGREES", "NO-CK", "S", "STALE", "S", "CAPACITY", "PROBLEM"]
    cells = {line.split()[0]: columns(line, header) for line in rows}
    assert cells["web1"] == ["web1", "ok", "yes", "unknown", "cpu+memory", "no", "-", "-",
                             "-", "ok", "-"]
    assert cells["db-primary-02"][1:4] == ["UNUSABLE", "no", "unloaded"]
    assert cells["db-primary-02"][-1] == "no crash kernel is loaded: a panic now gives no dump"
    assert cells["bare"][1] == "FAILED" and cells["bare"][-1] == NOT_INSTALLED
    assert cells["gone"][1:3] == ["UNREACHABLE", "-"]
    assert cells["gone"][-1] == "Failed to connect to the host via ssh: connection refused"
    assert cells["new"][1] == "NO ANSWER"
    # Plain values: no JSON, no quotes, no escapes; every row as wide as the header up to
    # its last column.
    assert not any(c in line for line in report["lines"] for c in '{}"\\')
    last = header.index("PROBLEM")
    assert all(line[last - 2:last] == "  " and line[last] != " " for line in rows)
    assert summary == ("5 host(s): 1 usable, 1 unusable, 1 failed, 1 unreachable, "
                       "1 no answer")
    assert report["unusable"] == ["db-primary-02", "bare", "gone", "new"]
    assert report["failure"].startswith("4 of 5 host(s) have no usable crash kernel")
    assert report["failure"].endswith(": db-primary-02, bare, gone, new")


def test_a_fleet_without_problems_has_no_failure(tmp_path: Path) -> None:
    hostvars = {f"h{i}": {"kdumpd_info": registered(tmp_path / str(i), crash_hotplug="1")}
                for i in range(3)}
    report = fleet().fleet_report(sorted(hostvars), hostvars)
    assert report["unusable"] == [] and report["failure"] == ""
    assert report["lines"][-1] == "3 host(s): 3 usable"


def inventory(tmp_path: Path) -> Path:
    """Five hosts: a usable one, one without a crash kernel, one whose kdumpd refuses its
    configuration, one without kdumpd, one that cannot be reached (ssh to a closed
    port)."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "ansible_become": False}
    hosts: dict[str, dict[str, Any]] = {}
    for name, build in {"web1": {"crash_hotplug": "1"},
                        "db-primary-02": {"crash_loaded": "0"}}.items():
        root = fakesysfs.build(tmp_path / name / "root", **build)
        hosts[name] = {**local, "kdumpd_config": str(config_for(tmp_path / name, root))}
    broken = tmp_path / "broken.toml"
    broken.write_text("[reload]\nbackend = 3\n")
    broken.chmod(0o644)
    hosts["broken"] = {**local, "kdumpd_config": str(broken)}
    # A host without kdumpd: its Python runs with a PATH that has no kdumpd on it.
    bare = tmp_path / "python-without-kdumpd"
    bare.write_text(f'#!/bin/sh\nPATH={tmp_path}/empty exec {sys.executable} "$@"\n')
    bare.chmod(0o755)
    hosts["bare"] = {**local, "ansible_python_interpreter": str(bare)}
    hosts["gone"] = {"ansible_host": "127.0.0.1", "ansible_port": 1,
                     "ansible_connection": "ssh",
                     "ansible_ssh_common_args": "-o BatchMode=yes -o ConnectTimeout=10"}
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"all": {"hosts": hosts}}))
    return path


def test_the_playbook_prints_one_table_and_fails_once_naming_the_unusable_hosts(
    ansible: Ansible, tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ansible", "playbook", "-i", str(inventory(tmp_path)),
         str(PLAYBOOK)], cwd=ansible.workdir, env=ansible.env(), capture_output=True,
        text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output  # ansible-playbook: a task failed
    rows = [json.loads(line.strip().rstrip(",")) for line in output.splitlines()
            if re.match(r'\s+"(HOST|web1|db-primary-02|broken|bare|gone|5 host\(s\):) ', line)]
    assert [row.split()[0] for row in rows] == ["HOST", "web1", "db-primary-02", "broken",
                                                 "bare", "gone", "5"], output
    states = {row.split()[0]: row.split()[1] for row in rows[1:-1]}
    installed = shutil.which("kdumpd", path=SBIN) is not None  # get_bin_path looks there too
    assert states == {"web1": "ok", "db-primary-02": "UNUSABLE", "broken": "FAILED",
                      "bare": states["bare"] if installed else "FAILED",
                      "gone": "UNREACHABLE"}
    assert rows[2].endswith("no crash kernel is loaded: a panic now gives no dump")
    assert rows[3].endswith("reload.backend: expected a string, got an integer")
    assert installed or rows[4].endswith(NOT_INSTALLED)
    assert "port 1" in rows[5]
    assert rows[-1] == "5 host(s): 1 usable, 1 unusable, 2 failed, 1 unreachable" or installed
    failures = re.findall(r"fatal: \[localhost\]: FAILED! => (.*)", output)
    assert len(failures) == 1, output
    assert json.loads(failures[0])["msg"].endswith(": db-primary-02, broken, bare, gone") or (
        installed)
    # The hosts whose kdumpd failed or is missing have their rows, not error blocks.
    assert not re.search(r"fatal: \[(web1|db-primary-02|broken|bare)\]", output), output
