"""Property tests: arbitrary input gives a result or a clean error, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kdumpd import config
from kdumpd.config import Config, ConfigError
from kdumpd.policy import decide
from kdumpd.sysfs import Sysfs

KEYS = {
    "sysfs": ["root"],
    "events": ["source", "quiet_ms", "max_delay_ms", "receive_buffer_bytes"],
    "reload": ["backend", "kernel", "initrd", "append", "load", "timeout_s", "retries", "fake"],
    "rule": ["state", "path", "root", "handover"],
}
scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["auto", "udev", "kernel", "fake", "kexec", "present", "/", "/x", ""]),
    st.lists(st.integers(), max_size=2),
)
tables = st.dictionaries(
    st.sampled_from(sorted(KEYS)) | st.text(max_size=5),
    st.dictionaries(st.sampled_from(sum(KEYS.values(), [])) | st.text(max_size=5),
                    scalars | st.dictionaries(st.text(max_size=8), scalars, max_size=3),
                    max_size=5) | scalars,
    max_size=4,
)


def to_toml(document: dict[str, object]) -> str:
    import json

    lines = []
    for name, value in document.items():
        key = json.dumps(name)
        if isinstance(value, dict):
            inline = ", ".join(f"{json.dumps(k)} = {literal(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inline} }}")
        else:
            lines.append(f"{key} = {literal(value)}")
    return "\n".join(lines)


def literal(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {literal(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


@settings(max_examples=400, deadline=None)
@given(tables)
def test_any_toml_document_gives_a_config_or_an_error_naming_a_key(document: dict) -> None:
    try:
        result = config.parse(to_toml(document))
    except ConfigError as error:
        assert "\n" not in str(error)
        assert error.key or "TOML" in error.problem
    else:
        assert isinstance(result, Config)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        config.parse(text)
    except ConfigError as error:
        assert "\n" not in str(error)


@settings(max_examples=300, deadline=None)
@given(loaded=st.binary(max_size=40), cpu=st.binary(max_size=40), memory=st.binary(max_size=40))
def test_any_bytes_in_sysfs_give_a_decision(loaded: bytes, cpu: bytes, memory: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for relative, content in (("kernel/kexec_crash_loaded", loaded),
                                  ("devices/system/cpu/crash_hotplug", cpu),
                                  ("devices/system/memory/crash_hotplug", memory)):
            path = root / "sys" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        decision = decide({"cpu", "memory"}, Sysfs(root).snapshot(["cpu", "memory"]))
    assert isinstance(decision.reload, bool)
    assert decision.reason
    assert len(decision.warnings) <= 3
    if loaded.strip() == b"1" and cpu.strip() == b"1" and memory.strip() == b"1":
        assert not decision.reload
    if loaded.strip() == b"1" and (cpu.strip() != b"1" or memory.strip() != b"1"):
        assert decision.reload


@settings(max_examples=200, deadline=None)
@given(iomem=st.binary(max_size=300), zoneinfo=st.binary(max_size=300),
       present=st.binary(max_size=40), online=st.binary(max_size=40))
def test_any_bytes_in_proc_and_sysfs_give_a_hardware_fingerprint(
        iomem: bytes, zoneinfo: bytes, present: bytes, online: bytes) -> None:
    """The fingerprint's inputs are the kernel's, but never trusted to be well-formed."""
    from kdumpd.hardware import read_hardware

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for relative, data in (("proc/iomem", iomem), ("proc/zoneinfo", zoneinfo),
                               ("sys/devices/system/cpu/present", present),
                               ("sys/devices/system/cpu/online", online)):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(data)
        hardware = read_hardware(root)
        assert isinstance(hardware.fingerprint, str) and hardware.fingerprint
        assert isinstance(hardware.summary(), str)


@given(st.text(max_size=80))
def test_present_pages_never_raises_on_any_text(text: str) -> None:
    from kdumpd.hardware import present_pages

    assert present_pages("present " + text) >= -1
