"""The .deb: built by packaging/build-deb (lintian-clean of errors), installed with dpkg
into a Debian bookworm chroot that has only Debian's own Python and libraries, and run
there; systemd-analyze verify (Debian's systemd 252, in the chroot) accepts its unit and
rejects broken copies of it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdumpd import __version__

from . import chroot
from .helpers import REPO, build, need_root, need_tool

pytestmark = pytest.mark.packaging

OUT = REPO / "out" / "deb"
UNIT = "/usr/lib/systemd/system/kdumpd.service"  # not /lib: see debian/rules


@pytest.fixture(scope="module")
def deb() -> Path:
    need_root()
    need_tool("dpkg-buildpackage", "dpkg-dev")
    return build("build-deb", "deb/kdumpd_*_all.deb")


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Path]:
    """A throwaway copy of the cached chroot with the .deb installed by dpkg alone."""
    need_tool("debootstrap", "debootstrap")
    need_tool("unshare", "util-linux")
    with chroot.instance(chroot.base_chroot()) as root:
        shutil.copy(deb, root / "tmp" / deb.name)
        chroot.run(root, ["dpkg", "-i", f"/tmp/{deb.name}"])
        yield root


def verify_problems(root: Path, unit: str) -> str:
    """What systemd-analyze verify says about ``unit`` (empty: accepted, no warnings).

    Its exit status alone is not enough: v252 only warns ("..., ignoring") about many
    mistakes, such as an invalid Type= value, and still exits 0.
    """
    result = chroot.run(root, ["systemd-analyze", "verify", unit], check=False)
    problems = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        problems = f"exit status {result.returncode}\n{problems}"
    return problems


def test_lintian_reports_no_errors(deb: Path) -> None:
    report = (OUT / "lintian.txt").read_text()
    assert not re.findall(r"^E: .*", report, flags=re.MULTILINE)


def test_lintian_warnings_are_documented(deb: Path) -> None:
    """Every warning left is listed, with why, in docs/packaging.md or (once merged
    there) README.md."""
    report = (OUT / "lintian.txt").read_text()
    docs = "".join(path.read_text() for path in (REPO / "docs/packaging.md", REPO / "README.md")
                   if path.exists())
    tags = set(re.findall(r"^W: \S+: (\S+)", report, flags=re.MULTILINE))
    assert {tag for tag in tags if tag not in docs} == set()


def test_fields(deb: Path) -> None:
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Version", "Depends", "Architecture"],
                            capture_output=True, text=True, check=True).stdout
    assert f"Version: {__version__}" in fields
    assert "Architecture: all" in fields
    depends = [d.strip() for d in fields.split("Depends:")[1].split("\n")[0].split(",")]
    for package in ("kexec-tools", "python3-pyudev", "python3-systemd", "procps"):
        assert package in depends
    # tomli only where Python is older than 3.11 (bookworm has 3.11: not needed there).
    assert "python3-tomli | python3 (>> 3.11)" in depends


def test_nothing_under_an_aliased_directory(deb: Path) -> None:
    """Debian 12's debhelper installs units under /lib; trixie's lintian rejects every path
    under /lib, /bin or /sbin (aliased-location), so debian/rules moves them to /usr."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    paths = [line.split()[5] for line in listing.splitlines()]
    assert f".{UNIT}" in paths
    aliased = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32")
    assert [p for p in paths if p.split("/")[1] in aliased] == []


def test_installs_with_debian_packages_only(installed: Path) -> None:
    status = chroot.run(installed, ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "kdumpd"])
    assert status.stdout.strip() == "ii"
    # Python 3.11 has tomllib: the package must not need python3-tomli (the chroot itself
    # has it: pytest, for the autopkgtest, depends on it on Debian 12).
    # dh-python turns the marker into "python3-tomli | python3 (>> 3.11)", which Debian
    # 12's python3 satisfies by itself.
    depends = chroot.run(installed, ["dpkg-query", "-W", "-f=${Depends}", "kdumpd"]).stdout
    for clause in (c.strip() for c in depends.split(",")):
        assert "tomli" not in clause or "python3 (>> 3.11)" in clause, depends


def test_version(installed: Path) -> None:
    result = chroot.run(installed, ["kdumpd", "--version"])
    assert result.stdout.strip() == f"kdumpd {__version__}"


def test_status(installed: Path) -> None:
    text = chroot.run(installed, ["kdumpd", "status"]).stdout
    assert "crash kernel:" in text
    assert "backend:" in text
    document = json.loads(chroot.run(installed, ["kdumpd", "status", "--json"]).stdout)
    assert set(document["crash_hotplug"]) == {"cpu", "memory"}


