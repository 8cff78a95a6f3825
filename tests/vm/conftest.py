"""The VM tests boot real kernels in QEMU for many minutes: they run only when asked.

Asked means ``KDUMPD_VM=1`` in the environment, or pytest given this directory (or a file
in it) explicitly, as ``make vm-test`` does (``pytest -q tests/vm``). A plain ``pytest``
over ``tests/`` (``make unit``) skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
