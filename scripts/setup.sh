#!/usr/bin/env bash
# The project environment: .venv in the checkout, made with $PYTHON (Debian's or Ubuntu's externally
# managed python3, a pyenv or a conda Python), holding driftline with every extra at the versions
# requirements.lock pins: pip install -r requirements.lock, then pip install --no-deps -e . (and a
# check that the lock covered every requirement of driftline[all]). Nothing is installed into
# $PYTHON itself. Quick when nothing changed: the stamp .venv/.driftline-setup is keyed on the
# interpreter, the lock, pyproject.toml and these scripts.
#
#   scripts/setup.sh                 .venv from the lock (make setup; make demo runs this)
#   scripts/setup.sh --test-tools    and Debian's chromium, chromium-driver, docker-compose (make test)
#   scripts/setup.sh --bench-tools   and those plus nginx and wrk (make bench)
#   scripts/setup.sh --test-tools --tools-only    the Debian packages alone (no venv)
#
# Environment: PYTHON (python3), VENV (.venv), LOCK (requirements.lock),
# DRIFTLINE_FRESH=1 deletes the venv first (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
tools=()
tools_only=0
for arg in "$@"; do
  case $arg in
    --test-tools) tools+=(chromium:chromium chromedriver:chromium-driver docker-compose:docker-compose) ;;
    --bench-tools) tools+=(chromium:chromium chromedriver:chromium-driver docker-compose:docker-compose
                           nginx:nginx wrk:wrk) ;;
    --tools-only) tools_only=1 ;;
    *) die "unknown argument $arg" ;;
  esac
done

# Debian packages the tests and benchmarks drive (a real browser, the compose validator, nginx/wrk).
need_apt=()
for t in "${tools[@]}"; do
  cmd=${t%%:*} pkg=${t#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then apt_install "${need_apt[@]}"; fi
if [ $tools_only = 1 ]; then exit 0; fi

command -v "$PY" >/dev/null 2>&1 || die "no Python at '$PY' (set PYTHON=/path/to/python3)"
ver=$(py_version "$PY")
case $ver in
  3.1[1-9]) ;;
  *) die "$PY is Python $ver; the server needs 3.11 or newer (tested on 3.11 and 3.12): make PYTHON=python3.11 ..." ;;
esac

[ -f "$LOCK" ] || die "$LOCK is missing (make lock writes it)"
key=$(stamp_key "$PY")
stamp=$VENV/.driftline-setup
if [ "${DRIFTLINE_FRESH:-0}" = 1 ]; then rm -rf "$VENV"; fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
  exit 0  # up to date
fi

# A venv made by another interpreter (or a broken one) is rebuilt; otherwise it is synced in place.
want=$("$PY" -c 'import sys; print(sys.base_prefix, sys.version)')
have=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix, sys.version)' 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  log "creating $VENV with $PY (Python $ver)"
  new_venv "$PY" "$VENV" lock
else
  rm -f "$stamp"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade -c "$LOCK" pip setuptools wheel
fi
log "installing $LOCK into $VENV"
wheelhouse_install "$VENV" -r "$LOCK"
editable_install "$VENV"
check_installed "$VENV" all
echo "$key" >"$stamp"
log "ready: $VENV/bin/driftline ($("$VENV/bin/python" -V 2>&1))"
