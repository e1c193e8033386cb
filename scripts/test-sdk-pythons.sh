#!/usr/bin/env bash
# The light SDK on every Python it supports: for each version, a fresh venv, a bare `pip install .`
# (no extras, no lock: the newest versions its ranges allow, as a user's `pip install driftline`;
# the wheel is built once from the checkout and installed in each),
# a check that no server dependency came with it, then every SDK test that needs only the SDK.
#   scripts/test-sdk-pythons.sh [X.Y ...]     default: 3.10 3.11 3.12 3.13 (pyenv or pythonX.Y)
#
# Which tests: tests/sdk files, subfolders included, whose module-level imports (followed through tests/
# and sdk/ modules and the packages' __init__.py files)
# stay within the standard library, pytest and the SDK's own dependencies; within them, every test
# not marked integration and not using a fixture of tests/conftest.py that starts the embedded
# broker or store. The script prints what it left out and why; those tests run in `make test`.
# Files that also import numpy or pandas (a model's own libraries, not the SDK's) run in a second
# pass, after those two are added to the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.10 3.11 3.12 3.13)
SERVER_MODULES="numpy pandas scipy faust aiokafka chdb clickhouse_connect presidio_analyzer spacy streamlit aiohttp prometheus_client"
TEST_TOOLS=(pytest pytest-asyncio pytest-timeout)

# select_tests PYTHON: "light <file>" or "numpy <file>" for each file under tests/sdk (recursively) it can run.
select_tests() {
  "$1" - <<'PY'
import ast, pathlib, sys
allowed = set(sys.stdlib_module_names) | {"pytest", "kafka", "orjson", "msgspec", "yaml", "crc32c", "lz4"}
model_libs = {"numpy", "pandas"}
local = {"tests": pathlib.Path("tests"), "driftline.sdk": pathlib.Path("sdk")}

def source(mod):
    for prefix, root in local.items():
        if mod == prefix or mod.startswith(prefix + "."):
            rest = mod[len(prefix) + 1:].split(".") if mod != prefix else []
            for cand in (root.joinpath(*rest).with_suffix(".py") if rest else None, root.joinpath(*rest, "__init__.py")):
                if cand is not None and cand.is_file():
                    return cand
    return None

def module_of(path):
    for prefix, root in local.items():
        if path.is_relative_to(root):
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            return ".".join([prefix, *parts])
    raise ValueError(path)

def outside(path, seen):
    """Modules from outside tests/ and sdk/ that path imports at module level, directly or through
    the tests/ and sdk/ modules it imports (imports inside functions stay lazy and are not counted)."""
    if path in seen:
        return set()
    seen.add(path)
    mod, found = module_of(path), set()
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names = [(a.name, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            # `from pkg import name`: name may be a submodule (followed when local) or an attribute
            names = [(base, False)] + [(f"{base}.{a.name}", True) for a in node.names]
        else:
            continue
        for name, maybe_attr in names:
            src = source(name)
            if src is not None:
                found |= outside(src, seen)
                # importing a.b.c runs a/__init__.py and a/b/__init__.py first
                for parent in (name.rsplit(".", n)[0] for n in range(1, name.count(".") + 1)):
                    init = source(parent)
                    if init is not None and init.name == "__init__.py":
                        found |= outside(init, seen)
            elif maybe_attr:
                continue
            elif name.startswith("driftline.") and not name.startswith("driftline.sdk"):
                found.add(name)  # another driftline package: the server side
            elif not name.startswith(("tests.", "driftline.sdk", "__future__")):
                found.add(name.split(".")[0])
    return found

for f in sorted(pathlib.Path("tests/sdk").rglob("test_*.py")):
    extra = outside(f, set()) - allowed
    if not extra:
        print("light", f)
    elif extra <= model_libs:
        print("numpy", f)
    else:
        print(f"left out: {f} (imports {', '.join(sorted(extra))})", file=sys.stderr)
PY
}

# A pytest plugin: leave out tests marked integration or that use the embedded broker or store.
plugin_dir=$(mktemp -d)
trap 'rm -rf "$plugin_dir"' EXIT
cat >"$plugin_dir/sdk_light_selection.py" <<'PY'
SERVER_FIXTURES = {"broker", "kafka_bootstrap", "chstore", "clickhouse_url", "ch_client", "collector_factory"}

def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        server = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        (drop if server or item.get_closest_marker("integration") else keep).append(item)
    report = config.pluginmanager.get_plugin("terminalreporter")
    for item in drop:
        report.write_line(f"left out: {item.nodeid} (integration, or the embedded broker/store)")
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
PY

for v in "${versions[@]}"; do
  py=$(find_python "$v")
  dir=.venv-sdk-$v
  log "light SDK on Python $v ($py)"
  new_venv "$py" "$dir" latest
  if [ -z "$(ls "$plugin_dir"/wheel/*.whl 2>/dev/null)" ]; then
    # One wheel of the checkout for every Python (py3-none-any), built as `pip install .` builds it
    # (isolated build); serialised with other builds in this checkout (setuptools writes into it).
    mkdir -p .cache
    flock .cache/editable.lock "$dir/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps \
      -w "$plugin_dir/wheel" .
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$plugin_dir"/wheel/*.whl
  # What the bare install brought: none of the server's packages may be importable.
  "$dir/bin/python" - $SERVER_MODULES <<'PY'
import importlib.util, sys
found = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]
assert not found, f"the bare install brought server dependencies: {found}"
PY
  "$dir/bin/driftline" --help >/dev/null
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "${TEST_TOOLS[@]}"
  light=() with_numpy=()
  while read -r kind file; do
    if [ "$kind" = light ]; then light+=("$file"); else with_numpy+=("$file"); fi
  done < <(select_tests "$dir/bin/python")
  [ ${#light[@]} -gt 0 ] || die "no light SDK tests selected"
  # Run from the checkout, importing driftline from the installed wheel (not an editable install).
  PYTHONPATH=$plugin_dir "$dir/bin/python" -m pytest -q -p no:cacheprovider -p sdk_light_selection "${light[@]}"
  if [ ${#with_numpy[@]} -gt 0 ]; then
    "$dir/bin/python" -m pip install -q --disable-pip-version-check numpy pandas
    PYTHONPATH=$plugin_dir "$dir/bin/python" -m pytest -q -p no:cacheprovider -p sdk_light_selection \
      "${with_numpy[@]}"
  fi
done
