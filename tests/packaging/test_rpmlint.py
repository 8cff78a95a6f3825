"""rpmlint 2.x (PyPI, on Debian's python3-rpm) with Fedora's configuration: every tag it
still reports on the spec and both RPMs is justified in docs/packaging.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO, build, need_root, need_tool, unavailable

pytestmark = pytest.mark.packaging

CONFIG = REPO / "packaging/rpm/rpmlint-fedora"


@pytest.fixture(scope="module")
def rpmlint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_root()
    need_tool("checkbashisms", "devscripts")  # rpmlint's BashismsCheck runs it
    need_tool("rpm", "rpm")
    # python3-rpm for rpmlint itself; pyenchant and an English dictionary for its spelling
    # check, which Fedora's rpmlint runs too.
    subprocess.run([str(REPO / "tools/ensure-apt"), "python3-rpm", "python3-enchant",
                    "hunspell-en-us"], check=True, timeout=900, stdout=sys.stderr)
    venv = tmp_path_factory.mktemp("rpmlint")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    done = subprocess.run([str(venv / "bin/pip"), "install", "-q", "rpmlint>=2,<3"],
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        unavailable(f"pip install rpmlint failed: {done.stderr[-500:]}")
    return venv / "bin/rpmlint"


def test_every_remaining_rpmlint_tag_is_justified(rpmlint: Path) -> None:
    binary = build("build-rpm", "rpm/kdumpd-*.noarch.rpm")
    source = next(binary.parent.glob("kdumpd-*.src.rpm"))
    done = subprocess.run([str(rpmlint), "-c", str(CONFIG), str(binary), str(source),
                           str(REPO / "packaging/rpm/kdumpd.spec")],
                          capture_output=True, text=True, timeout=600, check=False)
    report = done.stdout + done.stderr
    assert "packages and 1 specfiles checked" in report, report
    tags = set(re.findall(r"^kdumpd\S*: [EW]: (\S+)", report, flags=re.MULTILINE))
    assert "unable to init enchant" not in report  # the spelling check ran
    section = (REPO / "docs/packaging.md").read_text().split("### rpmlint")[1]
    assert {tag for tag in tags if f"`{tag}`" not in section} == set(), report
