"""From `make demo` on a clean clone to a working product: time to the dashboard's first page and
to the first `drift_metrics` row.

Run: python bench/bench_demo_start.py [--repo .] [--python /usr/bin/python3]
Clones the repository (its committed HEAD) into a temporary directory and runs `make demo` there
as a user would (packages come from the wheel cache that `make setup` keeps, so this measures the
setup with packages cached, not the download). The demo uses the default ports (9092, 8123, 8501,
9464): they must be free. Baseline in the same run: a second `make demo` in the same clone, whose
setup is a no-op, so the difference is what a first setup costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _drift_rows() -> int:
    q = urllib.parse.quote("SELECT count() FROM driftline.drift_metrics")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:8123/?query={q}", timeout=2) as r:
            return int(r.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def run_once(clone: Path, python: str, timeout_s: float = 900) -> dict[str, float]:
    env = {**os.environ, "PYTHON": python}
    env.pop("VIRTUAL_ENV", None)
    log = open(clone / "make-demo.log", "ab")  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(["make", "demo"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out: dict[str, float] = {}
    try:
        while time.monotonic() - t0 < timeout_s and len(out) < 3:
            if proc.poll() is not None:
                raise SystemExit(f"make demo exited with {proc.returncode}; see {clone / 'make-demo.log'}")
            now = time.monotonic() - t0
            if "venv_ready_s" not in out and (clone / ".venv" / "bin" / "driftline").exists() and _ok_port(9092):
                out["venv_ready_s"] = now
            if "dashboard_s" not in out and _ok("http://127.0.0.1:8501/healthz") and _ok("http://127.0.0.1:8501/"):
                out["dashboard_s"] = now
            if "drift_row_s" not in out and _drift_rows() > 0:
                out["drift_row_s"] = now
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(300)
    return out


def _ok_port(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--python", default="python3", help="the interpreter `make` is given (PYTHON=...)")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    clone = tmp / "driftline"
    subprocess.run(["git", "clone", "-q", a.repo, str(clone)], check=True)
    first = run_once(clone, a.python)
    again = run_once(clone, a.python)
    shutil.rmtree(tmp, ignore_errors=True)  # reached only when both runs finished: a failed one keeps its log
    print(f"make demo on a clean clone ({a.python}; packages from the wheel cache), seconds from `make demo`:")
    print(f"  {'':28s} {'clean clone':>12s} {'second run':>12s}")
    for key, label in (("venv_ready_s", "stack listening"), ("dashboard_s", "dashboard serves its page"),
                       ("drift_row_s", "first drift_metrics row")):
        print(f"  {label:28s} {first.get(key, float('nan')):12.1f} {again.get(key, float('nan')):12.1f}")
    if "dashboard_s" in first and "dashboard_s" in again:
        print(f"  first setup costs {first['dashboard_s'] - again['dashboard_s']:.1f} s "
              f"(ratio clean/second to the dashboard: {first['dashboard_s'] / again['dashboard_s']:.2f})")


if __name__ == "__main__":
    main()
