"""The crash_hotplug_rule module through ansible-playbook: check, diff, idempotence, remove.

Every run is a real ``ansible-playbook`` against localhost; the rules files live under a
temp root given to the module's ``root`` option.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import Ansible

MODULE = "kdumpd.kdumpd.crash_hotplug_rule"
BEGIN = "# BEGIN kdumpd managed block"
END = "# END kdumpd managed block"

# Fedora's kdump-utils rules before they learnt about crash_hotplug: a file that ends in
# its own LABEL, so the block jumps there.
FEDORA = """\
SUBSYSTEM=="cpu", ACTION=="add", GOTO="kdump_reload"
SUBSYSTEM=="cpu", ACTION=="remove", GOTO="kdump_reload"
SUBSYSTEM=="memory", ACTION=="online", GOTO="kdump_reload"
SUBSYSTEM=="memory", ACTION=="offline", GOTO="kdump_reload"

GOTO="kdump_reload_end"

LABEL="kdump_reload"

RUN+="/bin/sh -c '/usr/bin/systemctl is-active kdump.service || exit 0; \
/usr/bin/systemd-run --quiet --no-block /usr/lib/udev/kdump-udev-throttler'"

LABEL="kdump_reload_end"
"""

# Debian's kdump-tools rules: no end label, and here without a final newline, the
# hardest case for restoring the exact bytes.
DEBIAN = """\
# kdump-tools: reload the crash kernel on hotplug
SUBSYSTEM=="memory", ACTION=="online", PROGRAM="/usr/sbin/kdump-config try-reload"
SUBSYSTEM=="memory", ACTION=="offline", PROGRAM="/usr/sbin/kdump-config try-reload"
SUBSYSTEM=="cpu", ACTION=="add", PROGRAM="/usr/sbin/kdump-config try-reload"
SUBSYSTEM=="cpu", ACTION=="online", PROGRAM="/usr/sbin/kdump-config try-reload\""""

FEDORA_VENDOR = "usr/lib/udev/rules.d/98-kexec.rules"
FEDORA_OVERRIDE = "etc/udev/rules.d/98-kexec.rules"
DEBIAN_ADMIN = "etc/udev/rules.d/50-kdump-tools.rules"


def rule_task(root_dir: Path, **options: Any) -> dict[str, Any]:
    """The module task under ``root_dir``; an option given as None is left out."""
    args: dict[str, Any] = {"root": str(root_dir), "config": str(root_dir / "no-such.toml")}
    args.update(options)
    args = {key: value for key, value in args.items() if value is not None}
    return {"name": "rule", MODULE: args, "ignore_errors": True}


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes: 'nothing written' means this is equal."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_check_mode_reports_changed_and_writes_nothing(ansible: Ansible, target: Path) -> None:
    (target / FEDORA_VENDOR).write_text(FEDORA)
    before = files(target)

    run = ansible.playbook([rule_task(target)], check=True)

    assert run.returncode == 0, run.stdout
    assert run.results["rule"]["changed"] is True
    assert "check mode: nothing written" in run.results["rule"]["msg"]
    assert run.recap()["changed"] == 1
    assert files(target) == before


def test_first_run_changes_and_second_run_is_ok(ansible: Ansible, target: Path) -> None:
    (target / FEDORA_VENDOR).write_text(FEDORA)

    first = ansible.playbook([rule_task(target)])
    second = ansible.playbook([rule_task(target)])

    assert first.returncode == 0, first.stdout
    assert first.results["rule"]["changed"] is True
    assert first.results["rule"]["path"] == "/" + FEDORA_OVERRIDE
    assert first.recap()["changed"] == 1
    override = (target / FEDORA_OVERRIDE).read_text()
    assert override.startswith(BEGIN + "\n")
    assert 'GOTO="kdump_reload_end"' in override.split(END)[0]
    assert (target / FEDORA_VENDOR).read_text() == FEDORA  # the vendor file is never edited
    assert second.returncode == 0, second.stdout
    assert second.results["rule"]["changed"] is False
    assert second.recap()["changed"] == 0
    assert "nothing to do" in second.results["rule"]["msg"]


