"""Every way reading the configuration fails gives exactly one line: the file, the key when
there is one, and the problem. The message is what the admin sees (exit 78), so it is
pinned word for word."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdumpd import config
from kdumpd.config import ConfigError


def error_of(path: Path, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config.load(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


def assert_file_error(error: ConfigError, path: Path, problem: str) -> None:
    assert (error.key, error.problem, error.path) == ("", problem, path)
    assert str(error) == f"{path}: {problem}"


def test_a_named_file_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert_file_error(error_of(path, must_exist=True), path, "no such file")
    assert config.load(path) == config.Config()  # only the default path may be absent


def test_not_a_regular_file(tmp_path: Path) -> None:
    assert_file_error(error_of(tmp_path), tmp_path, "not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_file_error(error_of(fifo), fifo, "not a regular file")


def test_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "loop.toml"
    path.symlink_to(path)  # ELOOP
    assert_file_error(error_of(path), path, "cannot read: Too many levels of symbolic links")


def test_refused_by_the_callers_check_on_the_opened_file(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text("")
    error = error_of(path, vet=lambda fd: "owned by uid 1000, not root")
    assert_file_error(error, path, "config file is owned by uid 1000, not root: refusing it")


def test_too_large_exactly_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_bytes(b"#" * config.MAX_BYTES)
    assert config.load(path) == config.Config()  # exactly MAX_BYTES is fine
    path.write_bytes(b"#" * (config.MAX_BYTES + 1))
    assert_file_error(error_of(path), path, f"larger than {config.MAX_BYTES} bytes: "
                      "not a kdumpd configuration")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_bytes(b"# ok\n\xff")
    assert_file_error(error_of(path), path, "not UTF-8 at byte 5")


def test_nested_too_deeply(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text("x = " + "[" * 100000 + "]" * 100000 + "\n")
    assert_file_error(error_of(path), path, "not valid TOML: nested too deeply")


def test_a_key_error_keeps_its_key_and_gains_the_path(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[events]\nsource = "radio"\n')
    error = error_of(path)
    assert (error.key, error.path) == ("events.source", path)
    assert str(error) == (f'{path}: events.source: expected one of "auto", "udev", '
                          "\"kernel\", got 'radio'")


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (300, True), (301, False)])
def test_timeout_bounds_are_inclusive(tmp_path: Path, value: int, ok: bool) -> None:
    path = tmp_path / "k.toml"
    path.write_text(f"[reload]\ntimeout_s = {value}\n")
    if ok:
        assert config.load(path).reload.timeout_s == value
    else:
        assert error_of(path).problem == f"expected an integer from 1 to 300, got {value}"


@pytest.mark.parametrize(("toml", "problem"), [
    ("[events]\nquiet_ms = true\n", "expected an integer, got a boolean"),
    ('[events]\nquiet_ms = "1"\n', "expected an integer, got a string"),
    ("[events]\nquiet_ms = 1.5\n", "expected an integer, got a float"),
    ("[events]\nquiet_ms = [1]\n", "expected an integer, got an array"),
    ("[events]\nquiet_ms = {a = 1}\n", "expected an integer, got a table"),
    ("[events]\nquiet_ms = 1979-05-27\n", "expected an integer, got date"),
])
def test_a_wrong_type_is_named(tmp_path: Path, toml: str, problem: str) -> None:
    path = tmp_path / "k.toml"
    path.write_text(toml)
    assert error_of(path).problem == problem


@pytest.mark.parametrize(("toml", "key"), [
    ("[events]\nbogus = 1\n", "events.bogus"),
    ('[events]\n"a b" = 1\n', 'events."a b"'),
    ('[events]\n"ä" = 1\n', 'events."\\u00e4"'),
    ('[events]\n"a-b_c" = 1\n', "events.a-b_c"),
])
def test_unknown_keys_are_named_as_toml_would_write_them(tmp_path: Path, toml: str,
                                                          key: str) -> None:
    path = tmp_path / "k.toml"
    path.write_text(toml)
    assert error_of(path).key == key
