"""Detection quality: driftline's defaults vs Evidently, NannyML and alibi-detect on the same windows.

    python bench/bench_detection.py [--quick] [--systems driftline,evidently,alibi,nannyml]
                                    [--venv-dir .cache/bench-venvs] [--out bench/results]

Streams (``detection_streams.py``, fixed seeds): nine stationary shapes (Gaussian, Student-t(2),
log-normal, Poisson, 0/1, constant, an 80-level long-tail categorical, 90 % null, a seasonal
cycle of 250 events) with ``--events-per-shape`` evaluated events each, and five shifts (mean
+0.1 and +0.25 SD, variance x1.5, 5 % new categories, missing 1 % -> 20 %) after ``--prefix``
stationary windows, ``--post`` windows after the change. Windows are driftline's default window
(1,000 events today); every case is one feature.

References: driftline runs as configured by default (``detectors/config.py``:
``DetectorsConfig().default_for``), so its reference is what its defaults build from the first
events of the stream, and this script reads that size from the defaults. Evidently and
alibi-detect get the same first events as their reference. NannyML derives its thresholds from
the spread of its statistic over the reference's own chunks, so it needs a reference of several
chunks: it gets the first ``--nannyml-reference-windows`` windows (or driftline's reference if
longer). Evaluated windows start after the longest of these, so every system judges the same
windows and none is judged on its own reference.

Each peer runs in its own venv under ``--venv-dir`` (created with the pinned versions in
``PEERS`` on first use, reused while the pins match) through ``detection_peer.py``, which says
how each one's verdict is read; the peers run one after another in a subprocess while driftline
runs in this process.

Figures per case and system: the share of windows flagged after the change, the delay (windows
from the change to the first flag; 1 = the first changed window), and false verdicts per million
feature-events (flagged stationary windows x 1e6 / their events) on the stationary cases and the
pre-change prefixes. Written to ``<out>/detection.json`` and ``<out>/detection.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from detection_report import summarise, table_markdown  # noqa: E402
from detection_streams import CASES, SHIFTED, STATIONARY  # noqa: E402

SYSTEMS = ("driftline", "evidently", "alibi", "nannyml")
#: each peer's venv: pinned versions (alibi-detect 0.13 needs numpy < 2; NannyML 0.13 predates
#: pandas 3 and imports statsmodels without requiring it)
PEERS: dict[str, tuple[str, ...]] = {
    "evidently": ("evidently==0.7.23", "pandas<3"),
    "alibi": ("alibi-detect==0.13.0", "numpy<2", "pandas<3"),
    "nannyml": ("nannyml==0.13.1", "statsmodels", "pandas<3"),
}


def ensure_venv(name: str, root: Path) -> Path:
    """The peer's interpreter, creating or updating its venv when the pins changed."""
    venv = root / name
    py = venv / "bin" / "python"
    stamp = venv / "bench-pins.txt"
    pins = "\n".join(PEERS[name]) + "\n"
    if py.exists() and stamp.exists() and stamp.read_text() == pins:
        return py
    print(f"[setup] {name}: creating {venv} with {' '.join(PEERS[name])} (network; a few minutes)", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS[name]], check=True)
    stamp.write_text(pins)
    return py


