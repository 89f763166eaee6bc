# LiftStream: `make demo` runs the embedded job, `make test` installs what the tests need and runs them.
# Everything installs into .venv (Python packages) and .liftstream/ (local servers); nothing by hand.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install services demo test lint bench compare-env clean stack-up stack-down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first: a bare `torch` requirement would pull GBs of CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(STAMP)

# real local services for the tests: ClickHouse server (Debian), Tansu broker, tritonserver (CPU)
services: $(STAMP)
	bash deploy/scripts/install_services.sh

demo: $(STAMP)
	$(VENV)/bin/liftstream run

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: services
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m tests.bench.run_all

# EconML for tests/bench/fei_econml.py, in its own environment: its numba needs a newer llvmlite
# than the one lleaves (the served GBM head, in .venv) builds with
compare-env:
	$(PYTHON) -m venv .venv-compare
	.venv-compare/bin/pip install -q econml==0.17.0 lightgbm==4.7.0 scikit-learn numpy

stack-up: services
	$(VENV)/bin/liftstream stack up

stack-down: $(STAMP)
	$(VENV)/bin/liftstream stack down

clean:
	rm -rf $(VENV) .venv-compare .liftstream runs .pytest_cache .ruff_cache
