"""kdumpd_info and the fleet report: the summary a fleet gates on, from real status JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from kdumpd.fakes import fakesysfs
from tests.ansible.conftest import COLLECTION, Ansible, load_module

MODULE = "kdumpd.kdumpd.kdumpd_info"


def info_module() -> ModuleType:
    return load_module(COLLECTION / "plugins/modules/kdumpd_info.py")


def config_for(tmp: Path, root: Path) -> Path:
    path = tmp / "kdumpd.toml"
    path.write_text(f'[sysfs]\nroot = "{root}"\n[state]\ndir = "{tmp}/state"\n'
                    f'control = "{tmp}/control"\n[reload]\nbackend = "fake"\n')
    path.chmod(0o644)
    return path


def status_of(tmp: Path, root: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "kdumpd", "status", "--json", "--config",
                           str(config_for(tmp, root))], capture_output=True, text=True,
                          timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_summary_of_real_status_output(tmp_path: Path) -> None:
    summarise = info_module().summarise
    kept = summarise(status_of(tmp_path / "a", fakesysfs.build(tmp_path / "a/root",
                                                                crash_hotplug="1")))
    assert kept["usable"] is True and kept["problems"] == []
    assert kept["kernel_keeps_current"] == {"cpu": True, "memory": True}
    stale = summarise(status_of(tmp_path / "b", fakesysfs.build(tmp_path / "b/root",
                                                                 crash_hotplug="0")))
    assert stale["usable"] is False  # nothing recorded: the hardware is not known to agree
    assert "may describe old hardware" in stale["problems"][0]
    none = summarise(status_of(tmp_path / "c", fakesysfs.build(tmp_path / "c/root",
                                                                crash_loaded="0")))
    assert none["usable"] is False and none["crash_kernel_loaded"] is False
    assert none["problems"][0].startswith("no crash kernel is loaded")


def test_the_header_read_back_decides_the_summary_over_the_proxies(tmp_path: Path) -> None:
    summarise = info_module().summarise
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="0")
    status = status_of(tmp_path, root)  # crash_hotplug 0, nothing recorded: not usable...
    assert status["header"]["verdict"] == "unknown" and not summarise(status)["usable"]
    current = summarise({**status, "header": {"verdict": "current", "why": "4 ranges"}})
    assert current["usable"] is True and current["header"] == "current"  # ...proven usable
    assert current["problems"] == []
    stale = summarise({**status, "kernel_keeps_current": {"cpu": True, "memory": True},
                       "header": {"verdict": "stale", "why": "RAM missing 0x1-0x2"}})
    assert stale["usable"] is False
    assert stale["problems"] == ["the loaded header read back is STALE: RAM missing 0x1-0x2"]
    warned = summarise({**status, "header": {"verdict": "current"},
                        "loaded_cmdline_warning": "lacks acpi_no_memhotplug"})
    assert warned["problems"] == ["lacks acpi_no_memhotplug"]


def test_the_module_reads_status_on_the_target_and_changes_nothing(
    ansible: Ansible, tmp_path: Path,
) -> None:
    root = fakesysfs.build(tmp_path / "root", crash_hotplug="1")
    config = config_for(tmp_path, root)
    run = ansible.playbook([{"name": "info", MODULE: {"config": str(config)}}], check=True)
    assert run.returncode == 0, run.stdout
    result = run.results["info"]
    assert result["changed"] is False
    assert result["status"]["schema_version"] == 4
    assert result["kdumpd_summary"]["usable"] is True


def test_the_fleet_report_playbook_is_valid(ansible: Ansible) -> None:
    done = subprocess.run([sys.executable, "-m", "ansible", "playbook", "--syntax-check",
                           "-i", "localhost,", str(COLLECTION / "playbooks/fleet_report.yml")],
                          cwd=ansible.workdir, env=ansible.env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_fleet_report_prints_a_row_and_fails_on_a_host_without_a_crash_kernel(
    ansible: Ansible,
) -> None:
    # This machine has no crash kernel loaded (kdumpd's defaults read its real sysfs).
    done = subprocess.run(
        [sys.executable, "-m", "ansible", "playbook", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", "ansible_become=false",
         str(COLLECTION / "playbooks/fleet_report.yml")],
        cwd=ansible.workdir, env=ansible.env(), capture_output=True, text=True, timeout=300,
        check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    row = re.search(r'"(localhost .*)",?\n', output)
    assert row is not None and row.group(1).split()[1:3] == ["UNUSABLE", "no"], output
    assert row.group(1).endswith("no crash kernel is loaded: a panic now gives no dump")
    assert "1 of 1 host(s) have no usable crash kernel" in output, output


def test_the_info_module_documents_its_options_and_returns(ansible: Ansible) -> None:
    done = subprocess.run([sys.executable, "-m", "ansible", "doc", "--json", MODULE],
                          cwd=ansible.workdir, env=ansible.env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)[MODULE]
    spec = info_module().ARGUMENT_SPEC
    assert set(entry["doc"]["options"]) == set(spec)
    for name, option in spec.items():
        assert entry["doc"]["options"][name]["type"] == option["type"]
        assert entry["doc"]["options"][name].get("default") == option.get("default")
    assert entry["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert {"status", "kdumpd_summary"} <= set(entry["return"])
