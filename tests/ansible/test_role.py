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

import pytest

from kdumpd import config as kdumpd_config
from kdumpd.fakes import fakesysfs
from tests.ansible.conftest import Ansible
from tests.ansible.test_module import BEGIN, DEBIAN, DEBIAN_ADMIN

ROLE = "kdumpd.kdumpd.kdumpd"
HANDLER = f"{ROLE} : Reload kdumpd"
RESTART = f"{ROLE} : Restart kdumpd"
UNITS = Path(__file__).resolve().parents[2] / "units"  # what the package ships in /usr/share/kdumpd
DROPINS = "etc/systemd/system/kdumpd.service.d"


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
        "kdumpd_dropin_source_dir": str(UNITS),
        "kdumpd_unit_dropin_dir": str(target / DROPINS),
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


@pytest.mark.skipif(os.geteuid() != 0, reason="the drop-ins are owned by root")
def test_role_installs_the_drop_in_the_backend_needs_and_removes_the_one_it_no_longer_needs(
    ansible: Ansible, target: Path,
) -> None:
    dropins = target / DROPINS
    tools = {"reload": {"backend": "kdump-config"}}
    # `config check` (the role's validate) refuses a load mode this host cannot run: the
    # kexec_load that "hotplug" needs reads /proc/kcore, iomem and kallsyms, which a test
    # host may lack (a VM kernel without /proc/kcore). A tree that has them stands in.
    machine = fakesysfs.build(target / "machine")
    (machine / "proc/kcore").write_bytes(b"")
    (machine / "proc/kallsyms").write_text("ffffffff81000000 T _stext\n")
    hotplug = {"reload": {"backend": "kexec", "load": "hotplug"},
               "sysfs": {"root": str(machine)}}

    def installed() -> list[str]:
        return sorted(p.name for p in dropins.iterdir())

    first = ansible.playbook(play=role_play(target, kdumpd_settings=tools))
    after_first = installed()
    again = ansible.playbook(play=role_play(target, kdumpd_settings=tools))
    switched = ansible.playbook(play=role_play(target, kdumpd_settings=hotplug))
    after_switch = installed()
    default = ansible.playbook(play=role_play(target))

    assert first.returncode == 0, first.stdout
    assert after_first == ["distro-tools.conf"] and RESTART in first.handlers
    assert again.recap()["changed"] == 0 and RESTART not in again.handlers
    assert switched.returncode == 0, switched.stdout
    assert after_switch == ["kexec-load.conf"] and RESTART in switched.handlers
    assert default.returncode == 0, default.stdout
    assert installed() == [] and RESTART in default.handlers


@pytest.mark.skipif(os.geteuid() != 0, reason="the drop-ins are owned by root")
def test_role_drop_in_is_the_packaged_file_and_kexec_load_is_opt_in(
    ansible: Ansible, target: Path,
) -> None:
    dropins = target / DROPINS

    tools = ansible.playbook(play=role_play(
        target, kdumpd_settings={"reload": {"backend": "kdumpctl"}}))
    tools_files = {p.name: p.read_bytes() for p in dropins.iterdir()}
    opted = ansible.playbook(play=role_play(target, kdumpd_kexec_load=True))

    assert tools.returncode == 0, tools.stdout
    assert tools_files == {"distro-tools.conf": (UNITS / "distro-tools.conf").read_bytes()}
    assert opted.returncode == 0, opted.stdout
    assert sorted(p.name for p in dropins.iterdir()) == ["kexec-load.conf"]
    assert oct((dropins / "kexec-load.conf").stat().st_mode & 0o777) == "0o644"


BACKEND_PACKAGES = [  # backend, facts, the packages the role installs for it
    ("kdump-config", {"distribution": "Debian", "distribution_major_version": "13"},
     ["kdump-tools"]),
    ("kdumpctl", {"distribution": "Fedora", "distribution_major_version": "42"},
     ["kdump-utils"]),
    ("kdumpctl", {"distribution": "Fedora", "distribution_major_version": "40"},
     ["kexec-tools"]),
    ("kdumpctl", {"distribution": "RedHat", "distribution_major_version": "9"},
     ["kexec-tools"]),
    ("kdumpctl", {"distribution": "RedHat", "distribution_major_version": "10"},
     ["kdump-utils"]),
    ("kdumpctl", {"distribution": "Rocky", "distribution_major_version": "10"},
     ["kdump-utils"]),
    ("kdumpctl", {"distribution": "Amazon", "distribution_major_version": "2023"},
     ["kexec-tools"]),
    ("kdumpctl", {}, ["kexec-tools"]),  # no facts: the older name
    ("auto", {}, []),
    ("kexec", {}, []),
]


def test_role_backend_packages_follow_the_backend_and_the_distribution(
    ansible: Ansible, target: Path,
) -> None:
    tasks: list[dict[str, Any]] = []
    for n, (backend, facts, packages) in enumerate(BACKEND_PACKAGES):
        variables = role_play(target, kdumpd_settings={"reload": {"backend": backend}})
        tasks += [  # the role's variables as facts: they stay set after include_role
            {"ansible.builtin.set_fact": {"ansible_facts": facts,
                                          **variables["roles"][0]["vars"]}},
            {"ansible.builtin.include_role": {"name": ROLE, "public": True}},
            {"name": f"case {n}", "ansible.builtin.assert": {
                "that": [f"__kdumpd_backend_packages == {packages!r}"], "quiet": True}},
        ]
    tasks += [  # an explicit list wins, even an empty one
        {"ansible.builtin.set_fact": {"kdumpd_backend_packages": [],
                                      "kdumpd_settings": {"reload": {"backend": "kdump-config"}}}},
        {"ansible.builtin.include_role": {"name": ROLE, "public": True}},
        {"name": "explicit", "ansible.builtin.assert": {
            "that": ["__kdumpd_backend_packages == []"], "quiet": True}},
    ]

    run = ansible.playbook(tasks)

    assert run.returncode == 0, run.stdout
    for n in range(len(BACKEND_PACKAGES)):
        assert run.results[f"case {n}"]["_status"] == "ok", BACKEND_PACKAGES[n]
    assert run.results["explicit"]["_status"] == "ok"


@pytest.mark.skipif(os.geteuid() != 0, reason="the drop-ins are owned by root")
def test_role_in_check_mode_with_a_new_drop_in_directory_reports_and_writes_nothing(
    ansible: Ansible, target: Path,
) -> None:
    (target / DEBIAN_ADMIN).write_text(DEBIAN)

    run = ansible.playbook(play=role_play(
        target, kdumpd_settings={"reload": {"backend": "kdump-config"}}), check=True)

    assert run.returncode == 0, run.stdout
    assert not (target / DROPINS).exists()
    assert run.results["Create the drop-in directory"]["changed"] is True
