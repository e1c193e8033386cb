# The two commands of the quick start:  make demo  and  make test
PYTHON ?= python3
export STREAMLIT_BROWSER_GATHER_USAGE_STATS = false

.PHONY: setup demo test test-fast bench

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

demo: setup  ## embedded broker + ClickHouse + collector + dashboard + a demo model with drift
	driftline up --demo

test: setup  ## the whole suite against the real Tansu broker, chDB store and Chromium
	$(PYTHON) -m pytest -q -p no:cacheprovider

test-fast: setup  ## unit tests only (no broker, no store)
	$(PYTHON) -m pytest -q -m "not integration"

bench: setup  ## every benchmark; figures go to bench/README.md
	DRIFTLINE_SETUP_BENCH=1 bash scripts/setup.sh
	$(PYTHON) bench/run_all.py
