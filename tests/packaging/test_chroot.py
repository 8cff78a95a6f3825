"""tests/packaging/chroot.py's cache: names, keys and what a new base chroot replaces,
with a stand-in for debootstrap (fast; nothing is downloaded)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from . import chroot


@pytest.fixture
def fake_debootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KDUMPD_TEST_CACHE", str(tmp_path / "cache"))
    script = tmp_path / "debootstrap"
    # debootstrap --variant=minbase --include=... SUITE TARGET MIRROR
    script.write_text('#!/bin/sh\nmkdir -p "$4/var/cache/apt/archives"\n'
                      'echo "$2 $3" > "$4/args"\n')
    script.chmod(0o755)
    return script


def test_the_default_key_is_the_one_before_suites_were_parameters() -> None:
    """Existing bookworm caches stay valid: same inputs, same hash, same name."""
    before = json.dumps([chroot.SCRIPT_VERSION, "bookworm", chroot.MIRROR,
                         sorted(chroot.PACKAGES)])
    assert chroot.SUITE == "bookworm"
    assert chroot.cache_key() == hashlib.sha256(before.encode()).hexdigest()[:12]


def test_suites_and_flavours_are_cached_side_by_side(fake_debootstrap: Path) -> None:
    bookworm = chroot.base_chroot(str(fake_debootstrap))
    trixie = chroot.base_chroot(str(fake_debootstrap), suite="trixie")
    minimal = chroot.base_chroot(str(fake_debootstrap), suite="trixie",
                                 packages=chroot.MINIMAL, flavour="minimal")
    assert bookworm.name == f"chroot-bookworm-{chroot.cache_key()}"
    assert trixie.name == f"chroot-trixie-{chroot.cache_key('trixie')}"
    assert minimal.name == f"chroot-trixie-minimal-{chroot.cache_key('trixie', ('make',))}"
    assert (minimal / "args").read_text() == "--include=make trixie\n"
    assert json.loads((trixie / chroot.MARKER).read_text())["suite"] == "trixie"
    for root in (bookworm, trixie, minimal):
        assert (root / chroot.MARKER).exists()
    # Built once: a second call finds it.
    assert chroot.base_chroot("/nonexistent/debootstrap", suite="trixie") == trixie


def test_a_new_key_replaces_only_older_chroots_of_its_own_name(fake_debootstrap: Path) -> None:
    trixie = chroot.base_chroot(str(fake_debootstrap), suite="trixie")
    minimal = chroot.base_chroot(str(fake_debootstrap), suite="trixie",
                                 packages=chroot.MINIMAL, flavour="minimal")
    bookworm = chroot.base_chroot(str(fake_debootstrap))
    newer = chroot.base_chroot(str(fake_debootstrap), suite="trixie",
                               packages=(*chroot.PACKAGES, "less"))
    assert newer != trixie
    assert not trixie.exists()
    assert minimal.exists()
    assert bookworm.exists()