def build_streams(args: argparse.Namespace, window: int, ref_dl: int, tmp: Path) -> tuple[dict, list[dict], int]:
    ref_nm = max(ref_dl, args.nannyml_reference_windows * window)
    eval_start = -(-max(ref_dl, ref_nm) // window) * window
    per_shape = args.events_per_shape // window
    streams, jobs = {}, []
    for name, case in CASES.items():
        n = args.prefix + args.post if case.shifted else per_shape
        s = case.generate(ref_events=eval_start, window=window, windows=n, prefix=args.prefix)
        streams[name] = s
        path = tmp / f"{name}.npz"
        np.savez(path, reference=s.values[:ref_dl], reference_nannyml=s.values[:ref_nm],
                 windows=s.windows, levels=np.asarray(s.levels, dtype=str))
        jobs.append({"case": name, "path": str(path), "kind": s.kind})
    return streams, jobs, eval_start


def run_peers(names: list[str], jobs: list[dict], args: argparse.Namespace, tmp: Path, out: dict) -> None:
    for name in names:
        t0 = time.monotonic()
        try:
            py = ensure_venv(name, args.venv_dir)
            job = tmp / f"job-{name}.json"
            job.write_text(json.dumps({"cases": jobs, "evidently_check": args.evidently_check}))
            res = tmp / f"out-{name}.json"
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                       PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3",
                       # no network at run time: NannyML's usage analytics, Evidently's telemetry
                       NML_DISABLE_USAGE_LOGGING="1", DO_NOT_TRACK="1")
            proc = subprocess.run([str(py), str(HERE / "detection_peer.py"), name, str(job), str(res)],
                                  env=env, cwd=tmp)
            if proc.returncode:
                out[name] = {"error": f"exit {proc.returncode}"}
                continue
            out[name] = {"cases": json.loads(res.read_text()), "wall_s": time.monotonic() - t0}
        except Exception as exc:  # one broken peer must not lose the others' figures
            out[name] = {"error": repr(exc)}


def run_driftline(streams: dict, window: int, eval_start: int, args: argparse.Namespace) -> dict:
    from detection_driftline import run_case

    t0, cases = time.monotonic(), {}
    for name, s in streams.items():
        r = run_case(s.values, s.kind, s.levels, window=window, eval_start=eval_start,
                     events_per_s=args.events_per_s)
        r["flagged"] = [bool(f) for f in r["flagged"]]
        cases[name] = r
        print(f"driftline: {name} {sum(r['flagged'])}/{len(r['flagged'])} windows flagged, "
              f"{r['us_per_event']:.1f} us/event in the engine, {r['cpu_s']:.0f} s CPU in all", flush=True)
    return {"cases": cases, "wall_s": time.monotonic() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k events per shape, 30 + 30 windows per shift")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--events-per-shape", type=int, default=1_000_000)
    ap.add_argument("--prefix", type=int, default=100, help="stationary windows before a change")
    ap.add_argument("--post", type=int, default=100, help="windows after a change")
    ap.add_argument("--nannyml-reference-windows", type=int, default=10)
    ap.add_argument("--events-per-s", type=int, default=100, help="event-time rate of the streams")
    ap.add_argument("--evidently-check", type=int, default=20,
                    help="windows per case also run through Evidently's full Report")
    ap.add_argument("--venv-dir", type=Path, default=ROOT / ".cache" / "bench-venvs")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if args.quick:
        args.events_per_shape, args.prefix, args.post = 100_000, 30, 30
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    from detection_driftline import default_settings

    window, ref_dl, how = default_settings()
    started = time.monotonic()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="detbench-") as tmp_s:
        tmp = Path(tmp_s)
        streams, jobs, eval_start = build_streams(args, window, ref_dl, tmp)
        peers = [s for s in systems if s != "driftline"]
        worker = threading.Thread(target=run_peers, args=(peers, jobs, args, tmp, results))
        worker.start()
        if "driftline" in systems:
            results["driftline"] = run_driftline(streams, window, eval_start, args)
        worker.join()
    setup = {"window": window, "driftline_reference": how, "reference_events": ref_dl,
             "nannyml_reference_events": max(ref_dl, args.nannyml_reference_windows * window),
             "eval_start": eval_start, "events_per_shape": args.events_per_shape // window * window,
             "prefix_windows": args.prefix, "post_windows": args.post, "events_per_s": args.events_per_s,
             "pins": PEERS, "cases": {n: c.description for n, c in CASES.items()},
             "stationary": list(STATIONARY), "shifted": list(SHIFTED),
             "wall_s": round(time.monotonic() - started, 1)}
    summary = summarise(results, setup, systems)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detection.json").write_text(json.dumps({"setup": setup, "summary": summary, "raw": results},
                                                        indent=1, default=float))
    md = table_markdown(summary, setup, systems)
    (args.out / "detection.md").write_text(md)
    print(md)
    failed = [s for s in systems if "error" in results.get(s, {"error": "missing"})]
    for s in failed:
        print(f"{s}: {results.get(s, {}).get('error', 'no result')}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
