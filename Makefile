# kdumpd developer entry points. `make demo` and `make test` work on a fresh
# Debian/Ubuntu machine: they install what is missing (apt packages as root, a venv).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the venv and the tests need: headers for systemd-python, venv
# support for Debian's python3, a real systemd-udevd for the integration tests, gawk for
# openSUSE's load.sh in the conformance tests (tests/fixtures/upstream).
APT_TEST_DEPS := libsystemd-dev pkg-config gcc python3-dev python3-venv udev gawk

.PHONY: all test unit lint typecheck demo deps venv dist deb rpm bench bench-quick vm-test vm-long vm-ppc64le vm-ppc64le-image ansible-vm-test vm-chaos mutmut completion clean

all: test

deps:
	./tools/ensure-apt $(APT_TEST_DEPS)

$(STAMP): pyproject.toml
	$(MAKE) deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,ansible]'
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check kdumpd tests bench
	! grep -rnE 'shell=True|os\.system' kdumpd

typecheck: $(STAMP)
	$(VENV)/bin/mypy kdumpd

unit: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(VENV)/bin/kdumpd demo

# The sdist (out/dist/) and proof that it is complete: its own unit tests pass when
# unpacked, importing kdumpd from the unpacked tree.
dist: $(STAMP)
	$(PY) -m pip install -q build
	rm -rf out/dist && $(PY) -m build --sdist --outdir out/dist .
	rm -rf out/dist/check && mkdir -p out/dist/check
	tar -xzf out/dist/kdumpd-*.tar.gz -C out/dist/check --strip-components=1
	cd out/dist/check && PYTHONPATH=. ../../../$(PY) -m pytest -q -p no:cacheprovider \
		tests/core tests/rules

deb:
	./packaging/build-deb

rpm:
	./packaging/build-rpm

bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

vm-test: $(STAMP)
	$(PY) -m pytest -q tests/vm

# What cannot fit in CI: where a real dump stops working as memory grows (crashkernel=256M,
# kdumpd's own load, 0/16/64 GiB hot-added, makedumpfile awaited; tests/vm/test_8_capacity.py).
# Its last run's figures are in tests/vm/RESULTS.md, "vm-long", written by hand.
# SIZES=0,16,32,64 chooses the sizes (GiB hot-added, multiples of 8).
vm-long: $(STAMP)
	KDUMPD_VM_LONG=1 $(if $(SIZES),KDUMPD_VM_LONG_SIZES=$(SIZES)) \
		$(PY) -m pytest -q -s tests/vm/test_8_capacity.py

# The ppc64le (pseries) guest: its own image and scenario, not part of vm-test
# (tests/vm/pseries.py, tests/vm/test_7_ppc64le.py; docs/ppc64le.md).
vm-ppc64le: $(STAMP)
	KDUMPD_VM_PPC64LE=1 $(PY) -m pytest -q -s tests/vm/test_7_ppc64le.py

# Only the pseries guest's cached image (built when missing): .ci/run builds it beside
# vm-test, so that a cold cache does not pay for it alone.
vm-ppc64le-image: $(STAMP)
	$(PY) -c 'from tests.vm import pseries; print(pseries.build().manifest)'

# The Ansible role on a real Debian 13 host (VM scenario 16, in scenario 13's guest; both
# are part of vm-test).
ansible-vm-test: $(STAMP)
	$(PY) -m pytest -q tests/vm -k "test_13_debian_kdump_tools or test_16_the_ansible_role"

# A long seeded chaos run in the guest: make vm-chaos N=40 [SEED=1234]
N ?= 30
vm-chaos: $(STAMP)
	KDUMPD_VM_CHAOS_STEPS=$(N) $(if $(SEED),KDUMPD_VM_CHAOS_SEED=$(SEED)) \
		$(PY) -m pytest -q -s tests/vm -k test_12_seeded_chaos

# The bash completion the packages ship, generated from the parser by a fixed shtab
# (1.5.5, Debian 12's, completes only the first subcommand) and edited by
# packaging/gen-completion.py so that only file and directory arguments are completed as
# file names (shtab's `complete -o filenames` made `kdumpd run<Tab>` in / give `run/`);
# tests/core/test_completion.py checks the file is current and drives it in bash, also
# through readline in a pty.
SHTAB_VERSION = 1.7.1
completion: $(STAMP)
	rm -rf out/shtab && $(PY) -m pip download -q --no-deps -d out/shtab shtab==$(SHTAB_VERSION)
	PYTHONPATH=$$(ls out/shtab/shtab-*.whl) $(PY) packaging/gen-completion.py > out/kdumpd.bash
	mv out/kdumpd.bash packaging/kdumpd.bash

# Mutation testing of the pure core ([tool.mutmut] in pyproject.toml); not part of CI.
mutmut: $(STAMP)
	$(PY) -m pip install -q "mutmut>=3.3"
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results

clean:
	rm -rf build dist out *.egg-info .mypy_cache .ruff_cache .pytest_cache
