"""`kdumpd rule install|remove` output and exit status, and the daemon's converge step."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kdumpd import atomic, cli, journal_ids
from kdumpd.config import Config, ConfigError, RuleConfig
from kdumpd.rules import apply, planner
from kdumpd.rules.manage import Env

from .conftest import distro_text, etc, install_vendor


def config(root: Path, **rule: object) -> Config:
    rule.setdefault("state", "present")
    return Config(rule=replace(RuleConfig(root=root), **rule))  # type: ignore[arg-type]


def main(action: str, cfg: Config, env: Env, **flags: bool | str | None) -> tuple[int, str]:
    out = io.StringIO()
    options: dict[str, bool | str | None] = {"path": None, "check": False, "diff": False,
                                             "backup": False, "json_out": False}
    options.update(flags)
    status = apply.main(action, cfg, env=env, out=out, **options)  # type: ignore[arg-type]
    return status, out.getvalue()


def test_install_prints_a_changed_line_and_the_diff(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    status, out = main("install", config(fakeroot), env, diff=True)
    assert status == 0
    first = out.splitlines()[0]
    assert first.startswith("changed: /etc/udev/rules.d/50-kdump-tools.rules: created the override")
    assert "--- before: /etc/udev/rules.d/50-kdump-tools.rules (absent)" in out
    assert f"+{planner.BLOCK_BEGIN}" in out


def test_second_install_says_ok(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "opensuse")
    main("install", config(fakeroot), env)
    status, out = main("install", config(fakeroot), env, diff=True)
    assert status == 0 and out.startswith("ok: ") and "---" not in out


def test_nothing_found_exits_zero(fakeroot: Path, env: Env) -> None:
    status, out = main("install", config(fakeroot), env)
    assert status == 0 and "ok: no kdump udev rules file found" in out


def test_failure_exits_one_and_json_says_failed(fakeroot: Path, env: Env) -> None:
    etc(fakeroot, "debian").write_text(planner.BLOCK_END + "\n")
    status, out = main("install", config(fakeroot), env, json_out=True)
    assert status == 1
    result = json.loads(out)
    assert result["failed"] is True and "line 1:" in result["msg"]


def test_json_result_and_check_mode(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "fedora")
    status, out = main("install", config(fakeroot), env, json_out=True, check=True)
    result = json.loads(out)
    assert status == 0 and result["changed"] is True
    assert result["path"] == "/etc/udev/rules.d/98-kexec.rules"
    assert result["diff"]["before"] == "" and "kdump_reload_end" in result["diff"]["after"]
    assert not etc(fakeroot, "fedora").exists()


def test_backup_path_is_reported(fakeroot: Path, env: Env) -> None:
    etc(fakeroot, "debian").write_text(distro_text("debian"))
    status, out = main("install", config(fakeroot), env, backup=True)
    assert status == 0
    [line] = [ln for ln in out.splitlines() if ln.startswith("backup: ")]
    assert Path(line.split(" ", 1)[1]).read_text() == distro_text("debian")


def test_explicit_path_overrides_the_config(fakeroot: Path, env: Env, tmp_path: Path) -> None:
    status, out = main("install", config(fakeroot), env, path="/etc/udev/rules.d/x.rules")
    assert status == 1
    assert out == ("failed: /etc/udev/rules.d/x.rules: no such file "
                   "(and no vendor file of that name)\n")


def test_unsafe_handover_is_a_config_error(fakeroot: Path, env: Env) -> None:
    cfg = config(fakeroot, handover=Path('/run/kdumpd/"x'))
    with pytest.raises(ConfigError) as caught:
        main("install", cfg, env)
    assert caught.value.key == "rule.handover"
    with pytest.raises(ConfigError):
        apply.converge(replace(cfg, rule=replace(cfg.rule, state="present")), dry_run=False,
                         env=env)


def test_cli_prints_one_line_for_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              ) -> None:
    conf = tmp_path / "k.toml"
    conf.write_text('[rule]\nstate = "maybe"\n')
    conf.chmod(0o600)
    status = cli.main(["rule", "install", "--config", str(conf)])
    err = capsys.readouterr().err
    assert status == 78 and "rule.state" in err and "Traceback" not in err


def test_cli_install_on_a_tmp_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "etc/udev/rules.d").mkdir(parents=True)
    (root / "etc/udev/rules.d/50-kdump-tools.rules").write_text(distro_text("debian"))
    conf = tmp_path / "k.toml"
    conf.write_text(f'[rule]\nroot = "{root}"\n')
    conf.chmod(0o600)
    assert cli.main(["rule", "install", "--config", str(conf), "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert cli.main(["rule", "install", "--config", str(conf)]) == 0
    assert capsys.readouterr().out.startswith("changed: ")
    assert cli.main(["rule", "remove", "--config", str(conf), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["msg"] == "removed the kdumpd managed block"
    assert (root / "etc/udev/rules.d/50-kdump-tools.rules").read_text() == distro_text("debian")


def test_cli_root_and_handover_override_the_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "etc/udev/rules.d").mkdir(parents=True)
    rules = root / "etc/udev/rules.d/50-kdump-tools.rules"
    rules.write_text(distro_text("debian"))
    conf = tmp_path / "k.toml"
    conf.write_text('[rule]\nroot = "/nonexistent"\n')
    conf.chmod(0o600)
    assert cli.main(["rule", "install", "--config", str(conf), "--root", str(root),
                     "--handover", "/run/x/handover"]) == 0
    assert 'TEST=="/run/x/handover"' in rules.read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:
        cli.main(["rule", "install", "--root", "relative/dir"])
    assert usage.value.code == 2
    assert "expected an absolute path" in capsys.readouterr().err
    assert cli.main(["rule", "remove", "--config", str(conf), "--root", str(root),
                     "--handover", '/run/x"y']) == 78  # the same validation as the config


# -- converge (kdumpd run) -------------------------------------------------------------


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    # kdumpd's logger propagates to the root logger, where caplog's handler listens
    # (tests/conftest.py puts the logger back after a test that set up the CLI's logging).
    caplog.set_level(logging.DEBUG, logger="kdumpd")
    yield caplog


def test_converge_installs_and_logs_rule_changed(
        fakeroot: Path, env: Env, records: pytest.LogCaptureFixture) -> None:
    install_vendor(fakeroot, "debian")
    apply.converge(config(fakeroot), dry_run=False, env=env)
    assert etc(fakeroot, "debian").exists()
    [changed] = [r for r in records.records if getattr(r, "MESSAGE_ID", None)]
    assert changed.MESSAGE_ID == journal_ids.RULE_CHANGED  # type: ignore[attr-defined]
    assert "udev rule changed" in changed.getMessage()
    records.clear()
    apply.converge(config(fakeroot), dry_run=False, env=env)
    assert not [r for r in records.records if getattr(r, "MESSAGE_ID", None)]
    assert "nothing to do" in records.text


def test_converge_dry_run_writes_nothing(
        fakeroot: Path, env: Env, records: pytest.LogCaptureFixture) -> None:
    install_vendor(fakeroot, "debian")
    apply.converge(config(fakeroot), dry_run=True, env=env)
    assert not etc(fakeroot, "debian").exists()
    assert "would change" in records.text
    assert not [r for r in records.records if getattr(r, "MESSAGE_ID", None)]  # nothing changed


def test_converge_absent_removes(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    apply.converge(config(fakeroot), dry_run=False, env=env)
    apply.converge(config(fakeroot, state="absent"), dry_run=False, env=env)
    assert not etc(fakeroot, "debian").exists()


def test_converge_ignore_touches_nothing(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    apply.converge(config(fakeroot, state="ignore"), dry_run=False, env=env)
    assert not etc(fakeroot, "debian").exists()


def test_converge_logs_failures_instead_of_raising(
        fakeroot: Path, env: Env, records: pytest.LogCaptureFixture) -> None:
    etc(fakeroot, "debian").write_text(planner.BLOCK_BEGIN + "\n")
    apply.converge(config(fakeroot), dry_run=False, env=env)
    errors = [r for r in records.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "line 1:" in errors[0].getMessage()


def run_override(root: Path) -> Path:
    return root / "run/udev/rules.d/50-kdump-tools.rules"


def test_runtime_is_the_default_and_writes_only_under_run(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    cfg = Config(rule=RuleConfig(root=fakeroot))
    assert cfg.rule.state == "runtime"
    keeper = apply.Keeper(cfg, dry_run=False, env=env)
    keeper.apply()
    assert planner.BLOCK_BEGIN in run_override(fakeroot).read_text()
    assert not etc(fakeroot, "debian").exists()
    keeper.withdraw()
    assert not run_override(fakeroot).exists()


def test_keeper_applies_again_only_when_a_rules_file_changed(
        fakeroot: Path, env: Env, records: pytest.LogCaptureFixture) -> None:
    install_vendor(fakeroot, "debian")
    keeper = apply.Keeper(config(fakeroot, state="runtime"), dry_run=False, env=env)
    keeper.apply()
    records.clear()
    keeper.refresh()
    assert "applying again" not in records.text
    run_override(fakeroot).write_text(distro_text("debian"))  # a distribution rewrote it
    keeper.refresh()
    assert "applying again" in records.text
    assert planner.BLOCK_BEGIN in run_override(fakeroot).read_text()


def test_keeper_refresh_leaves_persistent_states_to_start_and_sighup(
        fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    keeper = apply.Keeper(config(fakeroot), dry_run=False, env=env)
    keeper.apply()
    etc(fakeroot, "debian").unlink()
    keeper.refresh()
    assert not etc(fakeroot, "debian").exists()


def test_switching_from_runtime_to_present_on_sighup_moves_the_override(
        fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    keeper = apply.Keeper(config(fakeroot, state="runtime"), dry_run=False, env=env)
    keeper.apply()
    keeper.apply(config(fakeroot, state="present"))
    assert etc(fakeroot, "debian").exists() and not run_override(fakeroot).exists()
    keeper.withdraw()  # a persistent install outlives the daemon
    assert etc(fakeroot, "debian").exists()


def test_dry_run_keeper_writes_and_withdraws_nothing(
        fakeroot: Path, env: Env, records: pytest.LogCaptureFixture) -> None:
    install_vendor(fakeroot, "debian")
    keeper = apply.Keeper(config(fakeroot, state="runtime"), dry_run=True, env=env)
    keeper.apply()
    keeper.withdraw()
    assert not run_override(fakeroot).exists()
    assert "would change" in records.text


def test_a_busy_rules_lock_never_holds_the_daemon_and_the_apply_is_retried(
        fakeroot: Path, env: Env, records: pytest.LogCaptureFixture) -> None:
    install_vendor(fakeroot, "debian")
    rules_dir = run_override(fakeroot).parent
    rules_dir.mkdir(parents=True)
    keeper = apply.Keeper(config(fakeroot, state="runtime"), dry_run=False, env=env)
    waited: list[float] = []
    with atomic.directory_lock(rules_dir, sleep=waited.append):  # a `kdumpd rule` run
        keeper.apply()  # at start: fails at once instead of waiting
        assert not run_override(fakeroot).exists()
        assert keeper.failures and "held by another process" in keeper.failures[0]
        errors = [r.getMessage() for r in records.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "another kdumpd" not in errors[0]
        records.clear()
        for _look in range(7):  # the daemon's rules timer, every RULES_WATCH_S
            keeper.refresh()
        assert not [r for r in records.records if r.levelno >= logging.ERROR]  # said once
    assert waited == []
    keeper.refresh()  # the lock is free: the next retry that is due applies it
    for _ in range(apply.RETRY_LOOKS_MAX):
        if not keeper.failures:
            break
        keeper.refresh()
    assert keeper.failures == []
    assert planner.BLOCK_BEGIN in run_override(fakeroot).read_text()
    assert "applied now (the earlier attempt failed)" in records.text


def test_a_failed_apply_backs_off_to_about_a_minute(
        fakeroot: Path, env: Env, records: pytest.LogCaptureFixture) -> None:
    install_vendor(fakeroot, "debian")
    run_override(fakeroot).parent.mkdir(parents=True)
    keeper = apply.Keeper(config(fakeroot, state="runtime"), dry_run=False, env=env)
    attempts: list[int] = []
    with atomic.directory_lock(run_override(fakeroot).parent):
        keeper.apply()
        for look in range(1, 200):
            records.clear()
            keeper.refresh()
            if "trying the apply that failed again" in records.text:
                attempts.append(look)
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert attempts[0] == 1 and gaps[:6] == [2, 4, 8, 16, 32, 32]
