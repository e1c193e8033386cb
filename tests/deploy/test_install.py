"""The README's setup on a fresh machine (issue 12): a clean clone, only Debian's /usr/bin/python3.

`make setup` (what `make demo` and `make test` run first) must build the project environment .venv
from requirements.lock with the externally managed system Python (PEP 668: pip refuses to install
into it on Debian 12/13 and Ubuntu 24.04, so any install into the system interpreter fails this
test there; elsewhere the unchanged site-packages below still catch it), reach a working
`.venv/bin/driftline --help`, leave the system interpreter unchanged, and do nothing the second time.

The clone is of the repository's committed HEAD (CI runs in a fresh clone, so HEAD is what it
tests). Downloads go through the caller's caches (HOME, PIP_CACHE_DIR, DRIFTLINE_WHEELS), so
what CI's own setup fetched is not fetched again.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system /usr/bin/python3 (not a Debian/Ubuntu machine)"),
]


def _system(code: str) -> str:
    return subprocess.run([str(SYSTEM_PYTHON), "-c", code], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"}).stdout.strip()


def _system_site_listing() -> dict[str, list[str]]:
    """Every site-packages directory of the system interpreter and what it holds."""
    dirs = _system("import site, sysconfig; print('\\n'.join(sorted(set(site.getsitepackages() + "
                   "[sysconfig.get_path('purelib'), sysconfig.get_path('platlib')]))))").splitlines()
    return {d: sorted(os.listdir(d)) if os.path.isdir(d) else [] for d in dirs}


def _fresh_env(home: Path) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    # The caller's download caches (pip's, and the wheels setup keeps) spare downloading twice.
    for name in ("PIP_CACHE_DIR", "DRIFTLINE_WHEELS", "XDG_CACHE_HOME"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def test_readme_setup_from_a_clean_clone_with_debians_python(tmp_path: Path) -> None:
    before = _system_site_listing()
    assert _system("import importlib.util; print(importlib.util.find_spec('driftline'))") == "None"

    clone = tmp_path / "driftline"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    env = _fresh_env(Path.home())
    assert subprocess.run(["bash", "-c", "command -v python3"], env=env, capture_output=True,
                          text=True).stdout.strip() == "/usr/bin/python3"

    # The quick start's `make demo` is `make setup` then `.venv/bin/driftline up --demo`.
    demo = subprocess.run(["make", "-n", "demo"], cwd=clone, env=env, capture_output=True, text=True, check=True)
    assert ".venv/bin/driftline up --demo" in demo.stdout

    setup = subprocess.run(["make", "setup"], cwd=clone, env=env, capture_output=True, text=True, timeout=1400)
    assert setup.returncode == 0, f"make setup failed:\n{setup.stdout[-4000:]}\n{setup.stderr[-8000:]}"
    assert "externally-managed-environment" not in setup.stderr

    venv = clone / ".venv"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg, cfg  # the venv stands on Debian's interpreter
    help_ = subprocess.run([str(venv / "bin" / "driftline"), "--help"], cwd=clone, env=env, capture_output=True,
                           text=True, timeout=120)
    assert help_.returncode == 0, help_.stderr
    assert "usage: driftline" in help_.stdout and " up" in help_.stdout

    # The server side came from the lock: a pinned package is at its pinned version.
    lock = {line.split("==")[0]: line.split("==")[1].split(";")[0].strip()
            for line in (clone / "requirements.lock").read_text().splitlines() if "==" in line and line[0].isalpha()}
    shown = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.metadata as m; print(m.version('kafka-python'), m.version('chdb'))"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert shown == [lock["kafka-python"], lock["chdb"]]

    # Idempotent: a second run finds the stamp and installs nothing.
    again = subprocess.run(["make", "setup"], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stderr and "creating" not in again.stderr, again.stderr

    # Nothing went into the system interpreter.
    assert _system_site_listing() == before
    assert _system("import importlib.util; print(importlib.util.find_spec('driftline'))") == "None"
