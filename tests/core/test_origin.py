"""Where each part of the crash image came from: typed for `status --json`, a phrase for
the text output, the one from the other."""

from __future__ import annotations

import json

import pytest

from kdumpd.backends.distro import Origin, Setting, origin


@pytest.mark.parametrize(("value", "phrase"), [
    (Origin.setting("/etc/default/kdump-tools", "KDUMP_KERNEL"),
     "/etc/default/kdump-tools (KDUMP_KERNEL)"),
    (Origin.own("reload.append"), "kdumpd's reload.append"),
    (Origin("running-kernel"), "the running kernel's"),
    (Origin("load.sh"), "as load.sh finds it"),
    (Origin.tool("kdump-config", Setting("/proc/cmdline"),
                 Setting("/usr/sbin/kdump-config", "KDUMP_CMDLINE_APPEND")),
     "kdump-config from /proc/cmdline, /usr/sbin/kdump-config (KDUMP_CMDLINE_APPEND)"),
    (Origin.tool("kdumpd", Setting("/proc/cmdline")), "kdumpd from /proc/cmdline"),
])
def test_the_json_object_and_the_phrase_agree(value: Origin, phrase: str) -> None:
    typed = json.loads(json.dumps(value.as_dict()))  # what status --json prints
    assert sorted(typed) == ["file", "inputs", "key", "source"]
    assert value.text() == origin.text(typed) == phrase


def test_only_named_sources_exist_and_none_is_null() -> None:
    with pytest.raises(ValueError, match="unknown origin source 'the running kernel'"):
        Origin("the running kernel")
    assert origin.text(None) == "none"
    assert set(origin.SOURCES) == {"setting", "kdumpd-config", "running-kernel",
                                   "kdump-config", "kdumpctl", "load.sh", "kdumpd"}