def test_runs_on_the_distributions_python_and_libraries(installed: Path) -> None:
    shebang = (installed / "usr/bin/kdumpd").read_text().splitlines()[0]
    assert shebang == "#!/usr/bin/python3"
    code = ("import kdumpd, pyudev, systemd.daemon, systemd.journal, sys; "
            "print(sys.executable); "
            "print(kdumpd.__file__); print(pyudev.__file__); print(systemd.journal.__file__)")
    lines = chroot.run(installed, ["/usr/bin/python3", "-c", code]).stdout.split()
    assert lines[0] == "/usr/bin/python3"
    for path, package in zip(lines[1:], ("kdumpd", "python3-pyudev", "python3-systemd")):
        assert path.startswith("/usr/lib/python3/dist-packages/"), path
        owner = chroot.run(installed, ["dpkg", "-S", path]).stdout
        assert owner.startswith(f"{package}:"), owner


def test_installed_files(installed: Path) -> None:
    assert (installed / UNIT.lstrip("/")).is_file()
    assert (installed / "usr/share/kdumpd/kdumpd-crash-hotplug.rules").is_file()
    for dropin in ("kexec-load.conf", "distro-tools.conf"):
        assert (installed / "usr/share/kdumpd" / dropin).read_bytes() == (
            REPO / "units" / dropin).read_bytes()
    assert (installed / "usr/lib/tmpfiles.d/kdumpd.conf").read_bytes() == (
        REPO / "units/kdumpd.tmpfiles").read_bytes()
    assert (installed / "usr/share/man/man8/kdumpd.8.gz").is_file()
    assert (installed / "usr/share/man/man5/kdumpd.toml.5.gz").is_file()
    completion = (installed / "usr/share/bash-completion/completions/kdumpd").read_text()
    # Only file and directory arguments complete as file names (packaging/gen-completion.py).
    assert "complete -F _shtab_kdumpd kdumpd" in completion
    assert "complete -o filenames" not in completion
    assert "('install' 'remove')" in completion  # generated from the real parser
    assert not list((installed / "lib/udev/rules.d").glob("*kdumpd*"))
    assert not list((installed / "etc/udev/rules.d").glob("*kdumpd*"))
    conffiles = chroot.run(installed, ["dpkg-query", "-W", "-f=${Conffiles}", "kdumpd"]).stdout
    assert "/etc/kdumpd/kdumpd.toml" in conffiles
    # Root-owned 0644: kdumpd (as root here) accepts it.
    assert "OK" in chroot.run(installed, ["kdumpd", "config", "check"]).stdout


def test_enabled_not_started(installed: Path) -> None:
    """Debian's default (dh_installsystemd): enabled at install; started too on a running
    system (in the chroot, policy-rc.d and the absence of systemd prevent that)."""
    wants = installed / "etc/systemd/system/multi-user.target.wants/kdumpd.service"
    assert wants.is_symlink()


def test_systemd_analyze_accepts_the_installed_unit(installed: Path) -> None:
    assert verify_problems(installed, UNIT) == ""


@pytest.mark.parametrize(("name", "old", "new"), [
    ("missing-binary", "ExecStart=/usr/bin/kdumpd run", "ExecStart=/usr/bin/kdumpd-nope run"),
    ("bad-type", "Type=notify", "Type=notfy"),
    ("unknown-key", "ProtectHome=yes", "ProtectHome=yes\nProtectHomes=yes"),
    ("missing-man-page", "Documentation=man:kdumpd(8)", "Documentation=man:kdumpd-nope(8)"),
])
def test_systemd_analyze_rejects_broken_units(installed: Path, name: str, old: str,
                                              new: str) -> None:
    text = (installed / UNIT.lstrip("/")).read_text()
    assert old in text
    broken = installed / "etc/systemd/system" / f"kdumpd-{name}.service"
    broken.write_text(text.replace(old, new))
    try:
        assert verify_problems(installed, f"/etc/systemd/system/{broken.name}") != ""
    finally:
        broken.unlink()


# Debian 12's kdump-tools 1:1.8.1 /lib/udev/rules.d/50-kdump-tools.rules.
VENDOR_RULES = """\
SUBSYSTEM=="memory", ACTION=="online", PROGRAM="/usr/sbin/kdump-config try-reload"
SUBSYSTEM=="memory", ACTION=="offline", PROGRAM="/usr/sbin/kdump-config try-reload"
SUBSYSTEM=="cpu", ACTION=="add", PROGRAM="/usr/sbin/kdump-config try-reload"
SUBSYSTEM=="cpu", ACTION=="remove", PROGRAM="/usr/sbin/kdump-config try-reload"
SUBSYSTEM=="cpu", ACTION=="online", PROGRAM="/usr/sbin/kdump-config try-reload"
"""


