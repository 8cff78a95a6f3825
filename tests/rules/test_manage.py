"""Whole runs over a fake root: discovery, vendor overrides, check mode, udevd reload."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

import pytest

from kdumpd import atomic
from kdumpd.rules import manage, planner, udev
from kdumpd.rules.manage import Env

from .conftest import DISTROS, FakeUdevadm, distro_text, etc, install_vendor, leftovers

HANDOVER = Path("/run/kdumpd/handles-reload")
SLASH = Path("/")


def run(root: Path, env: Env, state: str = "present", **kwargs: object) -> dict[str, object]:
    return manage.run(state=state, root=root, handover=HANDOVER, env=env, **kwargs)  # type: ignore[arg-type]


def test_nothing_found_is_ok_with_a_clear_message(fakeroot: Path, env: Env) -> None:
    result = run(fakeroot, env)
    assert result["changed"] is False and "failed" not in result
    assert "no kdump udev rules file found" in str(result["msg"])
    assert "98-kexec.rules" in str(result["msg"])


def test_explicit_missing_path_fails(fakeroot: Path, env: Env) -> None:
    result = run(fakeroot, env, path="/etc/udev/rules.d/99-nope.rules")
    assert result["failed"] is True and "no such file" in str(result["msg"])


@pytest.mark.parametrize(("given", "why"), [
    ("/etc/passwd", "name must end in .rules"),
    ("/etc/udev/rules.d/../../shadow.rules", "must not contain '..'"),
])
def test_explicit_path_that_is_no_rules_file_is_refused_untouched(
        fakeroot: Path, env: Env, given: str, why: str) -> None:
    victim = fakeroot / "etc" / "passwd"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("root:x:0:0::/root:/bin/sh\n")
    result = run(fakeroot, env, path=given)
    assert result["failed"] is True and why in str(result["msg"])
    assert victim.read_text() == "root:x:0:0::/root:/bin/sh\n"


@pytest.mark.parametrize("distro", ["fedora", "debian", "opensuse"])
def test_vendor_file_is_never_edited_an_override_is_created(
        distro: str, fakeroot: Path, env: Env, udevadm: FakeUdevadm) -> None:
    vendor = install_vendor(fakeroot, distro)
    result = run(fakeroot, env)
    assert result["changed"] is True, result
    assert vendor.read_text() == distro_text(distro)
    override = etc(fakeroot, distro)
    text = override.read_text()
    assert text.startswith(planner.BLOCK_BEGIN)
    assert planner.parse(text).base == distro_text(distro)
    assert result["path"] == f"/etc/udev/rules.d/{DISTROS[distro][0]}"
    assert "created the override" in str(result["msg"])
    assert leftovers(override.parent) == []
    assert not udevadm.ran("control")  # root is not /: the live udevd is not ours
    assert "not reloading udevd" in str(result["udevd"])


def test_second_install_reports_unchanged_and_writes_nothing(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    run(fakeroot, env)
    before = os.stat(etc(fakeroot, "debian"))
    again = run(fakeroot, env)
    assert again["changed"] is False and "nothing to do" in str(again["msg"])
    after = os.stat(etc(fakeroot, "debian"))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_vendor_update_rewrites_the_override(fakeroot: Path, env: Env) -> None:
    vendor = install_vendor(fakeroot, "debian")
    run(fakeroot, env)
    updated = distro_text("debian") + ('SUBSYSTEM=="cpu", ACTION=="offline", '
                                       'PROGRAM="/usr/sbin/kdump-config try-reload"\n')
    vendor.write_text(updated)
    result = run(fakeroot, env)
    assert result["changed"] is True
    assert "changed: rebuilt the override" in str(result["msg"])
    assert planner.parse(etc(fakeroot, "debian").read_text()).base == updated
    assert run(fakeroot, env)["changed"] is False


def test_remove_deletes_an_override_kdumpd_created(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "opensuse")
    run(fakeroot, env)
    result = run(fakeroot, env, state="absent")
    assert result["changed"] is True and "deleted the override" in str(result["msg"])
    assert not etc(fakeroot, "opensuse").exists()
    assert run(fakeroot, env, state="absent")["changed"] is False


def test_remove_after_vendor_update_still_deletes_our_override(fakeroot: Path, env: Env) -> None:
    vendor = install_vendor(fakeroot, "debian")
    run(fakeroot, env)
    vendor.write_text(distro_text("debian") + "# updated\n")
    assert run(fakeroot, env, state="absent")["changed"] is True
    assert not etc(fakeroot, "debian").exists()


def test_edited_override_is_kept_and_managed_in_place(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    run(fakeroot, env)
    override = etc(fakeroot, "debian")
    override.write_text(override.read_text().replace(
        'ACTION=="online"', 'ACTION=="online", ENV{ADMIN}=="1"'))
    result = run(fakeroot, env, state="absent")
    assert result["changed"] is True and override.exists()
    assert 'ENV{ADMIN}=="1"' in override.read_text()
    assert planner.BLOCK_BEGIN not in override.read_text()


def test_admin_file_in_etc_is_edited_in_place_and_restored(fakeroot: Path, env: Env) -> None:
    path = etc(fakeroot, "fedora")
    path.write_text(distro_text("fedora"))
    assert run(fakeroot, env)["changed"] is True
    assert run(fakeroot, env, state="absent")["changed"] is True
    assert path.read_text() == distro_text("fedora")


def test_vendor_path_given_explicitly_becomes_an_override(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "fedora")
    result = run(fakeroot, env, path="/usr/lib/udev/rules.d/98-kexec.rules")
    assert result["changed"] is True
    assert etc(fakeroot, "fedora").exists()


def test_explicit_path_outside_rules_dirs_is_edited_in_place(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "custom.rules"
    path.write_text(distro_text("debian"))
    assert run(SLASH, env, path=str(path), check=True)["changed"] is True
    assert path.read_text() == distro_text("debian")


def test_check_mode_writes_nothing_and_does_not_reload(
        fakeroot: Path, env: Env, udevadm: FakeUdevadm) -> None:
    install_vendor(fakeroot, "debian")
    listing = sorted(p.name for p in fakeroot.rglob("*"))
    result = run(fakeroot, env, check=True)
    assert result["changed"] is True and "check mode" in str(result["msg"])
    assert sorted(p.name for p in fakeroot.rglob("*")) == listing
    assert isinstance(result["diff"], dict) and result["diff"]["after"].startswith("# BEGIN")
    assert not udevadm.ran("control")


def test_masked_rules_need_nothing(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    etc(fakeroot, "debian").symlink_to("/dev/null")
    result = run(fakeroot, env)
    assert result["changed"] is False and "masks" in str(result["msg"])
    assert os.readlink(etc(fakeroot, "debian")) == "/dev/null"


def test_malformed_markers_fail_naming_the_line_and_write_nothing(
        fakeroot: Path, env: Env) -> None:
    path = etc(fakeroot, "debian")
    text = planner.BLOCK_BEGIN + "\n" + distro_text("debian")
    path.write_text(text)
    result = run(fakeroot, env)
    assert result["failed"] is True
    assert "line 1:" in str(result["msg"]) and "without a matching END" in str(result["msg"])
    assert path.read_text() == text


def test_json_shape_is_ansible_compatible(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "opensuse")
    etc(fakeroot, "opensuse").write_text(distro_text("opensuse"))
    result = run(fakeroot, env, backup=True)
    assert set(result) >= {"changed", "msg", "path", "diff", "backup_file"}
    assert set(result["diff"]) == {"before", "after", "before_header", "after_header"}  # type: ignore[arg-type]
    assert Path(str(result["backup_file"])).read_text() == distro_text("opensuse")


# -- udevd reload (handler semantics) --------------------------------------------------


def slash_env(tmp_path: Path, udevadm: FakeUdevadm, socket: bool = True) -> Env:
    control = tmp_path / "control"
    if socket:
        control.touch()
    return Env(udev=udev.Udev(udevadm, control_socket=control))


def test_reload_runs_once_after_a_change_only(tmp_path: Path, udevadm: FakeUdevadm) -> None:
    path = tmp_path / "custom.rules"
    path.write_text(distro_text("debian"))
    env = slash_env(tmp_path, udevadm)
    result = run(SLASH, env, path=str(path))
    assert result["changed"] is True and result["udevd"] == "udevd reloaded its rules"
    assert [c for c in udevadm.calls if "control" in c] == [["udevadm", "control", "--reload"]]
    run(SLASH, env, path=str(path))
    assert len([c for c in udevadm.calls if "control" in c]) == 1


def test_no_udevd_means_a_quiet_note(tmp_path: Path, udevadm: FakeUdevadm) -> None:
    path = tmp_path / "custom.rules"
    path.write_text(distro_text("debian"))
    result = run(SLASH, slash_env(tmp_path, udevadm, socket=False), path=str(path))
    assert result["changed"] is True and "no udevd is running" in str(result["udevd"])
    assert not udevadm.ran("control")


def test_failed_reload_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    udevadm = FakeUdevadm(reload_rc=1)
    path = tmp_path / "custom.rules"
    path.write_text(distro_text("debian"))
    result = run(SLASH, slash_env(tmp_path, udevadm), path=str(path))
    assert "failed" not in result and result["changed"] is True
    assert "did not reload" in result["warnings"][0]  # type: ignore[index]


# -- validation ------------------------------------------------------------------------


def test_udevadm_verify_is_used_from_systemd_254(fakeroot: Path, control_socket: Path) -> None:
    udevadm = FakeUdevadm(version="256.7-1")
    env = Env(udev=udev.Udev(udevadm, control_socket=control_socket))
    install_vendor(fakeroot, "debian")
    result = run(fakeroot, env)
    [verify] = [c for c in udevadm.calls if c[1] == "verify"]
    assert verify[:3] == ["udevadm", "verify", "--resolve-names=never"]
    assert "--no-style" in verify and ".kdumpd-" in verify[-1]  # the temp file, before rename
    assert result["validated_with"] == "udevadm verify"


def test_systemd_252_falls_back_to_the_own_check(
        fakeroot: Path, env: Env, udevadm: FakeUdevadm) -> None:
    install_vendor(fakeroot, "debian")
    result = run(fakeroot, env)
    assert not udevadm.ran("verify")
    assert "kdumpd's syntax check" in str(result["validated_with"])


def test_verify_failure_writes_nothing(fakeroot: Path, control_socket: Path) -> None:
    udevadm = FakeUdevadm(version="255", verify_rc=1,
                          verify_err="x.rules:3 Invalid key/value pair, ignoring.")
    env = Env(udev=udev.Udev(udevadm, control_socket=control_socket))
    install_vendor(fakeroot, "debian")
    result = run(fakeroot, env)
    assert result["failed"] is True
    assert "udevadm verify: x.rules:3 Invalid key/value pair" in str(result["msg"])
    assert not etc(fakeroot, "debian").exists()
    assert leftovers(fakeroot / "etc/udev/rules.d") == []


def test_own_check_rejects_a_broken_template(fakeroot: Path, env: Env, template: str) -> None:
    broken = template.replace('TEST=="@HANDOVER@"', 'TEST="@HANDOVER@"')
    install_vendor(fakeroot, "debian")
    result = run(fakeroot, dataclasses.replace(env, template=broken))
    assert result["failed"] is True
    assert "TEST only matches" in str(result["msg"]) and "line 10" in str(result["msg"])
    assert not etc(fakeroot, "debian").exists()


def test_write_fault_is_a_failed_result(fakeroot: Path, env: Env) -> None:
    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = etc(fakeroot, "debian")
    path.write_text(distro_text("debian"))
    hooks = dataclasses.replace(atomic.OsHooks(), write=no_space)
    result = run(fakeroot, dataclasses.replace(env, hooks=hooks))
    assert result["failed"] is True and "No space left on device" in str(result["msg"])
    assert path.read_text() == distro_text("debian")
    assert leftovers(path.parent) == []


def test_several_known_files_are_each_managed(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    install_vendor(fakeroot, "fedora")
    result = run(fakeroot, env)
    assert result["changed"] is True and len(result["results"]) == 2  # type: ignore[arg-type]
    assert isinstance(result["diff"], list)


def test_missing_etc_rules_dir_is_created_for_an_override(tmp_path: Path, env: Env) -> None:
    root = tmp_path / "image"
    (root / "usr/lib/udev/rules.d").mkdir(parents=True)
    install_vendor(root, "debian")
    assert run(root, env)["changed"] is True
    assert etc(root, "debian").is_file()


def test_file_changed_during_the_run_is_not_overwritten(
        fakeroot: Path, control_socket: Path) -> None:
    path = etc(fakeroot, "debian")
    path.write_text(distro_text("debian"))

    class Meddling(udev.Udev):
        def validate(self, text: str, written: set[int], temp: Path) -> str:
            path.write_text("# the admin was faster\n")
            return super().validate(text, written, temp)

    result = run(fakeroot, Env(udev=Meddling(FakeUdevadm(), control_socket=control_socket)))
    assert result["failed"] is True and "changed while kdumpd was working" in str(result["msg"])
    assert path.read_text() == "# the admin was faster\n"
    assert leftovers(path.parent) == []


def test_override_is_deleted_when_the_vendor_file_goes(fakeroot: Path, env: Env) -> None:
    vendor = install_vendor(fakeroot, "debian")
    run(fakeroot, env)
    vendor.unlink()
    result = run(fakeroot, env)
    assert result["changed"] is True and "is gone" in str(result["msg"])
    assert not etc(fakeroot, "debian").exists()


def test_override_is_deleted_when_the_vendor_adopts_the_lines(fakeroot: Path, env: Env) -> None:
    vendor = install_vendor(fakeroot, "opensuse")
    run(fakeroot, env)
    vendor.write_text(distro_text("opensuse").replace(
        "\nSUBSYSTEM==\"memory\", ACTION==\"add|remove\"",
        f'\nSUBSYSTEM=="cpu|memory", TEST=="{HANDOVER}", GOTO="kdump_end"\n'
        'SUBSYSTEM=="memory", ACTION=="add|remove"', 1))
    result = run(fakeroot, env)
    assert result["changed"] is True and "holds the lines itself" in str(result["msg"])
    assert not etc(fakeroot, "opensuse").exists()
    assert run(fakeroot, env)["changed"] is False


def test_vendor_with_every_line_needs_no_override(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "fedora", distro_text("fedora").replace(
        "\nSUBSYSTEM==\"cpu\", ACTION==\"add\"",
        f'\nSUBSYSTEM=="cpu|memory", TEST=="{HANDOVER}", GOTO="kdump_reload_end"\n'
        'SUBSYSTEM=="cpu", ACTION=="add"', 1))
    result = run(fakeroot, env)
    assert result["changed"] is False and "equivalent lines" in str(result["msg"])
    assert not etc(fakeroot, "fedora").exists()


def test_diff_headers_are_plain_paths_like_ansible(fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    created = run(fakeroot, env, check=True)["diff"]
    assert created["before_header"] == "/etc/udev/rules.d/50-kdump-tools.rules (absent)"  # type: ignore[index]
    assert created["after_header"] == "/etc/udev/rules.d/50-kdump-tools.rules"  # type: ignore[index]


def test_verify_failure_names_udevadms_diagnostic_not_its_summary(
        fakeroot: Path, control_socket: Path) -> None:
    # udevadm verify (systemd 254+) logs FILE:LINE diagnostics on stderr and ends with a
    # summary on stdout; the summary's last line says nothing about what is wrong.
    class Verify(FakeUdevadm):
        def __call__(self, argv, timeout):  # type: ignore[no-untyped-def]
            done = super().__call__(argv, timeout)
            if argv[1] == "verify":
                path = argv[-1]
                return done.__class__(
                    1, "\n1 udev rules files have been checked.\n  Success: 0\n  Fail:    1\n",
                    f"{path}:14 Invalid value for OPTIONS key, ignoring: 'x'\n"
                    f"{path}: udev rules check failed.\n")
            return done

    udevadm = Verify(version="254")
    env = Env(udev=udev.Udev(udevadm, control_socket=control_socket), fadump=lambda: False)
    install_vendor(fakeroot, "debian")
    result = run(fakeroot, env)
    assert result["failed"] is True
    assert ":14 Invalid value for OPTIONS key" in str(result["msg"]), result["msg"]
    assert "Fail" not in str(result["msg"])
    [verify] = [c for c in udevadm.calls if c[1] == "verify"]
    assert "--no-style" in verify  # systemd 254 has it; a vendor's style must not block us


def test_concurrent_installs_take_turns_and_lose_nothing(fakeroot: Path, env: Env) -> None:
    """Two runs on the same file (in 72 of 100 runs of 0.1.0 one change was lost): with
    the directory lock each sees the other's result; exactly one reports a change."""
    import threading

    install_vendor(fakeroot, "debian")
    results: list[dict[str, object]] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        barrier.wait()
        results.append(run(fakeroot, env))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(bool(r["changed"]) for r in results) == [False, False, False, True]
    assert not any(r.get("failed") for r in results), [r["msg"] for r in results]
    assert leftovers(fakeroot / "etc/udev/rules.d") == []


