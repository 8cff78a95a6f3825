"""The real rules files of each distribution, in the layout each package installs them.

Persistent layer (``kdumpd rule install``: /etc/udev/rules.d) and runtime layer (``kdumpd
run``'s default: /run/udev/rules.d, removed when it stops): install, re-install, remove,
vendor files and /usr/lib/kdump never edited, SUSE's runtime copy, fadump, shadowing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from kdumpd.rules import manage, planner, udev
from kdumpd.rules.manage import Env

from .conftest import FIXTURES, FakeUdevadm

REAL = FIXTURES / "real"
HANDOVER = Path("/run/kdumpd/handles-reload")
HANDOVER_LINE = f'TEST=="{HANDOVER}"'

# (fixture, where the package installs it)
UDEV = "usr/lib/udev/rules.d"
LAYOUTS = {
    "debian-trixie": ("debian-trixie-50-kdump-tools.rules", f"{UDEV}/50-kdump-tools.rules"),
    "debian-bookworm": ("debian-bookworm-50-kdump-tools.rules",
                        "lib/udev/rules.d/50-kdump-tools.rules"),
    "fedora": ("fedora-98-kexec.rules", f"{UDEV}/98-kexec.rules"),
    "fedora-ppc64": ("fedora-98-kexec.rules.ppc64", f"{UDEV}/98-kexec.rules"),
    "suse-0.9.0": ("opensuse-70-kdump.rules.x86_64", "etc/udev/rules.d/70-kdump.rules"),
    "suse-0.9.1": ("opensuse-70-kdump.rules.x86_64", "usr/lib/kdump/70-kdump.rules"),
    "suse-0.9.1-ppc64le": ("opensuse-70-kdump.rules.ppc64le", "usr/lib/kdump/70-kdump.rules"),
}


def place(root: Path, layout: str) -> Path:
    fixture, where = LAYOUTS[layout]
    path = root / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((REAL / fixture).read_bytes())
    return path


def suse_load(root: Path) -> Path:
    """What openSUSE's load.sh does at every kdump load: cp the rules into /run."""
    copy = root / "run/udev/rules.d/70-kdump.rules"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes((root / "usr/lib/kdump/70-kdump.rules").read_bytes())
    return copy


def run(root: Path, env: Env, state: str = "present", **kwargs: object) -> dict[str, object]:
    return manage.run(state=state, root=root, handover=HANDOVER, env=env, **kwargs)  # type: ignore[arg-type]


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_persistent_install_reinstall_remove_round_trip(
        tmp_path: Path, env: Env, layout: str) -> None:
    packaged = place(tmp_path, layout)
    original = packaged.read_bytes()
    before = tree(tmp_path)
    installed = run(tmp_path, env)
    assert installed["changed"] is True, installed["msg"]
    target = tmp_path / "etc/udev/rules.d" / packaged.name
    text = target.read_text()
    assert text.startswith(planner.BLOCK_BEGIN) and HANDOVER_LINE in text
    if "etc/" not in LAYOUTS[layout][1]:
        assert packaged.read_bytes() == original  # the vendor file is never edited
    assert run(tmp_path, env)["changed"] is False
    removed = run(tmp_path, env, state="absent")
    assert removed["changed"] is True
    assert tree(tmp_path) == before


@pytest.mark.parametrize("layout", ["debian-trixie", "debian-bookworm", "fedora"])
def test_runtime_layer_overrides_in_run_and_leaves_etc_alone(
        tmp_path: Path, env: Env, layout: str) -> None:
    packaged = place(tmp_path, layout)
    before = tree(tmp_path)
    result = run(tmp_path, env, layer="runtime")
    assert result["changed"] is True
    override = tmp_path / "run/udev/rules.d" / packaged.name
    assert HANDOVER_LINE in override.read_text()
    assert not (tmp_path / "etc/udev/rules.d" / packaged.name).exists()
    assert run(tmp_path, env, layer="runtime")["changed"] is False
    assert run(tmp_path, env, state="absent", layer="runtime")["changed"] is True
    assert tree(tmp_path) == before


def test_suse_runtime_copy_is_edited_in_place_and_survives_a_kdump_restart(
        tmp_path: Path, env: Env) -> None:
    vendor = place(tmp_path, "suse-0.9.1")
    packaged = vendor.read_bytes()
    copy = suse_load(tmp_path)
    assert run(tmp_path, env, layer="runtime")["changed"] is True
    assert HANDOVER_LINE in copy.read_text()
    suse_load(tmp_path)  # systemctl restart kdump: load.sh copies the file again
    assert HANDOVER_LINE not in copy.read_text()
    again = run(tmp_path, env, layer="runtime")  # what the daemon's watch does
    assert again["changed"] is True and HANDOVER_LINE in copy.read_text()
    assert run(tmp_path, env, state="absent", layer="runtime")["changed"] is True
    assert copy.read_bytes() == packaged  # exactly SUSE's copy again
    assert vendor.read_bytes() == packaged  # /usr/lib/kdump is never edited
    assert not (tmp_path / "etc/udev/rules.d/70-kdump.rules").exists()


