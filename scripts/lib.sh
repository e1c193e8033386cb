# Shared helpers for scripts/*.sh (sourced, not run). Nothing here installs into a system interpreter:
# every pip call goes to a virtual environment these helpers created.

LOCK=${LOCK:-requirements.lock}
# pip's own HTTP cache stores nothing when the index sends no caching headers (seen with some
# mirrors and proxies), so every venv would download everything again. Wheels are kept here instead:
# pip download fetches what is missing (through pip's configured index), pip install then reads only
# this directory. Delete it at will.
WHEELS=${DRIFTLINE_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/driftline/wheels}

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# apt_install PKG...: as root with apt-get, else with sudo when it needs no password, else fail with
# the command to run.
apt_install() {
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n); else
      die "please run: sudo apt-get install $* (then run make again)"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get on this machine: install $* with your package manager"
  log "apt-get install $*"
  # The package lists may be missing or stale on a fresh machine: update once, then install.
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# py_version PYTHON -> "3.11"
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# ensure_venv_support PYTHON: `python -m venv` needs ensurepip (pip inside the new venv). Debian and
# Ubuntu ship it in a separate package, python3.X-venv, for their own interpreters only.
ensure_venv_support() {
  local py=$1 ver real
  "$py" -c 'import ensurepip, venv' 2>/dev/null && return 0
  ver=$(py_version "$py")
  real=$(readlink -f "$(command -v "$py")")
  if command -v dpkg >/dev/null 2>&1 && dpkg -S "$real" >/dev/null 2>&1; then
    log "$py ($real) is Debian's Python $ver without ensurepip: installing python$ver-venv"
    apt_install "python$ver-venv"
    "$py" -c 'import ensurepip, venv' 2>/dev/null || die "python$ver-venv is installed but $py still has no ensurepip"
  else
    die "$py ($real) cannot create virtual environments (no ensurepip): install its venv support or set PYTHON=..."
  fi
}

# new_venv PYTHON DIR [lock|latest]: a fresh virtual environment at DIR (whatever was there is
# deleted) with pip, setuptools and wheel at the versions the lock pins, or the newest ones.
new_venv() {
  local py=$1 dir=$2 mode=${3:-lock} pins=()
  command -v "$py" >/dev/null 2>&1 || die "no Python at '$py' (set PYTHON=/path/to/python3)"
  ensure_venv_support "$py"
  rm -rf "$dir"
  "$py" -m venv "$dir" || { rm -rf "$dir"; die "$py -m venv $dir failed"; }
  # pip inside the venv is the one ensurepip bundled (23.0 on Debian 12): bring it to the locked one.
  if [ "$mode" = lock ]; then pins=(-c "$LOCK"); fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade "${pins[@]}" pip setuptools wheel
}

# wheelhouse_install VENV PIP-INSTALL-ARGS...: download into $WHEELS what is missing there (one
# download at a time: venvs built side by side share the files), then install from $WHEELS alone.
# --no-compile: Python compiles each module on its first import instead (saves a minute per venv).
wheelhouse_install() {
  local venv=$1 dl=(); shift
  mkdir -p "$WHEELS"
  dl=("$venv/bin/python" -m pip download -q --disable-pip-version-check -d "$WHEELS" "$@")
  if command -v flock >/dev/null 2>&1; then flock "$WHEELS/.lock" "${dl[@]}"; else "${dl[@]}"; fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-compile --no-index --find-links "$WHEELS" "$@"
}

# stamp_key PYTHON: changes when the interpreter, the lock, pyproject.toml or these scripts change.
stamp_key() {
  { "$1" -c 'import sys; print(sys.version, sys.executable)'; readlink -f "$(command -v "$1")"
    cat "$LOCK" pyproject.toml scripts/lib.sh scripts/setup.sh; } | sha256sum | cut -d' ' -f1
}

# find_python X.Y -> path of a Python X.Y: pyenv's newest X.Y.*, else pythonX.Y on PATH.
find_python() {
  local root=${PYENV_ROOT:-$HOME/.pyenv} p
  p=$(ls -d "$root"/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$p" ] || p=$(command -v "python$1" || true)
  [ -n "$p" ] || die "no Python $1 found (pyenv install $1, or put python$1 on PATH)"
  echo "$p"
}

# lock_diff VENV: the installed versions that differ from the lock's pins (for the log).
lock_diff() {
  "$1/bin/python" - "$LOCK" <<'PY'
import re, sys
from importlib import metadata
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = {}
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
    if m:
        pins[norm(m[1])] = m[2]
diff = []
for d in metadata.distributions():
    name = norm(d.metadata["Name"])
    if name in pins and pins[name] != d.version:
        diff.append(f"{name} {d.version} (lock {pins[name]})")
print("newer or other than the lock: " + (", ".join(sorted(diff)) or "none"))
PY
}

# project_requirements PYTHON EXTRA: the requirements of driftline[EXTRA] from pyproject.toml, one a
# line, its self-references (all = driftline[server,dev]) expanded. PYTHON must be 3.11+ (tomllib).
project_requirements() {
  "$1" - "$2" <<'PY'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
name, optional = project["name"], project.get("optional-dependencies", {})
out, todo, done = list(project["dependencies"]), [sys.argv[1]], set()
while todo:
    extra = todo.pop()
    if extra in done:
        continue
    done.add(extra)
    for req in optional[extra]:
        m = re.fullmatch(rf"\s*{re.escape(name)}\s*\[([^\]]*)\]\s*", req)
        if m:
            todo += [e.strip() for e in m[1].split(",")]
        else:
            out.append(req)
print("\n".join(dict.fromkeys(out)))
PY
}

# editable_install VENV: driftline itself, editable, without its dependencies (they come from the
# lock or were installed before). Serialised by a lock file: setuptools writes driftline.egg-info
# into the checkout, and CI builds several venvs from one checkout at once.
editable_install() {
  mkdir -p .cache
  local cmd=("$1/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .)
  if command -v flock >/dev/null 2>&1; then flock .cache/editable.lock "${cmd[@]}"; else "${cmd[@]}"; fi
}

# check_installed VENV EXTRA: every requirement of driftline[EXTRA] (and of what it needs) is
# installed at a version its specifier allows, and pip check finds nothing broken.
check_installed() {
  "$1/bin/python" -m pip check >&2 || die "pip check failed in $1"
  "$1/bin/python" - "$2" <<'PY' || die "$1 lacks requirements of driftline[$2]"
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pip._vendor.packaging.requirements import Requirement
problems, seen = [], set()
def walk(name, extras):
    key = (name.lower(), frozenset(extras))
    if key in seen:
        return
    seen.add(key)
    for req in map(Requirement, distribution(name).requires or []):
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        try:
            have = distribution(req.name).version
        except PackageNotFoundError:
            problems.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(have, prereleases=True):
            problems.append(f"{req} (installed {have})")
        elif req.extras:
            walk(req.name, set(req.extras))
walk("driftline", {sys.argv[1]})
if problems:
    sys.exit("missing or wrong: " + "; ".join(problems))
PY
}
