#!/usr/bin/env bash
# A fresh virtual environment with the NEWEST versions pyproject.toml's ranges allow (no lock), so an
# upstream release that breaks driftline shows up here before a user meets it (make test-latest).
#   scripts/venv-latest.sh [DIR]      DIR defaults to .venv-latest; PYTHON picks the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PY=${PYTHON:-python3}
DIR=${1:-.venv-latest}
log "creating $DIR with $PY, newest versions (no lock)"
new_venv "$PY" "$DIR" latest
mapfile -t reqs < <(project_requirements "$DIR/bin/python" all)
# pip download resolves against the index (the newest that fit); the install then takes those files.
wheelhouse_install "$DIR" "${reqs[@]}"
editable_install "$DIR"
check_installed "$DIR" all
lock_diff "$DIR" >&2