def test_diff_mode_shows_the_block(ansible: Ansible, target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    run = ansible.playbook([rule_task(target)], check=True, diff=True)

    assert run.returncode == 0, run.stdout
    # Ansible renders the module's diff as a unified diff with kdumpd's headers.
    assert "--- before: /" + DEBIAN_ADMIN in run.stdout
    assert "+++ after: /" + DEBIAN_ADMIN in run.stdout
    assert "+" + BEGIN in run.stdout
    assert '+SUBSYSTEM=="cpu|memory", TEST=="/run/kdumpd/handles-reload", GOTO="kdumpd_end"' \
        in run.stdout
    diff = run.results["rule"]["diff"]
    assert diff["before"] == DEBIAN
    assert diff["after"].startswith(BEGIN)
    assert (target / DEBIAN_ADMIN).read_text() == DEBIAN


def test_without_diff_mode_the_result_carries_no_diff(ansible: Ansible, target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    run = ansible.playbook([rule_task(target)], check=True)

    assert run.results["rule"]["changed"] is True
    assert "diff" not in run.results["rule"]
    assert BEGIN not in run.stdout


def test_remove_restores_the_file_byte_for_byte(ansible: Ansible, target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    install = ansible.playbook([rule_task(target, path="/" + DEBIAN_ADMIN)])
    installed = (target / DEBIAN_ADMIN).read_text()
    remove = ansible.playbook([rule_task(target, state="absent")], diff=True)
    again = ansible.playbook([rule_task(target, state="absent")])

    assert install.results["rule"]["changed"] is True, install.stdout
    assert BEGIN in installed and 'LABEL="kdumpd_end"' in installed
    assert remove.results["rule"]["changed"] is True, remove.stdout
    assert "-" + BEGIN in remove.stdout
    assert (target / DEBIAN_ADMIN).read_bytes() == DEBIAN.encode()
    assert again.results["rule"]["changed"] is False


def test_remove_deletes_the_override_it_created(ansible: Ansible, target: Path) -> None:
    (target / FEDORA_VENDOR).write_text(FEDORA)
    before = files(target)

    ansible.playbook([rule_task(target)])
    assert (target / FEDORA_OVERRIDE).exists()
    run = ansible.playbook([rule_task(target, state="absent")])

    assert run.results["rule"]["changed"] is True, run.stdout
    assert files(target) == before


def test_several_rules_files_give_results_and_a_list_diff(ansible: Ansible,
                                                         target: Path) -> None:
    (target / FEDORA_VENDOR).write_text(FEDORA)
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    run = ansible.playbook([rule_task(target)], check=True, diff=True)
    quiet = ansible.playbook([rule_task(target)], check=True)

    result = run.results["rule"]
    assert result["changed"] is True, run.stdout
    assert sorted(entry["path"] for entry in result["results"]) == \
        ["/" + DEBIAN_ADMIN, "/" + FEDORA_OVERRIDE]
    assert [d["after"].startswith(BEGIN) for d in result["diff"]] == [True, True]
    assert "+++ after: /" + DEBIAN_ADMIN in run.stdout
    assert "+++ after: /" + FEDORA_OVERRIDE in run.stdout
    assert "diff" not in quiet.results["rule"]
    assert all("diff" not in entry for entry in quiet.results["rule"]["results"])


def test_backup_keeps_the_old_file_and_returns_its_name(ansible: Ansible, target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    run = ansible.playbook([rule_task(target, backup=True)])

    backup_file = run.results["rule"]["backup_file"]
    assert backup_file.startswith(str(target / DEBIAN_ADMIN) + ".")
    assert Path(backup_file).read_text() == DEBIAN
    assert not backup_file.endswith(".rules")  # udev must not read the backup


def test_defaults_come_from_the_kdumpd_config(ansible: Ansible, target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)
    config = target / "kdumpd.toml"
    config.write_text(f'[rule]\nroot = "{target}"\nhandover = "/run/elsewhere/handover"\n')

    run = ansible.playbook(
        [{"name": "rule", MODULE: {"config": str(config)}}])

    assert run.returncode == 0, run.stdout
    assert 'TEST=="/run/elsewhere/handover"' in (target / DEBIAN_ADMIN).read_text()


def test_an_invalid_kdumpd_config_fails_naming_the_key(ansible: Ansible, target: Path) -> None:
    config = target / "kdumpd.toml"
    config.write_text('[rule]\nroot = "relative"\n')

    run = ansible.playbook([rule_task(target, root=None, config=str(config))])

    assert run.results["rule"]["_status"] == "failed"
    assert "rule.root" in run.results["rule"]["msg"]


@pytest.mark.skipif(os.geteuid() != 0, reason="kdumpd trusts any config file when not root")
def test_a_world_writable_kdumpd_config_is_refused(ansible: Ansible, target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)
    config = target / "kdumpd.toml"
    config.write_text('[rule]\npath = "/etc/udev/rules.d/50-kdump-tools.rules"\n')
    config.chmod(0o666)  # anyone could point root's Ansible run at any file

    run = ansible.playbook([rule_task(target, config=str(config))])

    assert run.results["rule"]["_status"] == "failed"
    assert "world-writable" in run.results["rule"]["msg"]
    assert (target / DEBIAN_ADMIN).read_text() == DEBIAN


def test_malformed_markers_fail_and_leave_the_file_alone(ansible: Ansible,
                                                         target: Path) -> None:
    broken = BEGIN + "\n" + DEBIAN
    (target / DEBIAN_ADMIN).write_text(broken)

    run = ansible.playbook([rule_task(target)])

    assert run.results["rule"]["_status"] == "failed"
    assert "line 1" in run.results["rule"]["msg"]
    assert run.results["rule"]["changed"] is False
    assert (target / DEBIAN_ADMIN).read_text() == broken


def test_no_kdump_rules_file_is_ok_with_a_message(ansible: Ansible, target: Path) -> None:
    run = ansible.playbook([rule_task(target)])

    assert run.returncode == 0, run.stdout
    assert run.results["rule"]["changed"] is False
    assert "no kdump udev rules file found" in run.results["rule"]["msg"]


def test_without_kdumpd_on_the_target_it_fails_saying_so(ansible: Ansible,
                                                         target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)
    task = rule_task(target)
    task["environment"] = {"PATH": "/nonexistent"}  # no kdumpd command on the target

    run = ansible.playbook([task])

    result = run.results["rule"]
    assert result["_status"] == "failed"
    assert "kdumpd is not installed on the target" in result["msg"]
    assert (target / DEBIAN_ADMIN).read_text() == DEBIAN


def test_the_module_runs_with_a_python_that_cannot_import_kdumpd(
        ansible: Ansible, target: Path) -> None:
    """The module imports nothing of kdumpd: a target whose Ansible Python is not the
    one kdumpd is installed for works (0.1.0's module failed there)."""
    (target / DEBIAN_ADMIN).write_text(DEBIAN)
    python = target / "python-without-site-packages"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    task = rule_task(target)
    task["vars"] = {"ansible_python_interpreter": str(python)}

    run = ansible.playbook([task])

    assert run.results["rule"]["changed"] is True, run.results["rule"]
    assert BEGIN in (target / DEBIAN_ADMIN).read_text()