def stand_in_rules_package(directory: Path) -> Path:
    """A package shipping kdump-tools' udev rules file (the real one needs far more)."""
    tree = directory / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: kdumpd-test-kdump-rules\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: kdumpd tests <kdumpd@example.org>\n"
        "Description: kdump-tools' udev rules, for kdumpd's package tests\n")
    rules = tree / "lib/udev/rules.d/50-kdump-tools.rules"
    rules.parent.mkdir(parents=True)
    rules.write_text(VENDOR_RULES)
    package = directory / "kdumpd-test-kdump-rules_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(package)],
                   check=True, capture_output=True, timeout=60)
    return package


def autopkgtests() -> list[tuple[str, str, str]]:
    """(test, Depends, Restrictions) of each stanza of debian/tests/control."""
    stanzas = (REPO / "debian/tests/control").read_text().split("\n\n")
    found = []
    for stanza in stanzas:
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.MULTILINE))
        for test in fields.get("Tests", "").split():
            found.append((test, fields.get("Depends", ""), fields.get("Restrictions", "")))
    return found


def test_autopkgtests_pass_against_the_installed_package(installed: Path) -> None:
    """debian/tests/* run as autopkgtest would: in the source tree (here a copy without
    the kdumpd package, which must come from the .deb), with AUTOPKGTEST_TMP set."""
    tests = autopkgtests()
    assert [name for name, _, _ in tests] == ["unit-tests", "cli"]
    source = installed / "tmp/src"
    source.mkdir()
    excludes = [f"--exclude=./{name}" for name in (".git", "out", ".venv*", "kdumpd",
                                                    "mutants", ".hypothesis", "*_cache")]
    packed = subprocess.run(["tar", "-c", *excludes, "."], cwd=REPO, capture_output=True,
                            check=True, timeout=300).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=packed, check=True, timeout=300)
    for name, depends, _restrictions in tests:
        for package in (d.strip() for d in depends.split(",")):
            chroot.run(installed, ["dpkg", "-s", package])  # in the chroot already
        scratch = f"/tmp/autopkgtest-{name}"
        done = chroot.run(installed, ["/bin/sh", "-c",
                                      f"mkdir -p {scratch} && cd /tmp/src && "
                                      f"AUTOPKGTEST_TMP={scratch} debian/tests/{name}"],
                          timeout=600, check=False)
        assert done.returncode == 0, f"{name}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_managed_block_follows_the_package(installed: Path, deb: Path,
                                           tmp_path: Path) -> None:
    """Next to last: removes the package. The override of kdump-tools' rules that kdumpd
    creates survives an upgrade of kdumpd, is rebuilt when kdump-tools updates its rules
    (dpkg trigger), and does not outlive kdumpd (it would hide the vendor file)."""
    rules_deb = stand_in_rules_package(tmp_path)
    shutil.copy(rules_deb, installed / "tmp" / rules_deb.name)
    override = installed / "etc/udev/rules.d/50-kdump-tools.rules"
    installing = chroot.run(installed, ["dpkg", "-i", f"/tmp/{rules_deb.name}"])
    assert "Processing triggers for kdumpd" in installing.stdout
    try:
        chroot.run(installed, ["kdumpd", "rule", "install"])
        assert "kdumpd" in override.read_text()
        # An upgrade (here: the same version again) keeps the block.
        chroot.run(installed, ["dpkg", "-i", f"/tmp/{deb.name}"])
        assert "kdumpd" in override.read_text()
        removal = chroot.run(installed, ["dpkg", "--remove", "kdumpd"])
        assert not override.exists()
        assert "not empty" not in removal.stderr
        assert not (installed / "usr/lib/python3/dist-packages/kdumpd").exists()
    finally:
        chroot.run(installed, ["dpkg", "--purge", "kdumpd-test-kdump-rules"])


def test_purge_removes_everything(installed: Path) -> None:
    """Last: purges the (removed) package from this module's chroot."""
    state = installed / "var/lib/kdumpd"  # what the unit's StateDirectory= holds
    state.mkdir(parents=True, exist_ok=True)
    (state / "state.json").write_text("{}\n")
    chroot.run(installed, ["dpkg", "--purge", "kdumpd"])
    assert not state.exists()
    assert not (installed / "etc/kdumpd").exists()
    assert not (installed / UNIT.lstrip("/")).exists()
    assert not (installed / "etc/systemd/system/multi-user.target.wants/kdumpd.service").exists()
