"""The command line as a user meets it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kdumpd.fakes import fakesysfs


def kdumpd(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    return subprocess.run([sys.executable, "-m", "kdumpd", *args], capture_output=True,
                          text=True, timeout=60, check=check, env=env)


def write_config(tmp_path: Path, root: Path, extra: str = "", fake: str = "") -> Path:
    path = tmp_path / "kdumpd.toml"
    path.write_text(
        f'[sysfs]\nroot = "{root}"\n[state]\ndir = "{root}/state"\n'
        f'control = "{root}/control"\n'
        f'[reload]\nbackend = "fake"\nretries = 0\n'
        f'[reload.fake]\nlog = "{root}/fake.log"\n{fake}\n[rule]\nstate = "ignore"\n{extra}'
    )
    path.chmod(0o644)
    return path


def test_version() -> None:
    done = kdumpd("--version", check=True)
    assert done.stdout.strip().startswith("kdumpd 0.")


def test_help_lists_commands_and_exit_statuses() -> None:
    out = kdumpd("--help", check=True).stdout
    for word in ("run", "status", "reload", "config", "rule", "demo", "78"):
        assert word in out


def test_config_error_is_one_line_exit_78_no_traceback(tmp_path: Path, root: Path) -> None:
    path = write_config(tmp_path, root, "[events]\nquiet_ms = \"fast\"\n")
    done = kdumpd("config", "check", "--config", str(path))
    assert done.returncode == 78
    assert done.stderr.count("\n") == 1
    assert "events.quiet_ms: expected an integer, got a string" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_check_ok(tmp_path: Path, root: Path) -> None:
    done = kdumpd("config", "check", "--config", str(write_config(tmp_path, root)))
    assert done.returncode == 0
    assert "OK (backend fake" in done.stdout


def test_usage_error_exits_2() -> None:
    assert kdumpd("frobnicate").returncode == 2


def test_status_text_and_json(tmp_path: Path, root: Path) -> None:
    (root / "sys/kernel/kexec_crash_size").write_text("1\n")
    (root / "sys/devices/system/cpu/crash_hotplug").write_text("1\n")
    (root / "sys/devices/system/memory/crash_hotplug").unlink()
    path = write_config(tmp_path, root)
    text = kdumpd("status", "--config", str(path), check=True).stdout
    assert "crash kernel: loaded" in text
    assert "cpu:    crash_hotplug=1; kernel keeps the crash kernel current: yes" in text
    assert "memory: crash_hotplug=absent; kernel keeps the crash kernel current: no" in text
    assert "backend: fake" in text
    data = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)
    assert data["schema_version"] == 4
    assert data["crash_hotplug"] == {"cpu": 1, "memory": None}
    assert data["sysfs_problems"] == {"memory/crash_hotplug": "absent"}
    assert data["kernel_keeps_current"] == {"cpu": True, "memory": False}
    assert data["kexec_crash_loaded"] == 1
    # From /proc/iomem's "Crash kernel" range, not /sys/kernel/kexec_crash_size (whose read
    # takes the kexec lock): the fake tree's attribute says something else on purpose.
    assert data["kexec_crash_size"] == 256 * 2**20
    assert data["crash_memory_reserved"] is True
    assert data["crash_elfcorehdr_size"] == 4096
    assert data["backend"] == "fake"
    assert data["kernel_skips"] is None  # a test tree: the host's kernel log is not its own
    assert "kernel log: cannot be read ([sysfs] root is" in text
    assert data["crash_hotplug_from"] == {"source": "read-now", "read_at": None, "why": None}
    assert "crash_hotplug: read now" in text and data["daemon"] is None
    assert data["header"]["verdict"] == "unknown"  # the fake tree's kcore is a placeholder
    assert "loaded header: unknown (/proc/kcore is not a little-endian ELF64 file)" in text
    assert_schema(data)


# `kdumpd status --json`, schema 4 (3: `image` typed, IMAGE_SCHEMA; 4: every `*_from` an
# object, ORIGIN_KEYS and HOTPLUG_ORIGIN_KEYS): every key and its JSON
# type(s). A change here is a
# change of the documented interface (README, "status --json"): bump SCHEMA_VERSION when
# a key changes meaning or type.
STATUS_SCHEMA: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "kexec_crash_loaded": (int, type(None)),
    "kexec_crash_size": (int, type(None)),
    "crash_memory_reserved": (bool,),
    "crash_elfcorehdr_size": (int, type(None)),
    "crash_hotplug": (dict,),
    "sysfs_problems": (dict,),
    "kernel_keeps_current": (dict,),
    "crash_kernel_loaded": (bool,),
    "backend": (str,),
    "backend_action": (str,),
    "owed": (bool,),
    "recorded_hardware": (str, type(None)),
    "recorded_fingerprint": (str, type(None)),
    "current_hardware": (str, type(None)),
    "current_fingerprint": (str, type(None)),
    "hardware_agrees": (bool, type(None)),
    "image": (dict, type(None)),
    "kernel_skips": (int, type(None)),
    "last_load": (dict, type(None)),
    "exposure": (dict, type(None)),
    "capacity": (dict, type(None)),
    "crash_hotplug_from": (dict,),
    "header": (dict, type(None)),
    "daemon": (dict, type(None)),
    "metrics": (dict, type(None)),
    "loaded_cmdline_warning": (str, type(None)),
    "architecture": (dict, type(None)),
}


NONE = type(None)
IMAGE_SCHEMA: dict[str, tuple[type, ...]] = {
    "family": (str, NONE), "kernel": (str, NONE), "kernel_from": (dict, NONE),
    "initrd": (str, NONE), "initrd_from": (dict, NONE), "append": (str, NONE),
    "append_from": (dict, NONE), "initrd_required": (bool, NONE), "mode": (str, NONE),
    "added": (list,), "removed": (list,), "changed_why": (str, NONE), "missing": (list,),
    "kexec_args": (dict, NONE), "not_derived": (list,), "warning": (str, NONE),
    "error": (str, NONE),
}


ORIGIN_SOURCES = ("setting", "kdumpd-config", "running-kernel", "kdump-config", "kdumpctl",
                  "load.sh", "kdumpd")


def assert_origin(origin: object) -> None:
    """An image part's origin: {source, file, key, inputs} (origin.py), or null."""
    if origin is None:
        return
    assert isinstance(origin, dict) and sorted(origin) == ["file", "inputs", "key", "source"]
    assert origin["source"] in ORIGIN_SOURCES, origin
    assert (origin["file"] is not None) == (origin["source"] == "setting"), origin
    assert (origin["key"] is not None) == (origin["source"] in ("setting", "kdumpd-config"))
    for item in origin["inputs"]:
        assert sorted(item) == ["file", "key"] and item["file"].startswith("/"), item
        assert item["key"] is None or isinstance(item["key"], str), item


