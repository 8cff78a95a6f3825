"""The kdumpd role through ansible-playbook, without touching the host.

Package install and service start are switched off (kdumpd_manage_package/-_service:
false; the real apt install and systemd start are covered by the VM and package tests),
the config file goes to a temp dir and the rules files live under a temp root. What runs
for real: the variable checks, the config template and its validation with
``kdumpd config check``, the crash_hotplug_rule task, and the handler notification.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path
from typing import Any

from kdumpd import config as kdumpd_config
from tests.ansible.conftest import Ansible
from tests.ansible.test_module import BEGIN, DEBIAN, DEBIAN_ADMIN

ROLE = "kdumpd.kdumpd.kdumpd"
HANDLER = f"{ROLE} : Reload kdumpd"


def role_play(target: Path, **variables: Any) -> dict[str, Any]:
    """A play that applies the role to the temp root with host-touching parts off."""
    values: dict[str, Any] = {
        "kdumpd_manage_package": False,
        "kdumpd_manage_service": False,
        "kdumpd_config_path": str(target / "etc/kdumpd/kdumpd.toml"),
        # Whoever runs the tests owns the file (root in CI containers, not always).
        "kdumpd_config_owner": pwd.getpwuid(os.geteuid()).pw_name,
        "kdumpd_config_group": grp.getgrgid(os.getegid()).gr_name,
        "kdumpd_executable": f"{sys.executable} -m kdumpd",
        "kdumpd_rule_root": str(target),
    }
    values.update(variables)
    return {"roles": [{"role": ROLE, "vars": values}]}


def test_role_writes_a_config_kdumpd_accepts_installs_the_rule_and_notifies_the_handler(
    ansible: Ansible, target: Path,
) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)
    settings = {"events": {"quiet_ms": 500, "max_delay_ms": 4000},
                "reload": {"backend": "kexec", "append": 'crashkernel "quoted" \\ end',
                           "fake": {"hotplug_after_load": True}}}
    play = role_play(target, kdumpd_settings=settings,
                     kdumpd_rule_handover="/run/kdumpd-test/handover")

    first = ansible.playbook(play=play)
    second = ansible.playbook(play=play)

    assert first.returncode == 0, first.stdout
    path = target / "etc/kdumpd/kdumpd.toml"
    parsed = kdumpd_config.parse(path.read_text(), path)
    assert parsed.events.quiet_ms == 500
    assert parsed.events.max_delay_ms == 4000
    assert parsed.reload.backend == "kexec"
    assert parsed.reload.append == 'crashkernel "quoted" \\ end'
    assert parsed.reload.fake.hotplug_after_load is True
    assert parsed.rule.state == "present"
    assert parsed.rule.root == target
    assert str(parsed.rule.handover) == "/run/kdumpd-test/handover"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    rules = (target / DEBIAN_ADMIN).read_text()
    assert rules.startswith(BEGIN)
    assert 'TEST=="/run/kdumpd-test/handover"' in rules  # the same value as the config
    assert HANDLER in first.handlers
    assert second.returncode == 0, second.stdout
    assert second.recap()["changed"] == 0
    assert HANDLER not in second.handlers


def test_role_config_change_notifies_the_handler_and_rule_absent_removes_the_block(
    ansible: Ansible, target: Path,
) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)
    ansible.playbook(play=role_play(target))

    changed = ansible.playbook(play=role_play(target, kdumpd_rule_state="absent"))

    assert changed.returncode == 0, changed.stdout
    assert HANDLER in changed.handlers
    assert (target / DEBIAN_ADMIN).read_bytes() == DEBIAN.encode()
    path = target / "etc/kdumpd/kdumpd.toml"
    assert kdumpd_config.parse(path.read_text()).rule.state == "absent"


def test_role_in_check_mode_reports_changes_and_writes_nothing(ansible: Ansible,
                                                               target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    run = ansible.playbook(play=role_play(target), check=True, diff=True)

    assert run.returncode == 0, run.stdout
    assert run.recap()["changed"] == 3  # config dir, config file, rule block
    assert "+" + BEGIN in run.stdout
    assert "+[rule]" in run.stdout
    assert not (target / "etc/kdumpd").exists()
    assert (target / DEBIAN_ADMIN).read_text() == DEBIAN


def test_role_refuses_settings_the_daemon_would_reject(ansible: Ansible, target: Path) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    run = ansible.playbook(play=role_play(target, kdumpd_settings={"events": {"quiet_ms": -1}}))

    assert run.returncode != 0
    assert "events.quiet_ms" in run.stdout  # kdumpd config check names the key
    assert not (target / "etc/kdumpd/kdumpd.toml").exists()
    assert (target / DEBIAN_ADMIN).read_text() == DEBIAN


def test_role_refuses_a_rule_table_in_kdumpd_settings(ansible: Ansible, target: Path) -> None:
    run = ansible.playbook(play=role_play(target, kdumpd_settings={"rule": {"state": "absent"}}))

    assert run.returncode != 0
    assert "kdumpd_rule_" in run.stdout
