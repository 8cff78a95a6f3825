from __future__ import annotations

from pathlib import Path

import pytest

from kdumpd import config
from kdumpd.config import Config, ConfigError


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert config.load(tmp_path / "absent.toml") == Config()


def test_full_document_is_parsed_into_typed_values() -> None:
    cfg = config.parse(
        """
        [sysfs]
        root = "/tmp/fake"
        [events]
        source = "kernel"
        quiet_ms = 100
        max_delay_ms = 2000
        [reload]
        backend = "fake"
        kernel = "/boot/vmlinuz-test"
        load = "hotplug"
        retries = 0
        [reload.fake]
        log = "/tmp/fake.log"
        delay_ms = 500
        fail = 2
        hotplug_after_load = true
        [rule]
        state = "absent"
        path = "/etc/udev/rules.d/50-kdump-tools.rules"
        """
    )
    assert cfg.sysfs.root == Path("/tmp/fake")
    assert isinstance(cfg.sysfs.root, Path)
    assert cfg.events.source == "kernel"
    assert (cfg.events.quiet_ms, cfg.events.max_delay_ms) == (100, 2000)
    assert cfg.reload.fake.delay_ms == 500
    assert cfg.reload.fake.hotplug_after_load is True
    assert cfg.reload.retries == 0
    assert cfg.rule.state == "absent"
    assert isinstance(cfg.rule.handover, Path)


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[events]\nquiet_ms = -1", "events.quiet_ms", "from 0 to"),
        ("[events]\nquiet_ms = true", "events.quiet_ms", "expected an integer, got a boolean"),
        ("[events]\nquiet_ms = 1.5", "events.quiet_ms", "expected an integer, got a float"),
        ("[events]\nsource = \"netlink\"", "events.source", 'one of "auto", "udev", "kernel"'),
        ("[events]\nfoo = 1", "events.foo", "unknown key"),
        ("[nonsense]\nx = 1", "nonsense", "unknown key"),
        ("events = 3", "events", "expected a table"),
        ("[reload]\nbackend = 3", "reload.backend", "expected a string"),
        ("[reload]\nkernel = \"vmlinuz\"", "reload.kernel", "absolute path"),
        ("[reload.fake]\nhotplug_after_load = 1", "reload.fake.hotplug_after_load", "boolean"),
        ("[reload]\ntimeout_s = 0", "reload.timeout_s", "from 1 to 300"),
        ("[rule]\nstate = \"installed\"", "rule.state", '"present"'),
        ("[events]\nquiet_ms = 5000\nmax_delay_ms = 1000", "events.quiet_ms", "must not exceed"),
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(text)
    assert caught.value.key == key
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_toml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_text("[events\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert str(caught.value).startswith(f"{path}: not valid TOML")
    assert "\n" not in str(caught.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "kdumpd.toml"
    path.write_bytes(b"[events]\nsource = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(path)


def test_explicit_missing_file_is_an_error_when_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "nope.toml", must_exist=True)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_config_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    import os

    from kdumpd.config import load

    path = tmp_path / "kdumpd.toml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")  # reading it would never end
    with pytest.raises(ConfigError, match="not a regular file"):
        load(path)


def test_an_oversized_or_deeply_nested_config_is_one_clear_error(tmp_path: Path) -> None:
    from kdumpd.config import MAX_BYTES, load

    big = tmp_path / "big.toml"
    big.write_text("# x\n" * (MAX_BYTES // 4 + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load(big)
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.parse("a = " + "[" * 100000 + "]" * 100000)


def test_changes_name_every_setting_that_differs() -> None:
    from kdumpd.config import changes

    new = config.parse('[events]\nquiet_ms = 20\n[state]\ndir = "/srv/kdumpd"\n')
    assert changes(Config(), new) == {"events.quiet_ms": (50, 20),
                                      "state.dir": (Path("/var/lib/kdumpd"), Path("/srv/kdumpd"))}


@pytest.mark.parametrize(("text", "message"), [
    ("[events]\nquiet_ms = true", "events.quiet_ms: expected an integer, got a boolean"),
    ("[events]\nquiet_ms = 1.5", "events.quiet_ms: expected an integer, got a float"),
    ("[events]\nquiet_ms = [1]", "events.quiet_ms: expected an integer, got an array"),
    ("[events]\nquiet_ms = {a = 1}", "events.quiet_ms: expected an integer, got a table"),
    ("[events]\nquiet_ms = \"1\"", "events.quiet_ms: expected an integer, got a string"),
    ("[reload.fake]\nhotplug_after_load = 1",
     "reload.fake.hotplug_after_load: expected a boolean, got an integer"),
    ("[reload]\nkernel = 1", "reload.kernel: expected a string, got an integer"),
    ("[rule]\nhandover = 2", "rule.handover: expected a path string, got an integer"),
    ("[reload]\nappend = \"a\\u0000b\"", "reload.append: must not contain NUL characters"),
    ("[reload]\nkernel = \"vmlinuz\"",
     "reload.kernel: expected an absolute path, got 'vmlinuz'"),
    ("[rule]\nhandover = \"/run/a b\\\"\"",
     "rule.handover: must not contain '\"' (it is used in a udev rule), got '/run/a b\"'"),
    ("[events]\nsource = \"netlink\"",
     "events.source: expected one of \"auto\", \"udev\", \"kernel\", got 'netlink'"),
    ("[events]\nmax_delay_ms = 0",
     "events.max_delay_ms: expected an integer from 1 to 3600000, got 0"),
    ("[reload]\ntimeout_s = 301", "reload.timeout_s: expected an integer from 1 to 300, got 301"),
    ("[events]\nkernel_log = \"kmsg\"",
     "events.kernel_log: expected an absolute path, got 'kmsg'"),
    ("[reload]\nverify_header = 1", "reload.verify_header: expected a boolean, got an integer"),
])
def test_config_errors_say_exactly_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(("section", "key", "value"), [
    ("events", "quiet_ms", 0), ("events", "max_delay_ms", 3_600_000),
    ("reload", "timeout_s", 1), ("reload", "timeout_s", 300), ("reload", "kernel", ""),
    ("reload", "retries", 0), ("reload", "retries", 100),
    ("events", "receive_buffer_bytes", 4096), ("events", "receive_buffer_bytes", 1024**3),
    ("events", "kernel_log", "journal"), ("events", "kernel_log", "/run/kmsg"),
])
def test_config_bounds_are_inclusive(section: str, key: str, value: object) -> None:
    toml = f'"{value}"' if isinstance(value, str) else str(value)
    parsed = config.parse(f"[{section}]\n{key} = {toml}")
    assert getattr(getattr(parsed, section), key) == value
    if isinstance(value, int) and not isinstance(value, bool):
        for beyond in (value - 1, value + 1):  # one step out of a bound is refused
            try:
                config.parse(f"[{section}]\n{key} = {beyond}")
            except ConfigError as error:
                assert error.key == f"{section}.{key}"
                return
        raise AssertionError(f"{section}.{key} = {value} is not at a bound")


def test_a_config_error_names_the_file_when_there_is_one(tmp_path: Path) -> None:
    error = ConfigError("events.quiet_ms", "bad", tmp_path / "k.toml")
    assert str(error) == f"{tmp_path / 'k.toml'}: events.quiet_ms: bad"
    assert str(ConfigError("", "bad")) == "bad"
    assert (error.key, error.problem, error.path) == ("events.quiet_ms", "bad",
                                                      tmp_path / "k.toml")


def test_every_problem_of_a_file_is_kept_and_each_names_its_key_and_file() -> None:
    path = Path("/etc/kdumpd/kdumpd.toml")
    with pytest.raises(ConfigError) as raised:
        config.parse('[events]\nsource = "netlink"\nquiet_ms = -1\n'
                     '[reload]\nappend = "a\\u0000b"\n', path)
    error = raised.value
    assert str(error).startswith(f"{path}: events.") and str(error).endswith(
        " (and 2 more problem(s): `kdumpd config check` lists them)")
    each = error.each()
    assert [e.path for e in each] == [path, path, path]
    assert sorted(e.key for e in each) == ["events.quiet_ms", "events.source",
                                           "reload.append"]
    problems = {e.key: e.problem for e in each}
    assert problems["events.source"].startswith('expected one of "auto", ')
    assert problems["reload.append"] == "must not contain NUL characters"
    assert all(not e.more and "more problem" not in str(e) for e in each)
    single = ConfigError("a.b", "wrong")
    assert str(single) == "a.b: wrong" and single.each()[0].key == "a.b"


def test_a_quiet_time_equal_to_the_longest_delay_is_accepted() -> None:
    cfg = config.parse("[events]\nquiet_ms = 3000\nmax_delay_ms = 3000\n")
    assert cfg.events.quiet_ms == cfg.events.max_delay_ms == 3000
    with pytest.raises(ConfigError) as raised:
        config.parse("[events]\nquiet_ms = 3001\nmax_delay_ms = 3000\n")
    assert "quiet_ms" in str(raised.value)


def test_not_toml_is_one_line_without_a_key() -> None:
    with pytest.raises(ConfigError) as raised:
        config.parse("[events\n")
    assert raised.value.key == "" and str(raised.value).startswith("not valid TOML: ")
