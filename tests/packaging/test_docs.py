"""Documentation that must follow the build files."""

from __future__ import annotations

import re

from .helpers import REPO


def test_readme_set_up_names_every_package_make_installs() -> None:
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^APT_TEST_DEPS := (.*)$", makefile, flags=re.MULTILINE)
    assert match
    readme = (REPO / "README.md").read_text()
    set_up = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z0-9][a-z0-9.+-]*)`", set_up))

    assert set(match.group(1).split()) <= named, sorted(set(match.group(1).split()) - named)
