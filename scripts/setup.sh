#!/usr/bin/env bash
# Install what driftline's tests and demo need on a fresh Debian machine: the Python package with
# every extra, and Debian's chromium (dashboard browser test) and docker-compose (compose check).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
if [ "${DRIFTLINE_SETUP_BENCH:-0}" = 1 ]; then
  command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
  command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install with apt: ${need_apt[*]}" >&2
  fi
fi

stamp=.driftline-setup.stamp
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$PY" -m pip install -q --disable-pip-version-check -e '.[all]'
  touch "$stamp"
fi