def assert_schema(data: dict[str, object]) -> None:
    assert sorted(data) == sorted(STATUS_SCHEMA)
    for key, types in STATUS_SCHEMA.items():
        assert isinstance(data[key], types), (key, data[key])
        assert not isinstance(data[key], bool) or bool in types, key  # bool is an int
    image = data["image"]
    if isinstance(image, dict):  # schema 3: typed, never display text
        assert sorted(image) == sorted(IMAGE_SCHEMA)
        for key, types in IMAGE_SCHEMA.items():
            assert isinstance(image[key], types), (key, image[key])
        for key in ("added", "removed", "missing"):
            assert all(isinstance(word, str) for word in image[key]), key
        for key in ("kernel_from", "initrd_from", "append_from"):
            assert_origin(image[key])
        assert (image["initrd_from"] is None) == (image["initrd"] is None), image
        if isinstance(image["kexec_args"], dict):
            assert_origin(image["kexec_args"]["from"])
        if image["error"] is None:
            assert isinstance(image["initrd_required"], bool)
            assert image["initrd"] is None or image["initrd"].startswith("/")
            assert image["kernel"] is not None and image["kernel"].startswith("/")
    hotplug_from = data["crash_hotplug_from"]
    assert isinstance(hotplug_from, dict)
    assert sorted(hotplug_from) == ["read_at", "source", "why"]
    assert hotplug_from["source"] in ("read-now", "daemon", "not-read")
    assert (hotplug_from["why"] is not None) == (hotplug_from["source"] == "not-read")
    for value in data["crash_hotplug"].values():  # type: ignore[attr-defined]
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))


