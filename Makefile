# kdumpd developer entry points. `make demo` and `make test` work on a fresh
# Debian/Ubuntu machine: they install what is missing (apt packages as root, a venv).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the venv and the tests need: headers for systemd-python, venv
# support for Debian's python3, a real systemd-udevd for the integration tests.
APT_TEST_DEPS := libsystemd-dev pkg-config gcc python3-dev python3-venv udev

.PHONY: all test unit lint typecheck demo deps venv deb rpm bench bench-quick vm-test clean

all: test

deps:
	./tools/ensure-apt $(APT_TEST_DEPS)

$(STAMP): pyproject.toml
	$(MAKE) deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
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

clean:
	rm -rf build dist out *.egg-info .mypy_cache .ruff_cache .pytest_cache
