# The two commands of the quick start:  make demo  and  make test
# Everything runs from the project's virtual environment .venv (made with $(PYTHON), which may be an
# externally managed system python3); nothing is installed into $(PYTHON) itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# test-latest and test-py3XX rebuild their venv each time; CI builds them beforehand (in parallel)
# and passes FRESH=0.
FRESH ?= 1
export STREAMLIT_BROWSER_GATHER_USAGE_STATS = false
export PIP_DISABLE_PIP_VERSION_CHECK = 1

# Tests run as in an activated venv: subprocesses find the venv's python and driftline on PATH.
IN_VENV = PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"
PYTEST = $(IN_VENV) $(VENV)/bin/python -m pytest -q -p no:cacheprovider

.PHONY: setup setup-test demo test test-fast bench lock test-latest test-py312 test-py313 check-py313 test-sdk-pythons ci clean-venvs

setup:  ## .venv from requirements.lock (quick when nothing changed)
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh

setup-test:  ## setup, plus Debian's chromium, chromium-driver and docker-compose for the tests
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh --test-tools

demo: setup  ## embedded broker + ClickHouse + collector + dashboard + a demo model with drift
	$(VENV)/bin/driftline up --demo

test: setup-test  ## the whole suite against the real Tansu broker, chDB store and Chromium
	$(PYTEST)

test-fast: setup-test  ## unit tests only (no broker, no store)
	$(PYTEST) -m "not integration"

bench:  ## every benchmark; figures go to bench/README.md
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh --bench-tools
	$(IN_VENV) $(VENV)/bin/python bench/run_all.py

lock:  ## re-resolve requirements.lock from pyproject.toml's ranges (uv in .cache/lock-tools)
	@PYTHON=$(PYTHON) bash scripts/lock.sh

test-latest:  ## fresh .venv-latest with the newest versions the ranges allow (no lock), fast tests
	@if [ "$(FRESH)" = 1 ] || [ ! -x .venv-latest/bin/python ]; then PYTHON=$(PYTHON) bash scripts/venv-latest.sh .venv-latest; fi
	@bash scripts/setup.sh --test-tools --tools-only
	PATH="$(CURDIR)/.venv-latest/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/.venv-latest" \
	  .venv-latest/bin/python -m pytest -q -p no:cacheprovider -m "not integration"

test-py312 test-py313: test-py3%:  ## the server from the lock on Python 3.12 (3.13), fresh venv, fast tests
	@PYTHON=$$(. scripts/lib.sh && find_python 3.$*) VENV=.venv-py3.$* DRIFTLINE_FRESH=$(FRESH) bash scripts/setup.sh --test-tools
	PATH="$(CURDIR)/.venv-py3.$*/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/.venv-py3.$*" \
	  .venv-py3.$*/bin/python -m pytest -q -p no:cacheprovider -m "not integration"

check-py313:  ## the server from the lock on Python 3.13 (Debian 13's python3): installs, imports, CLI runs
	@PYTHON=$$(. scripts/lib.sh && find_python 3.13) VENV=.venv-py3.13 DRIFTLINE_FRESH=$(FRESH) bash scripts/setup.sh
	.venv-py3.13/bin/driftline --help >/dev/null
	PATH="$(CURDIR)/.venv-py3.13/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/.venv-py3.13" \
	  .venv-py3.13/bin/python -m pytest -q -p no:cacheprovider tests/test_public_api.py

test-sdk-pythons:  ## the light SDK (bare pip install .) and its tests on Python 3.10-3.13
	bash scripts/test-sdk-pythons.sh

ci:  ## what CI runs: bash .ci/run
	bash .ci/run

clean-venvs:  ## remove every venv these targets made (.venv included)
	rm -rf $(VENV) .venv-latest .venv-py3.* .venv-sdk-* .cache/lock-tools