@pytest.mark.skipif(os.geteuid() != 0, reason="the metrics directory must be root's")
def test_status_says_where_metrics_go_and_who_owns_the_directory(tmp_path: Path,
                                                                  root: Path) -> None:
    directory = tmp_path / "textfile"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    path = write_config(tmp_path, root, f'[metrics]\ntextfile_dir = "{directory}"\n')
    text = kdumpd("status", "--config", str(path), check=True).stdout
    assert (f"metrics: {directory}/kdumpd.prom: NOT written: {directory} is group- or "
            "world-writable (mode 0777); refusing it") in text.splitlines()
    directory.chmod(0o755)
    data = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)
    assert data["metrics"] == {"file": f"{directory}/kdumpd.prom",
                               "directory_owner_uid": 0, "problem": None}
    off = write_config(tmp_path, root, '[metrics]\ntextfile_dir = ""\n')
    assert "metrics: off ([metrics] textfile_dir)" in kdumpd("status", "--config",
                                                             str(off)).stdout


def test_status_shows_a_missing_crash_kernel(tmp_path: Path, root: Path) -> None:
    fakesysfs.build(root, crash_loaded="0")
    text = kdumpd("status", "--config", str(write_config(tmp_path, root)), check=True).stdout
    assert "crash kernel: NOT loaded" in text
    assert "no memory is reserved" not in text
    assert "no crash kernel loaded to describe it" in text
    assert "agrees with" not in text


def test_status_names_crashkernel_when_nothing_is_reserved(tmp_path: Path, root: Path) -> None:
    fakesysfs.build(root, crash_loaded="0")
    (root / "proc/iomem").write_text("00001000-0009fbff : System RAM\n")
    path = write_config(tmp_path, root)
    text = kdumpd("status", "--config", str(path), check=True).stdout
    assert "no memory is reserved for a crash kernel" in text
    assert "boot with crashkernel=" in text
    assert "capacity:" not in text  # nothing to compare: the line above says what to do
    data = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)
    assert (data["crash_memory_reserved"], data["kexec_crash_size"]) == (False, None)
    assert data["hardware_agrees"] is None


def test_reload_runs_the_backend_once(tmp_path: Path, root: Path) -> None:
    done = kdumpd("reload", "--config", str(write_config(tmp_path, root)))
    assert done.returncode == 0, done.stderr
    ops = [json.loads(x)["op"] for x in (root / "fake.log").read_text().splitlines()]
    assert ops == ["load"]


def test_reload_dry_run_writes_nothing(tmp_path: Path, root: Path) -> None:
    done = kdumpd("reload", "--dry-run", "--config", str(write_config(tmp_path, root)))
    assert done.returncode == 0
    assert "would reload" in done.stderr
    assert not (root / "fake.log").exists()


def test_reload_failure_exits_1(tmp_path: Path, root: Path) -> None:
    path = write_config(tmp_path, root, fake="fail = 5")
    done = kdumpd("reload", "--config", str(path))
    assert done.returncode == 1
    assert "reload failed" in done.stderr
    assert "no crash kernel is loaded" in done.stderr


