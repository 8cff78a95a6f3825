"""The VM tests boot real kernels in QEMU for many minutes: they run only when asked.

Asked means ``KDUMPD_VM=1`` in the environment, or pytest given this directory (or a file
in it) explicitly, as ``make vm-test`` does (``pytest -q tests/vm``). A plain ``pytest``
over ``tests/`` (``make unit``) skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import driver as d
from .guest import GuestError, Vm, VmConfig, make_payload
from .harness import (
    RUNNING,
    SCENARIOS,
    STANDIN_WRAPPER,
    WORKDIR,
    Guest,
    Package,
    boot_with_kdumpd,
    build_deb,
    start_with_one_retry,
)
from .image import REPO, BuildError, Image, get_image
from .results import RunResults, ScenarioResult

HERE = Path(__file__).resolve().parent


def vm_tests_requested(config: pytest.Config) -> bool:
    if os.environ.get("KDUMPD_VM") == "1":
        return True
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        if not path.is_absolute():
            path = Path(config.invocation_params.dir) / path
        try:
            path.resolve().relative_to(HERE)
        except ValueError:
            continue
        return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if vm_tests_requested(config):
        return
    skip = pytest.mark.skip(reason="VM tests: set KDUMPD_VM=1 or run `pytest tests/vm`")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the item (``item.rep_call``) for the results file."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    return None



# -- session fixtures: the image, the .deb and the results file, built once per run --


@pytest.fixture(scope="session")
def run_results() -> Iterator[RunResults]:
    results = RunResults()
    yield results
    results.total_s = time.time() - results.started
    if not results.scenarios:
        return
    # Only a run of every scenario replaces the committed RESULTS.md; a partial run
    # (pytest -k ...) writes next to the QEMU logs.
    if len(results.scenarios) == SCENARIOS:
        results.write()
    else:
        WORKDIR.mkdir(parents=True, exist_ok=True)
        results.write(WORKDIR / "RESULTS.md")


@pytest.fixture(scope="session")
def image(run_results: RunResults) -> Image:
    if os.geteuid() != 0:
        pytest.fail("the VM tests need root (debootstrap, chroot)")
    try:
        built = get_image()
    except BuildError as error:
        pytest.fail(f"cannot build the guest image: {error}")
    run_results.build = {k.removesuffix("_s"): v for k, v in built.timings.items()}
    run_results.build_cold = built.cold
    return built


@pytest.fixture(scope="session")
def package(run_results: RunResults) -> Package:
    if os.environ.get("KDUMPD_VM_STANDIN") == "1":
        run_results.package = "STAND-IN (working tree copied, not the .deb)"
        return Package(
            "stand-in",
            {"kdumpd": REPO / "kdumpd", "kdumpd.service": REPO / "units" / "kdumpd.service",
             "kdumpd-wrapper": STANDIN_WRAPPER.encode()},
            "cp -r /mnt/payload/kdumpd /usr/lib/python3/dist-packages/ && "
            "install -m 0755 /mnt/payload/kdumpd-wrapper /usr/bin/kdumpd && "
            "install -m 0644 /mnt/payload/kdumpd.service /usr/lib/systemd/system/ && "
            "systemctl daemon-reload",
        )
    deb = build_deb()
    run_results.package = f"{deb.name} (make deb), installed with dpkg -i in the guest"
    return Package(deb.name, {"kdumpd.deb": deb},
                   "dpkg -i /mnt/payload/kdumpd.deb && systemctl daemon-reload && "
                   "dpkg -s kdumpd | grep -E '^(Status|Version):' && kdumpd --version")


@pytest.fixture(scope="module")
def trixie(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    yield from boot_with_kdumpd(image, "trixie", package, run_results)


@pytest.fixture()
def scenario(
    request: pytest.FixtureRequest, run_results: RunResults
) -> Iterator[Callable[[str, str, str], ScenarioResult]]:
    """Make the test's :class:`ScenarioResult`; its outcome is filled in afterwards."""
    made: list[ScenarioResult] = []
    started = time.monotonic()

    def make(name: str, kernel: str, setup: str) -> ScenarioResult:
        made.append(run_results.scenario(name, kernel, setup))
        return made[-1]

    yield make
    report = getattr(request.node, "rep_call", None)
    for result in made:
        result.duration_s = time.monotonic() - started
        result.outcome = report.outcome if report is not None else "error"


# -- proof by dump: a real panic, the crash kernel boots, its /proc/vmcore is read -----
# Each scenario boots a guest of its own (the panic ends it), after the shared one.


