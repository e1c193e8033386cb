"""Before/after a change: the same benchmarks on an older commit and on this tree, in one run.

Run: python bench/bench_before_after.py --base 6f8f29f [--rounds 3] [--pipeline-events 200000]

A refactor must not cost speed, and a speed figure taken on another day on a shared 2-core
machine proves nothing. So this script checks out ``--base`` into a git worktree under
``.cache/bench-base/``, gives it its own virtual environment (this interpreter's installed
packages, plus an editable install of that worktree), and then runs, round after round and in
alternating order, each tree's own copy of:

* ``bench_sdk.py``          ``Monitor.log()`` p50 / p99 (20 features, exporter thread running)
* ``bench_detectors.py``   the detector engine alone per event, 20 and 200 features (best of 3)
* ``bench_detect_stage.py`` the whole detector stage's cost per event in the collector's pipeline
* ``bench_pipeline.py``     SDK -> Tansu -> collector -> ClickHouse, stored events/s

It prints the median of each figure per tree and the ratio this tree / base. Each tree runs its
own script because the scripts import internals that may have moved; their figures are defined
the same way (the scripts' printed lines are parsed below, and a figure that cannot be parsed is
an error, not a silent gap).
"""

from __future__ import annotations

import argparse
import re
import site
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench-base"

# figure name -> (script and args, regex over its stdout, lower is better)
FIGURES = {
    "log() p50 us": (["bench_sdk.py"], r"Monitor\.log\(\)\s+p50\s+([\d.]+) us", True),
    "log() p99 us": (["bench_sdk.py"], r"Monitor\.log\(\)\s+p50\s+[\d.]+ us\s+p99\s+([\d.]+) us", True),
    "engine 20 features us/event": (["bench_detectors.py", "--only-cost"],
                                    r"\s20 features, window\s+1000: driftline\s+([\d.]+) us/event", True),
    "engine 200 features us/event": (["bench_detectors.py", "--only-cost"],
                                     r"\s200 features, window\s+1000: driftline\s+([\d.]+) us/event", True),
    "engine in stage us/event": (["bench_detect_stage.py"], r"engine alone ([\d.]+) us/event", True),
    "stage us/event": (["bench_detect_stage.py"], r"stage cost\s+([\d.]+) us/event", True),
    "end-to-end events/s": (["bench_pipeline.py"], r"stored in ClickHouse\s+([\d,]+) events/s", False),
}


def prepare_base(rev: str) -> tuple[Path, Path]:
    """A worktree of ``rev`` and a venv whose ``driftline`` is that worktree."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    tree, venv = CACHE / f"tree-{sha}", CACHE / f"venv-{sha}"
    if not tree.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), sha], check=True)
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        # this interpreter's packages, after the worktree's own editable install (.pth files load
        # in name order, so the worktree's finder wins for driftline)
        Path(purelib, "zz_bench_parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                        "-e", str(tree)], check=True)
        (venv / "ready").touch()
    where = subprocess.run([str(python), "-c", "import driftline.sdk; print(driftline.sdk.__file__)"],
                           check=True, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(tree)):
        raise SystemExit(f"base venv imports driftline from {where}, not from {tree}")
    return tree, python


def run(tree: Path, python: Path, script: list[str], pipeline_events: int) -> str:
    args = [str(python), str(tree / "bench" / script[0]), *script[1:]]
    if script[0] == "bench_pipeline.py":
        args += ["--events", str(pipeline_events)]
    done = subprocess.run(args, cwd=tree, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare with (e.g. the one before a refactor)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipeline-events", type=int, default=200_000)
    parser.add_argument("--skip-pipeline", action="store_true", help="the fast scripts only")
    parser.add_argument("--only", action="append", metavar="SCRIPT",
                        help="run only this script (e.g. bench_detectors.py); may be repeated")
    args = parser.parse_args()

    base_tree, base_python = prepare_base(args.base)
    trees = {"base": (base_tree, base_python), "head": (ROOT, Path(sys.executable))}
    scripts = {tuple(s) for s, _, _ in FIGURES.values()}
    if args.skip_pipeline:
        scripts.discard(("bench_pipeline.py",))
    if args.only:
        scripts = {sc for sc in scripts if sc[0] in args.only}
    values: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
        for script in sorted(scripts):
            for name in order:
                out = run(*trees[name], list(script), args.pipeline_events)
                for figure, (fscript, pattern, _) in FIGURES.items():
                    if tuple(fscript) != script:
                        continue
                    m = re.search(pattern, out)
                    if m is None:
                        raise SystemExit(f"{name}: {figure!r} not found in the output of {script[0]}:\n{out}")
                    values.setdefault((figure, name), []).append(float(m.group(1).replace(",", "")))
                    print(f"round {r + 1} {name:4s} {figure}: {m.group(1)}", flush=True)

    print(f"\nbase {args.base} vs this tree, median of {args.rounds} alternating rounds")
    print(f"  {'figure':22s} {'base':>12s} {'head':>12s} {'head/base':>10s}  better is")
    for figure, (fscript, _, lower) in FIGURES.items():
        if (figure, "base") not in values:
            continue
        b, h = statistics.median(values[(figure, "base")]), statistics.median(values[(figure, "head")])
        print(f"  {figure:22s} {b:12,.2f} {h:12,.2f} {h / b:10.2f}  {'lower' if lower else 'higher'}"
              f"   (base {values[(figure, 'base')]}, head {values[(figure, 'head')]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
