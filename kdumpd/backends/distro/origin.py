"""Where a part of the crash image (kernel, initrd, command line, kexec arguments) came
from, typed: ``status --json`` prints it as an object, the text output as a phrase.

The object (``kernel_from``, ``initrd_from``, ``append_from`` and ``kexec_args.from`` in
``status --json``, schema 4) has four keys, always present:

- ``source``: one of :data:`SOURCES`;
- ``file``, ``key``: for ``setting``, the file and the setting the value is, as written
  there; for ``kdumpd-config``, ``key`` is kdumpd's own key (``reload.kernel``, ...) and
  ``file`` null (the configuration kdumpd runs with: ``--config``, by default
  /etc/kdumpd/kdumpd.toml); null for the others;
- ``inputs``: for a value a distribution's tool computes, what it computed it from: a
  list of ``{"file", "key"}`` (``key`` null for a whole file such as /proc/cmdline), only
  the settings that are set; empty otherwise.

A part that does not exist (no initrd) has no origin: ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Each source and what it means (docs: README "status --json", kdumpd(8)).
SOURCES = {
    "setting": "the setting key in file, as written",
    "kdumpd-config": "kdumpd's own [reload] key, which wins over the distribution's",
    "running-kernel": "the running kernel's image or initrd (/boot/vmlinuz-<release>, "
                      "/boot/initrd.img-<release>)",
    "kdump-config": "what Debian's kdump-config computes from inputs",
    "kdumpctl": "what Fedora's kdumpctl computes or finds from inputs",
    "load.sh": "what openSUSE's load.sh computes from inputs (its fixed paths)",
    "kdumpd": "kdumpd's own derivation without a distribution kdump: /proc/cmdline "
              "without what a dump kernel must not inherit, plus Fedora's dump-kernel "
              "options",
}


@dataclass(frozen=True)
class Setting:
    """A file, and the setting in it (None: the whole file)."""

    file: str
    key: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "key": self.key}

    def text(self) -> str:
        return f"{self.file} ({self.key})" if self.key else self.file


@dataclass(frozen=True)
class Origin:
    """Where one part of the crash image came from (the module docstring has the keys)."""

    source: str
    file: str | None = None
    key: str | None = None
    inputs: tuple[Setting, ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown origin source {self.source!r}")

    @classmethod
    def setting(cls, file: str, key: str) -> Origin:
        return cls("setting", file, key)

    @classmethod
    def own(cls, key: str) -> Origin:
        """kdumpd's own ``[reload]`` key."""
        return cls("kdumpd-config", None, key)

    @classmethod
    def tool(cls, source: str, *inputs: Setting) -> Origin:
        return cls(source, inputs=inputs)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, "key": self.key,
                "inputs": [setting.as_dict() for setting in self.inputs]}

    def text(self) -> str:
        """One phrase for the text output: ``/etc/default/kdump-tools (KDUMP_KERNEL)``,
        ``kdumpd's reload.append``, ``kdumpctl from /proc/cmdline, ...``."""
        if self.source == "setting":
            return Setting(self.file or "", self.key).text()
        if self.source == "kdumpd-config":
            return f"kdumpd's {self.key}"
        if self.source == "running-kernel":
            return "the running kernel's"
        if self.inputs:
            return f"{self.source} from " + ", ".join(s.text() for s in self.inputs)
        return f"as {self.source} finds it"


def text(origin: dict[str, Any] | None) -> str:
    """:meth:`Origin.text` of ``origin`` as ``status --json`` prints it (None: ``none``)."""
    if origin is None:
        return "none"
    inputs = tuple(Setting(i["file"], i["key"]) for i in origin.get("inputs") or ())
    return Origin(origin["source"], origin.get("file"), origin.get("key"), inputs).text()