def test_suse_runtime_layer_never_creates_the_copy_kdump_did_not(
        tmp_path: Path, env: Env) -> None:
    place(tmp_path, "suse-0.9.1")
    before = tree(tmp_path)
    result = run(tmp_path, env, layer="runtime")
    assert result["changed"] is False and "copies /usr/lib/kdump/70-kdump.rules" in str(
        result["msg"])
    assert tree(tmp_path) == before


def test_suse_persistent_override_is_built_from_usr_lib_kdump(tmp_path: Path, env: Env) -> None:
    place(tmp_path, "suse-0.9.1")
    suse_load(tmp_path)
    result = run(tmp_path, env)
    assert result["changed"] is True
    override = (tmp_path / "etc/udev/rules.d/70-kdump.rules").read_text()
    assert "kdumpd override of /usr/lib/kdump/70-kdump.rules" in override
    assert HANDOVER_LINE not in (tmp_path / "run/udev/rules.d/70-kdump.rules").read_text()


def test_s390x_rules_run_nothing_so_nothing_is_added(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "usr/lib/kdump/70-kdump.rules"
    path.parent.mkdir(parents=True)
    path.write_bytes((REAL / "opensuse-70-kdump.rules.s390x").read_bytes())
    before = tree(tmp_path)
    result = run(tmp_path, env)
    assert result["changed"] is False and "runs no program" in str(result["msg"])
    assert tree(tmp_path) == before


@pytest.mark.parametrize("layout", ["fedora-ppc64", "suse-0.9.1-ppc64le"])
def test_with_fadump_enabled_the_handover_never_silences_the_rules(
        tmp_path: Path, env: Env, layout: str) -> None:
    place(tmp_path, layout)
    if layout.startswith("suse"):
        suse_load(tmp_path)
    result = run(tmp_path, dataclasses.replace(env, fadump=lambda: True), layer="runtime")
    assert "fadump is enabled" in " ".join(result.get("warnings", []))  # type: ignore[arg-type]
    rules = tmp_path / "run/udev/rules.d" / Path(LAYOUTS[layout][1]).name
    text = rules.read_text() if rules.exists() else ""
    assert HANDOVER_LINE not in text
    assert "/sys/kernel/fadump" in text or result["changed"] is False


def test_without_fadump_the_ppc64_rules_get_the_handover(tmp_path: Path, env: Env) -> None:
    place(tmp_path, "fedora-ppc64")
    run(tmp_path, env, layer="runtime")
    assert HANDOVER_LINE in (tmp_path / "run/udev/rules.d/98-kexec.rules").read_text()


def test_fadump_is_read_from_sysfs(tmp_path: Path) -> None:
    enabled = tmp_path / manage.FADUMP_ENABLED
    assert manage.fadump_enabled(tmp_path) is False
    enabled.parent.mkdir(parents=True)
    enabled.write_text("0\n")
    assert manage.fadump_enabled(tmp_path) is False
    enabled.write_text("1\n")
    assert manage.fadump_enabled(tmp_path) is True


def test_admin_file_in_etc_shadows_the_runtime_layer_with_a_warning(
        tmp_path: Path, env: Env) -> None:
    place(tmp_path, "debian-trixie")
    admin = tmp_path / "etc/udev/rules.d/50-kdump-tools.rules"
    admin.parent.mkdir(parents=True)
    admin.write_text('SUBSYSTEM=="memory", PROGRAM="/usr/local/bin/reload"\n')
    before = tree(tmp_path)
    result = run(tmp_path, env, layer="runtime")
    assert result["changed"] is False and "nothing to do at runtime" in str(result["msg"])
    assert "kdumpd rule install" in " ".join(result["warnings"])  # type: ignore[arg-type]
    assert tree(tmp_path) == before


def test_a_persistent_install_shadows_the_runtime_layer_quietly(
        tmp_path: Path, env: Env) -> None:
    place(tmp_path, "debian-trixie")
    run(tmp_path, env)
    result = run(tmp_path, env, layer="runtime")
    assert result["changed"] is False and "holds kdumpd's block" in str(result["msg"])
    assert "warnings" not in result
    assert not (tmp_path / "run/udev/rules.d/50-kdump-tools.rules").exists()


def test_check_mode_validates_like_a_real_run(tmp_path: Path, control_socket: Path) -> None:
    udevadm = FakeUdevadm(version="254", verify_rc=1,
                          verify_err="/x/50-kdump-tools.rules:2 Invalid key/value pair, ignoring.")
    env = Env(udev=udev.Udev(udevadm, control_socket=control_socket), fadump=lambda: False)
    place(tmp_path, "debian-trixie")
    before = tree(tmp_path)
    result = run(tmp_path, env, check=True)
    assert result["failed"] is True and "would not change" in str(result["msg"])
    assert udevadm.ran("verify")
    assert tree(tmp_path) == before


def test_check_mode_reports_how_it_validated(tmp_path: Path, env: Env) -> None:
    place(tmp_path, "debian-trixie")
    result = run(tmp_path, env, check=True)
    assert result["changed"] is True
    assert "kdumpd's syntax check" in str(result["validated_with"])