@pytest.fixture()
def dumping_trixie(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    yield from boot_with_kdumpd(image, "trixie", package, run_results)


@pytest.fixture(scope="module")
def kdump_tools_trixie(image: Image, package: Package,
                       run_results: RunResults) -> Iterator[Guest]:
    """A fresh trixie guest shared by scenario 13, which installs Debian's kdump-tools, and
    scenario 16, which runs the role there (one boot and one kdump initramfs build less)."""
    yield from boot_with_kdumpd(image, "trixie", package, run_results,
                                extra={"collection": REPO / "ansible"})


@pytest.fixture()
def watchdog_trixie(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    """A fresh trixie guest with two hardware watchdogs (scenario 19): QEMU's q35 machine,
    whose ICH9 TCO watchdog (iTCO_wdt) is a device with a modalias in sysfs, and an i6300esb
    PCI watchdog, whose 6.12 driver registers its watchdog without a parent device (no
    modalias: kdumpctl names no driver for it). The distributions' shipped configuration
    files and upstream scripts on its payload."""
    fixtures = REPO / "tests" / "fixtures"
    yield from boot_with_kdumpd(image, "trixie", package, run_results,
                                extra={"distro": fixtures / "distro",
                                       "upstream": fixtures / "upstream"},
                                devices=("i6300esb",), machine="q35,vmport=on")


# -- Debian's kdump-tools across a reboot, then its own dump path ---------------------------


@pytest.fixture(scope="module")
def rebooted_kdump_tools_trixie(image: Image, package: Package,
                                run_results: RunResults) -> Iterator[Guest]:
    """A trixie guest on a disk that survives a power-off (a qcow2 overlay of the image
    instead of snapshot=on): kdumpd's .deb and Debian's real kdump-tools installed and
    enabled on the first boot, kdumpd's default configuration, `systemctl poweroff`;
    yielded on its second boot. Scenario 15 checks that boot, scenario 14 then dumps from
    the same guest (one boot and one kdump initramfs build less than a guest each)."""
    while RUNNING:
        RUNNING.pop().stop()
    workdir = WORKDIR / "reboot"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    overlay = workdir / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(image.root), str(overlay)], check=True, timeout=60)
    payload = make_payload(dict(package.payload), workdir / "payload.ext4")
    k = image.kernels["trixie"]
    vm = Vm(VmConfig(kernel=k, root_image=image.root, payload=payload, overlay=overlay,
                     workdir=workdir / "first"))
    RUNNING.append(vm)
    started = time.monotonic()
    try:
        start_with_one_retry(vm, run_results)
        vm.sh.run("mkdir -p /mnt/payload && mount -o ro /dev/vdb /mnt/payload && "
                  f"{package.install}", timeout=180)
        vm.sh.run("dpkg -i /root/debs/kdump-tools_*.deb >/dev/null 2>&1; "
                  "test -e /var/lib/kdump/initrd.img && systemctl is-enabled kdump-tools "
                  "kdumpd", timeout=900)
        vm.sh.write_file("/etc/kdumpd/kdumpd.toml", "# kdumpd's defaults\n")
        vm.sh.send("sync; systemctl poweroff")
        vm.wait_exit(300)
        vm.stop()
        RUNNING.remove(vm)
        vm = Vm(VmConfig(kernel=k, root_image=image.root, payload=payload, overlay=overlay,
                         workdir=workdir / "second"))
        RUNNING.append(vm)
        start_with_one_retry(vm, run_results)
        run_results.boots[f"trixie ({k.release}) after a power-off"] = vm.boot_s
        vm.sh.run("mkdir -p /mnt/payload && mount -o ro /dev/vdb /mnt/payload")
        run_results.notes.append(
            "scenarios 15 and 14's guest: two boots, kdumpd's and kdump-tools' installs and "
            f"a power-off took {time.monotonic() - started:.0f} s before scenario 15")
        yield Guest(vm, k.release, d.Hotplug(vm))
    except GuestError as error:
        pytest.fail(f"rebooting guest: {error}\n--- serial console tail:\n"
                    f"{vm.serial_tail()}")
    finally:
        vm.stop()
        if vm in RUNNING:
            RUNNING.remove(vm)
        problems = vm.kernel_problems()
        if problems:
            run_results.notes.append(f"guest kernel {k.release} logged: "
                                     + " / ".join(problems[:5]))


# -- the old kernel last: booting it stops the trixie guest (one TCG guest at a time) --


@pytest.fixture()
def bookworm(image: Image, package: Package, run_results: RunResults) -> Iterator[Guest]:
    yield from boot_with_kdumpd(image, "bookworm", package, run_results)