def test_a_temp_file_left_by_a_killed_run_is_removed_by_the_next(
        fakeroot: Path, env: Env) -> None:
    install_vendor(fakeroot, "debian")
    stale = atomic.temp_name(etc(fakeroot, "debian"), "killed01")
    stale.write_bytes(b"half a rules file")
    result = run(fakeroot, env)
    assert not stale.exists()
    assert any("interrupted run" in w for w in result["warnings"])  # type: ignore[union-attr]


def test_a_fifo_where_the_rules_file_should_be_fails_at_once(fakeroot: Path, env: Env) -> None:
    """0.1.0 hung on this (and on a FIFO named with --path)."""
    fifo = etc(fakeroot, "debian")
    os.mkfifo(fifo)
    for path in ("auto", "/etc/udev/rules.d/50-kdump-tools.rules"):
        result = run(fakeroot, env, path=path)
        assert result["failed"] is True
        assert "not a regular file" in str(result["msg"])


def test_a_huge_rules_file_is_refused_unread(fakeroot: Path, env: Env) -> None:
    path = etc(fakeroot, "debian")
    with path.open("wb") as handle:
        handle.truncate(manage.RULES_LIMIT + 1)
    result = run(fakeroot, env)
    assert result["failed"] is True
    assert "not a udev rules file" in str(result["msg"]) and "\n" not in str(result["msg"])
    assert path.stat().st_size == manage.RULES_LIMIT + 1
