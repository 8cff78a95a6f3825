"""Fixtures for the rule tests: the distributions' files, a fake udevadm, a fake root."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kdumpd import atomic
from kdumpd.command import Completed
from kdumpd.rules import manage, snippet, udev

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DISTROS = {
    "fedora": ("98-kexec.rules", "fedora-98-kexec.rules"),
    "debian": ("50-kdump-tools.rules", "debian-50-kdump-tools.rules"),
    "opensuse": ("70-kdump.rules", "opensuse-70-kdump.rules"),
}


def distro_text(distro: str) -> str:
    return (FIXTURES / DISTROS[distro][1]).read_text(encoding="utf-8")


@dataclass
class FakeUdevadm:
    """Answers like udevadm: ``version`` for --version; records every argv."""

    version: str = "252"
    verify_rc: int = 0
    verify_err: str = ""
    reload_rc: int = 0
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], timeout: float) -> Completed:
        assert timeout > 0
        self.calls.append(list(argv))
        if argv[1:] == ["--version"]:
            return Completed(0, self.version + "\n", "")
        if argv[1] == "verify":
            return Completed(self.verify_rc, "", self.verify_err)
        if argv[1:] == ["control", "--reload"]:
            return Completed(self.reload_rc, "", "Failed to reload" if self.reload_rc else "")
        raise AssertionError(f"unexpected command {argv}")

    def ran(self, *words: str) -> bool:
        return any(call[1:1 + len(words)] == list(words) for call in self.calls)


@pytest.fixture
def template() -> str:
    return snippet.template()


@pytest.fixture
def udevadm() -> FakeUdevadm:
    return FakeUdevadm()


@pytest.fixture
def control_socket(tmp_path: Path) -> Path:
    """A stand-in for /run/udev/control: present, so a udevd "runs"."""
    path = tmp_path / "udev-control"
    path.touch()
    return path


@pytest.fixture
def env(udevadm: FakeUdevadm, control_socket: Path) -> manage.Env:
    return manage.Env(udev=udev.Udev(udevadm, control_socket=control_socket),
                      hooks=atomic.OsHooks(), fadump=lambda: False)


@pytest.fixture
def fakeroot(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for directory in ("etc/udev/rules.d", "usr/lib/udev/rules.d"):
        (root / directory).mkdir(parents=True)
    return root


def install_vendor(root: Path, distro: str, text: str | None = None) -> Path:
    name = DISTROS[distro][0]
    path = root / "usr/lib/udev/rules.d" / name
    path.write_text(distro_text(distro) if text is None else text, encoding="utf-8")
    return path


def etc(root: Path, distro: str) -> Path:
    return root / "etc/udev/rules.d" / DISTROS[distro][0]


def leftovers(directory: Path) -> list[str]:
    """Temp files the writer may have left behind."""
    return sorted(p.name for p in directory.iterdir() if ".kdumpd-" in p.name)
