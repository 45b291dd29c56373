# Two commands do everything on a fresh machine: `make test` and `make demo`.
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

.PHONY: test demo lint typecheck install clean bench browser kernels

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

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

test: lint typecheck browser kernels
	$(BIN)/python -m pytest -n 2 --dist loadgroup

demo: kernels
	$(BIN)/tpopk demo --out out/demo

# On demand, never in CI: speed and accuracy against the approaches users would otherwise take.
bench: $(STAMP)
	$(BIN)/python benchmarks/pk_accuracy.py
	$(BIN)/python benchmarks/pk_speed.py
	$(BIN)/python -m benchmarks.pd_speed

clean:
	rm -rf $(VENV) .cache out