def test_demo_shows_one_reload_then_none() -> None:
    out = kdumpd("demo", check=True).stdout.splitlines()
    assert out[0].startswith("crash_hotplug=0") and out[0].endswith("-> 1 reload")
    assert out[1].startswith("crash_hotplug=1") and out[1].endswith("-> 0 reloads")


@pytest.mark.skipif(os.geteuid() != 0, reason="the ownership check applies to root only")
def test_world_writable_config_is_refused_as_root(tmp_path: Path, root: Path) -> None:
    path = write_config(tmp_path, root)
    path.chmod(0o666)
    done = kdumpd("status", "--config", str(path))
    assert done.returncode == 78
    assert f"{path}: config file is group- or world-writable (mode 0666)" in done.stderr


def test_status_shows_the_debt_the_hardware_and_the_last_load(tmp_path: Path, root: Path) -> None:
    from kdumpd.state import FileStore, LastLoad, State

    boot = root / "proc/sys/kernel/random/boot_id"
    boot.parent.mkdir(parents=True)
    boot.write_text("b-1\n")
    path = write_config(tmp_path, root)
    text = kdumpd("status", "--config", str(path), check=True).stdout
    assert "nothing recorded for this boot" in text
    FileStore(root / "state", "b-1").save(State(
        "b-1", owed=True, fingerprint="0000", hardware="cpus 0 online of 0",
        last_load=LastLoad(at=0.0, how="kexec load (file)", ok=False, duration_s=1.5)))
    text = kdumpd("status", "--config", str(path), check=True).stdout
    assert "OWES a crash kernel" in text
    assert "DIFFERS from what the loaded image was recorded for" in text
    assert "FAILED, 1.50 s, kexec load (file)" in text
    data = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)
    assert data["owed"] is True and data["hardware_agrees"] is False
    assert data["last_load"]["how"] == "kexec load (file)"
    assert_schema(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="a run without root stops before the lock (77)")
def test_a_second_run_is_refused_and_reload_is_handed_to_the_owner(
    tmp_path: Path, root: Path
) -> None:
    from kdumpd import lock
    from kdumpd.control_socket import Answer, ControlServer, reply

    path = write_config(tmp_path, root)
    fd = lock.acquire(root / "state")  # stands in for a running daemon: this test's pid
    try:
        done = kdumpd("run", "--config", str(path))
        assert done.returncode == 75
        assert f"kdumpd run (pid {os.getpid()}) owns reloads" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        # The owner does not answer on its control socket: refused, never signalled.
        done = kdumpd("reload", "--config", str(path))
        assert done.returncode == 75, done.stderr
        assert f"not answering on {root}/control" in done.stderr
        # The owner answers: its decision and outcome are printed, nothing reloads here.
        server = ControlServer(root / "control")
        server.open()
        asked: list[int] = []

        def answer() -> None:
            while not asked:
                request = server.accept()
                if request is not None:
                    asked.append(request[1])
                    reply(request[0], Answer(True, "memory: crash_hotplug=0",
                                             detail="reloaded in 0.12 s"))
        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        done = kdumpd("reload", "--config", str(path))
        thread.join(10)
        server.close()
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "reload: memory: crash_hotplug=0 (decided by the running kdumpd)",
            "reloaded in 0.12 s"]
        assert len(asked) == 1 and asked[0] != os.getpid()  # the CLI's own pid, by SO_PEERCRED
        assert not (root / "fake.log").exists()  # no reload beside the owner
    finally:
        lock.release(fd)


def test_run_without_root_refuses_at_start_with_77(capsys: pytest.CaptureFixture[str]) -> None:
    from kdumpd import cli

    args = cli.build_parser().parse_args(["run", "--config", "/nonexistent.toml"])
    assert cli.cmd_run(args, euid=1000) == 77
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "needs root" in err


def test_a_named_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    done = kdumpd("config", "check", "--config", str(tmp_path / "typo.toml"))
    assert done.returncode == 78
    assert "no such file" in done.stderr


