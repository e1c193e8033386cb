#!/usr/bin/env bash
# The light SDK on every Python it supports: for each version, a fresh venv, a bare `pip install .`
# (no extras, no lock: the newest versions its ranges allow, as a user's `pip install driftline`),
# a check that no server dependency came with it, then the SDK tests that need only the SDK.
#   scripts/test-sdk-pythons.sh [X.Y ...]     default: 3.10 3.11 3.12 3.13 (pyenv or pythonX.Y)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.10 3.11 3.12 3.13)
# tests/sdk files that import nothing beyond the SDK, pytest and the standard library. The others
# need the server extras (aiohttp, prometheus-client, the broker) and run in the full suite;
# test_monitor.py also imports numpy and pandas (a model's own libraries): it runs second, after
# they are added, once the bare install has been checked.
LIGHT=(tests/sdk/test_schema.py tests/sdk/test_exporter.py tests/sdk/test_denylist.py
       tests/sdk/test_extract.py tests/sdk/test_routing.py)
WITH_NUMPY=(tests/sdk/test_monitor.py)
SERVER_MODULES="numpy pandas scipy faust aiokafka chdb clickhouse_connect presidio_analyzer spacy streamlit aiohttp prometheus_client"
TEST_TOOLS=(pytest pytest-asyncio pytest-timeout)

for v in "${versions[@]}"; do
  py=$(find_python "$v")
  dir=.venv-sdk-$v
  log "light SDK on Python $v ($py)"
  new_venv "$py" "$dir" latest
  "$dir/bin/python" -m pip install -q --disable-pip-version-check .
  # What the bare install brought: none of the server's packages may be importable.
  "$dir/bin/python" - $SERVER_MODULES <<'PY'
import importlib.util, sys
found = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]
assert not found, f"the bare install brought server dependencies: {found}"
PY
  "$dir/bin/driftline" --help >/dev/null
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "${TEST_TOOLS[@]}"
  # Run from the checkout, but import driftline from the installed wheel (no editable install).
  "$dir/bin/python" -m pytest -q -p no:cacheprovider "${LIGHT[@]}"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check numpy pandas
  "$dir/bin/python" -m pytest -q -p no:cacheprovider "${WITH_NUMPY[@]}"
done
