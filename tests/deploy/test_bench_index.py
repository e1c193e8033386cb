"""`make bench` runs every benchmark script: bench/run_all.py lists each bench/bench_*.py."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _listed() -> set[str]:
    tree = ast.parse((BENCH / "run_all.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "BENCHES" for t in node.targets):
            return {entry.elts[1].elts[0].value for entry in node.value.elts}  # type: ignore[attr-defined]
    raise AssertionError("bench/run_all.py has no BENCHES list")


def test_every_bench_script_is_run_by_make_bench() -> None:
    scripts = {p.name for p in BENCH.glob("bench_*.py")} | {"alerting_bench.py"}
    listed = _listed()
    assert listed <= {p.name for p in BENCH.glob("*.py")}, sorted(listed - scripts)
    assert scripts - listed == set(), f"not run by `make bench`: {sorted(scripts - listed)}"