def test_config_check_refuses_a_handover_that_run_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_text('[rule]\nhandover = "/run/kdumpd/a\\"b"\n')
    path.chmod(0o644)
    done = kdumpd("config", "check", "--config", str(path))
    assert done.returncode == 78
    assert "rule.handover: must not contain" in done.stderr


def test_status_escapes_control_characters_from_sysfs(tmp_path: Path, root: Path) -> None:
    (root / "sys/devices/system/cpu/crash_hotplug").write_text("\x1b[31mred\x07\r\n")
    text = kdumpd("status", "--config", str(write_config(tmp_path, root)), check=True).stdout
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "\\x1b[31mred\\x07" in text


def test_reload_beside_another_reload_is_refused_not_signalled(
    tmp_path: Path, root: Path
) -> None:
    from kdumpd import lock

    path = write_config(tmp_path, root)
    fd = lock.acquire(root / "state", "reload")  # another `kdumpd reload`: no handler
    try:
        done = kdumpd("reload", "--config", str(path))
    finally:
        lock.release(fd)
    assert done.returncode == 75
    assert "kdumpd reload (pid" in done.stderr
    assert not (root / "fake.log").exists()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the hazard is ACPI memory hotplug")
def test_kdumpds_load_keeps_hot_added_memory_out_of_the_dump_kernel_and_says_so(
    tmp_path: Path, root: Path,
) -> None:
    fixtures = Path(__file__).parents[1] / "fixtures" / "distro"
    for relative, text in {
        "etc/default/kdump-tools": (fixtures / "debian/kdump-tools").read_text(),
        "proc/cmdline": "root=/dev/vda ro memhp_default_state=online_movable\n",
        "sys/bus/acpi/devices/PNP0C80:00/hid": "PNP0C80\n",  # a DIMM slot
    }.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    path = write_config(tmp_path, root)
    path.write_text(path.read_text().replace('backend = "fake"', 'backend = "kexec"'))

    text = kdumpd("status", "--config", str(path), check=True).stdout
    data = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)

    assert data["image"]["warning"] is None, data["image"]
    append = data["image"]["append"].split()
    assert "acpi_no_memhotplug" in append and "memhp_default_state=online_movable" not in append
    assert data["image"]["added"] == ["acpi_no_memhotplug"]
    assert data["image"]["removed"] == ["memhp_default_state=online_movable"]
    assert data["image"]["changed_why"].startswith("x86 with ACPI memory slots")
    assert "  added: acpi_no_memhotplug (" in text
    # kdump-tools' links were never made in this root: said, not shown as fine.
    assert data["image"]["missing"] == ["kernel /var/lib/kdump/vmlinuz",
                                        "initrd /var/lib/kdump/initrd.img"]
    assert ("  missing: kernel /var/lib/kdump/vmlinuz, initrd /var/lib/kdump/initrd.img: "
            "a reload cannot load this image") in text
    defaults = "/etc/default/kdump-tools"
    assert data["image"]["kexec_args"] == {
        "kept": [], "dropped": [], "mode": None, "note": None,
        "from": {"source": "setting", "file": defaults, "key": "KDUMP_KEXEC_ARGS",
                 "inputs": []}}
    assert "  kexec args: none kept (/etc/default/kdump-tools (KDUMP_KEXEC_ARGS))" in text
    # Where each part came from: typed, the file and key (schema 4).
    assert data["image"]["kernel_from"] == {"source": "setting", "file": defaults,
                                            "key": "KDUMP_KERNEL", "inputs": []}
    assert data["image"]["initrd_from"]["key"] == "KDUMP_INITRD"
    # kdump-config's own default append is kdumpd's copy here: no kdump-config in the root.
    assert data["image"]["append_from"] == {
        "source": "kdump-config", "file": None, "key": None,
        "inputs": [{"file": "/proc/cmdline", "key": None}]}
    assert "  kernel: /var/lib/kdump/vmlinuz (/etc/default/kdump-tools (KDUMP_KERNEL))" in text
    assert (f"  append: {data['image']['append']} (kdump-config from /proc/cmdline)"
            in text.splitlines())
    assert_schema(data)

    # Turned off: Debian's own command line, and the warning names both ways to fix it.
    path.write_text(path.read_text().replace('backend = "kexec"',
                                             'backend = "kexec"\ngrowth_safe = false'))
    text = kdumpd("status", "--config", str(path), check=True).stdout
    off = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)
    assert ("  warning: the dump kernel's command line lacks acpi_no_memhotplug, and it has "
            "memhp_default_state=online_movable") in text
    assert off["image"]["warning"].endswith(
        "add acpi_no_memhotplug to KDUMP_CMDLINE_APPEND in /etc/default/kdump-tools; "
        "or set [reload] growth_safe = true")
    assert off["image"]["added"] == [] and off["image"]["removed"] == []
    # The same image reloaded by kdump-config: kdumpd cannot change its command line.
    path.write_text(path.read_text().replace('backend = "kexec"', 'backend = "kdump-config"'))
    tool = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)
    assert tool["image"]["warning"].startswith(
        "the dump kernel's command line lacks acpi_no_memhotplug")
    assert tool["image"]["warning"].endswith("adds it by itself")
    assert tool["image"]["mode"] is None and tool["image"]["kexec_args"] is None


