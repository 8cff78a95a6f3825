from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpd.config import Config, ConfigError, ReloadConfig
from kdumpd.security import check_image_files, check_trusted_file

UNIT = Path(__file__).resolve().parents[2] / "units" / "kdumpd.service"


def test_non_root_callers_are_not_checked(tmp_path: Path) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_text("")
    path.chmod(0o666)
    check_trusted_file(path, "config file", euid=1000)


def test_missing_file_is_not_refused(tmp_path: Path) -> None:
    check_trusted_file(tmp_path / "absent", "config file", euid=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="the file must be owned by root")
@pytest.mark.parametrize("mode", [0o664, 0o646, 0o777])
def test_group_or_world_writable_is_refused_for_root(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_text("")
    path.chmod(mode)
    with pytest.raises(ConfigError, match=rf"mode {mode:04o}"):
        check_trusted_file(path, "config file", euid=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vmlinuz"
    path.write_bytes(b"kernel")
    os.chown(path, 65534, 65534)
    cfg = Config(reload=ReloadConfig(kernel=str(path)))
    with pytest.raises(ConfigError) as caught:
        check_image_files(cfg, euid=0)
    assert caught.value.key == "reload.kernel"
    assert "owned by uid 65534, not root" in str(caught.value)
    assert str(path) in str(caught.value)


def test_safe_image_files_pass(tmp_path: Path) -> None:
    path = tmp_path / "vmlinuz"
    path.write_bytes(b"kernel")
    path.chmod(0o644)
    check_image_files(Config(reload=ReloadConfig(kernel=str(path), initrd=str(path))),
                      euid=os.geteuid())


@pytest.mark.skipif(os.geteuid() != 0, reason="lchown needs root")
def test_a_kernel_named_through_a_link_others_control_is_refused(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz-old"
    kernel.write_bytes(b"a root-owned kernel, but not the one configured")
    kernel.chmod(0o644)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)  # sticky and world-writable, like /tmp
    link = shared / "vmlinuz"
    link.symlink_to(kernel)
    # root's link in a sticky directory: nobody else can re-point it.
    check_image_files(Config(reload=ReloadConfig(kernel=str(link))), euid=0)
    os.lchown(link, 65534, 65534)  # a user's link: they can point it at any file
    with pytest.raises(ConfigError, match=r"is a symlink owned by uid 65534"):
        check_image_files(Config(reload=ReloadConfig(kernel=str(link))), euid=0)
    mine = tmp_path / "mine"
    mine.mkdir()
    os.chown(mine, 65534, 65534)
    (mine / "vmlinuz").symlink_to(kernel)  # root's link, in a directory a user owns
    with pytest.raises(ConfigError, match=r"which others can change"):
        check_image_files(Config(reload=ReloadConfig(kernel=str(mine / "vmlinuz"))), euid=0)


def systemd_analyze_version() -> int:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        return 0
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30,
                         check=False).stdout
    words = out.split()
    return int(words[1]) if len(words) > 1 and words[1].isdigit() else 0


@pytest.mark.skipif(systemd_analyze_version() < 250, reason="needs systemd-analyze >= 250")
def test_unit_exposure_score_is_at_most_2_5() -> None:
    # 1.9 before kdumpd read the loaded header back; /proc/kcore costs CAP_SYS_RAWIO,
    # PrivateDevices=no and ProtectKernelTunables=no (spelled out as ReadOnlyPaths=, which
    # the score does not credit): 2.5 (docs/design.md).
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    line = next(x for x in done.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(":")[1].split()[0])
    assert score <= 2.5, line


@pytest.mark.skipif(systemd_analyze_version() < 250, reason="needs systemd-analyze >= 250")
def test_the_distro_tools_drop_in_scores_what_the_docs_say(tmp_path: Path) -> None:
    # kdumpd(8) (FILES) and the README give the unit's exposure with distro-tools.conf;
    # offline, systemd-analyze reads the drop-in from kdumpd.service.d beside the unit.
    units = Path(__file__).parents[2] / "units"
    (tmp_path / "kdumpd.service.d").mkdir()
    shutil.copy(units / "kdumpd.service", tmp_path)
    shutil.copy(units / "distro-tools.conf", tmp_path / "kdumpd.service.d")
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager",
         str(tmp_path / "kdumpd.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    line = next(x for x in done.stdout.splitlines() if "Overall exposure level" in x)
    score = line.split(":")[1].split()[0]
    generator = (Path(__file__).parents[2] / "packaging" / "gen-manpage.py").read_text()
    readme = (Path(__file__).parents[2] / "README.md").read_text()

    assert f"from 2.5 to {score}" in " ".join(generator.replace('"', "").split()), line
    assert f"from 2.5 to {score}" in " ".join(readme.split()), line
    assert "audit" not in generator  # a figure says how it was measured, not who said it


def test_unit_keeps_what_kdumpd_needs() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text
    assert "CAP_SYS_BOOT" in text
    assert "CAP_SYS_RAWIO" in text and "InaccessiblePaths=-/proc/kallsyms" in text
    assert "@reboot" in text
    assert "AF_NETLINK" in text
    assert "PrivateNetwork" not in text.replace("# No PrivateNetwork=", "")


def unit_settings() -> dict[str, str]:
    unit = Path(__file__).parents[2] / "units" / "kdumpd.service"
    return dict(line.split("=", 1) for line in unit.read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def test_stop_never_kills_a_load_in_flight_and_waits_long_enough() -> None:
    from kdumpd.app import stop_wait_s
    from kdumpd.config import MAX_TIMEOUT_S

    settings = unit_settings()
    assert settings["KillMode"] == "mixed"  # SIGTERM to kdumpd only, not to kexec
    assert settings["StateDirectory"] == "kdumpd"
    value = settings["TimeoutStopSec"]
    assert value.endswith("min")
    assert int(value[:-3]) * 60 > stop_wait_s(MAX_TIMEOUT_S)


def test_the_default_handover_file_lives_in_the_runtime_directory_a_restart_keeps() -> None:
    from kdumpd.config import RuleConfig

    settings = unit_settings()
    assert settings["RuntimeDirectoryPreserve"] == "restart"
    from kdumpd.cli import EXIT_CONFIG
    # A start that can never work is not retried while a kept hand-over silences the rules.
    assert settings["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert RuleConfig().handover.parent == Path("/run") / settings["RuntimeDirectory"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the tree must be root's")
def test_a_config_in_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone could replace the file
    path = shared / "kdumpd.toml"
    path.write_text("")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"on the way to .*refusing it"):
        check_trusted_file(path, "config file", euid=0)


def test_the_config_read_is_vetted_on_the_opened_file(tmp_path: Path) -> None:
    """The file read is the file checked: the descriptor is vetted, not the name."""
    from kdumpd import config, security

    path = tmp_path / "kdumpd.toml"
    path.write_text('[events]\nquiet_ms = 300\n')
    path.chmod(0o644)
    seen: list[int] = []

    def vet(fd: int) -> str | None:
        seen.append(os.fstat(fd).st_ino)
        return security.fd_problem(fd, euid=0 if os.geteuid() == 0 else 1000)

    assert config.load(path, vet=vet).events.quiet_ms == 300
    assert seen == [path.stat().st_ino]
    path.chmod(0o666)
    if os.geteuid() == 0:
        with pytest.raises(ConfigError, match="group- or world-writable.*refusing it"):
            config.load(path, vet=vet)


# -- the state directory and the control socket's directory -------------------------------

from kdumpd.security import check_private_dir, private_dir_problem  # noqa: E402


def test_a_private_directory_is_not_vetted_for_other_users(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o777)
    assert private_dir_problem(tmp_path / "state", euid=1000) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the directories must be root's")
def test_root_private_directories_existing_or_to_be_created_are_accepted(
        tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "state").mkdir(mode=0o755)
    assert private_dir_problem(tmp_path / "state", euid=0) is None
    assert private_dir_problem(tmp_path / "absent" / "state", euid=0) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the directories must be root's")
@pytest.mark.parametrize("mode", [0o1777, 0o1770, 0o777])
def test_a_sticky_or_plain_shared_state_directory_is_refused(
        tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)  # a user could create and hold the lock, or plant state.json
    with pytest.raises(ConfigError, match=rf"state.dir: {state} is group- or world-writable "
                       rf"\(mode {mode:04o}"):
        check_private_dir(state, "state.dir", euid=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_state_directory_to_be_created_under_a_user_owned_parent_is_refused(
        tmp_path: Path) -> None:
    parent = tmp_path / "home"
    parent.mkdir(mode=0o755)
    os.chown(parent, 65534, 65534)  # the user could swap the directory kdumpd creates
    with pytest.raises(ConfigError, match=(
            rf"state.dir: {parent} \(where {parent}/kdumpd would be created\): "
            rf"{parent} is owned by uid 65534, not root: refusing it")) as refused:
        check_private_dir(parent / "kdumpd", "state.dir", euid=0)
    assert "\n" not in str(refused.value)
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # a /tmp: others could create it first
    with pytest.raises(ConfigError, match="where .* would be created.*sticky bit"):
        check_private_dir(sticky / "kdumpd", "state.dir", euid=0)
