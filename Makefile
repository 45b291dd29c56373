# On a fresh machine: `make demo` runs the main job, `make test` is the fast check (lint,
# types, the tests not marked slow), `make test-all` is everything CI runs.
PYTHON ?= python3.12
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Compiled PyTensor/numba code is cached per user, so later runs and fresh clones on the same
# machine skip the cold compiles (tens of seconds to minutes per model).
CACHE ?= $(HOME)/.cache/tpopk
export PYTENSOR_FLAGS ?= base_compiledir=$(CACHE)/pytensor
export NUMBA_CACHE_DIR ?= $(CACHE)/numba
export MPLBACKEND ?= Agg

.PHONY: test test-all docs demo lint typecheck install clean bench browser kernels

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

typecheck: $(STAMP)
	$(BIN)/mypy

# The report test opens a report in headless Chromium: install Debian's package when missing.
# Where that cannot be done, the reason goes to $(BROWSER_LOG) and the test skips quoting it.
CHROMIUM    := /usr/bin/chromium
BROWSER_LOG := .cache/chromium-install.log

browser:
	@mkdir -p .cache
	@if [ -x $(CHROMIUM) ]; then rm -f $(BROWSER_LOG); \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "not root (uid $$(id -u)): apt-get cannot install chromium" | tee $(BROWSER_LOG); \
	elif ! command -v apt-get >/dev/null; then \
		echo "no apt-get on this system to install chromium" | tee $(BROWSER_LOG); \
	elif (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
			> $(BROWSER_LOG) 2>&1 && [ -x $(CHROMIUM) ]; then rm -f $(BROWSER_LOG); \
	else echo "apt-get install chromium failed (network?); the browser test will skip: $(BROWSER_LOG)"; \
	fi

# One compile of the PD kernels before the test workers start, instead of one per worker.
kernels: $(STAMP)
	@echo "compiling the PD kernels (minutes on a cold numba cache, seconds after)"
	$(BIN)/python -c 'from tpopk.pd.solve import precompile; precompile()'

# The fast loop: the docstrings' examples and every test not marked slow (over ~20 s).
test: lint typecheck kernels
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow"

# Everything, as CI runs it: the slow fits, the notebooks, the report in a headless browser,
# the README's examples and the API reference.
test-all: lint typecheck browser kernels docs
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The API reference from the docstrings; any Sphinx warning is an error.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

demo: kernels
	$(BIN)/tpopk demo --out out/demo

# On demand, never in CI: speed and accuracy against the approaches users would otherwise take.
bench: $(STAMP)
	$(BIN)/python benchmarks/pk_accuracy.py
	$(BIN)/python benchmarks/pk_speed.py
	$(BIN)/python -m benchmarks.pd_speed

clean:
	rm -rf $(VENV) .cache out docs/_build docs/_generated