def test_config_check_refuses_what_every_load_would_refuse_and_warns_of_the_rest(
    tmp_path: Path,
) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not a bzImage: the default command-line size applies")
    kernel.chmod(0o644)
    path = tmp_path / "kdumpd.toml"
    path.write_text(f'[reload]\nbackend = "kexec"\nkernel = "{kernel}"\n'
                    f'append = "{"x" * 200_000}"\n')
    path.chmod(0o644)
    done = kdumpd("config", "check", "--config", str(path))
    assert done.returncode == 78, done.stderr
    assert "a reload now would fail before loading: reload.append: the crash kernel's " \
           "command line is 200001 bytes" in done.stderr
    # A kernel not installed yet is the machine's state, not the settings': a warning.
    path.write_text(f'[reload]\nbackend = "kexec"\nkernel = "{tmp_path}/none"\n'
                    'append = "root=/dev/vda"\n')
    done = kdumpd("config", "check", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert "warning: a reload now would fail before loading: kernel" in done.stderr
    assert done.stdout.endswith("OK (backend kexec, events auto, quiet 50 ms, max delay "
                                "3000 ms)\n")


def test_config_check_lists_every_problem_of_the_settings_not_only_the_first(
        tmp_path: Path) -> None:
    path = tmp_path / "kdumpd.toml"
    # The attack round's case: a 70 000-character append while the kernel is missing.
    path.write_text(f'[reload]\nbackend = "kexec"\nkernel = "{tmp_path}/none"\n'
                    f'append = "{"x" * 70_000}"\n')
    path.chmod(0o644)
    done = kdumpd("config", "check", "--config", str(path))
    assert done.returncode == 78, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "warning: a reload now would fail before loading: kernel" in lines[0]
    assert "reload.append: the crash kernel's command line is 70001 bytes" in lines[1]
    # Several wrong keys: each named on its own line.
    path.write_text('[events]\nquiet_ms = "soon"\nmax_delay_ms = -1\ncolour = 1\n'
                    '[reload]\nretries = true\n')
    done = kdumpd("config", "check", "--config", str(path))
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    for key in ("events.colour", "events.quiet_ms", "events.max_delay_ms", "reload.retries"):
        assert sum(key in line for line in lines) == 1, (key, lines)
    # Any other command stops at the first, in one line that says there are more.
    done = kdumpd("status", "--config", str(path))
    assert done.returncode == 78
    assert len(done.stderr.strip().splitlines()) == 1
    assert "(and 3 more problem(s): `kdumpd config check` lists them)" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the state directory is vetted as root")
def test_a_state_directory_others_can_write_is_refused_with_78(tmp_path: Path,
                                                              root: Path) -> None:
    path = write_config(tmp_path, root)
    (root / "state").mkdir(exist_ok=True)
    (root / "state").chmod(0o777)  # anyone could plant "owed": false or a lock
    for command in (["status"], ["reload"], ["run"]):
        done = kdumpd(*command, "--config", str(path))
        assert done.returncode == 78, (command, done.stderr)
        assert "state.dir" in done.stderr and "refusing it" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (root / "fake.log").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the control directory is vetted as root")
def test_a_control_socket_in_a_directory_others_can_write_is_refused_with_78(
        tmp_path: Path, root: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # a user could bind a forged socket there first
    path = write_config(tmp_path, root)
    path.write_text(path.read_text().replace(f'control = "{root}/control"',
                                             f'control = "{shared}/control"'))
    for command in (["reload"], ["status"], ["run"]):
        done = kdumpd(*command, "--config", str(path))
        assert done.returncode == 78, (command, done.stderr)
        assert "state.control" in done.stderr and "refusing it" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (root / "fake.log").exists()


def test_reload_without_root_refuses_at_start_with_77(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from kdumpd import cli

    path = tmp_path / "kdumpd.toml"
    path.write_text('[reload]\nbackend = "kexec"\n')
    path.chmod(0o644)
    args = cli.build_parser().parse_args(["reload", "--config", str(path)])
    assert cli.cmd_reload(args, euid=1000) == 77
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "needs root" in err


def test_an_image_that_cannot_be_read_is_typed_too(tmp_path: Path, root: Path) -> None:
    (root / "etc/default").mkdir(parents=True, exist_ok=True)
    (root / "etc/default/kdump-tools").write_text('KDUMP_CMDLINE="$(cat /x)"\n')
    path = write_config(tmp_path, root)
    path.write_text(path.read_text().replace('backend = "fake"', 'backend = "kexec"'))
    data = json.loads(kdumpd("status", "--config", str(path), "--json", check=True).stdout)
    assert_schema(data)
    assert data["image"]["error"].startswith("/etc/default/kdump-tools:1: KDUMP_CMDLINE needs")
    assert data["image"]["kernel"] is None and data["image"]["missing"] == []
    text = kdumpd("status", "--config", str(path), check=True).stdout
    assert "  error: /etc/default/kdump-tools:1: KDUMP_CMDLINE needs the shell" in text


def test_run_dry_run_serves_through_the_daemon_loop_and_writes_nothing(
        tmp_path: Path, root: Path) -> None:
    # `kdumpd run --dry-run` end to end: the composition root, Daemon.run on the real
    # kernel event socket, SIGTERM; nothing loaded, saved, listened on or handed over.
    (root / "kmsg").write_text("", encoding="utf-8")
    path = write_config(tmp_path, root, extra=(
        f'[events]\nsource = "kernel"\nkernel_log = "{root}/kmsg"\n'))
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    process = subprocess.Popen([sys.executable, "-m", "kdumpd", "run", "--dry-run",
                                "--config", str(path)], stderr=subprocess.PIPE, text=True,
                               env=env)
    assert process.stderr is not None
    seen: list[str] = []
    try:
        for line in process.stderr:  # ends if kdumpd exits before serving
            seen.append(line)
            if "listening for cpu and memory events" in line:
                process.send_signal(signal.SIGTERM)
                break
        assert process.wait(timeout=60) == 0, "".join(seen)
    finally:
        process.kill()
    seen.extend(process.stderr.read().splitlines(keepends=True))
    text = "".join(seen)
    assert "dry run: nothing is reloaded or written" in text
    assert "stopping (SIGTERM)" in text
    assert not (root / "fake.log").exists()
    assert not (root / "state" / "state.json").exists()
    assert not (root / "control").exists()
