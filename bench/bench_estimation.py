"""Performance estimation: driftline's CBPE / DLE vs NannyML's on the same windows (issue 18).

    python bench/bench_estimation.py [--quick] [--cases binary,digits,...] [--no-peer] [--seeds N]
                                     [--venv-dir .cache/bench-venvs] [--out bench/results]

Cases (``estimation_streams.py``): synthetic binary, 3-class and regression streams whose inputs
drift after a stable stretch, and scikit-learn's breast_cancer, digits and diabetes resampled
under a covariate shift. Both systems fit on the same labelled reference and estimate the same
windows; the realised metric of each window is computed from its labels.

Figures per case, metric and system: the mean absolute estimation error (|estimate - realised|
over the windows), the paired difference of the two systems' errors per window with its standard
error (is a gap more than noise?), and the band's coverage (share of windows whose realised value
is inside the band). driftline's band is at 95 %; NannyML ships value +- 3 sampling errors (~99.7 % if
normal), so its coverage is given for that band and for +- 1.96 sampling errors (95 %).

Cost: CPU seconds of ``estimate()`` per analysed event against the CPU seconds per event of a
:class:`~driftline.detectors.engine.DetectorEngine` with the defaults fed the same rows as
schema-v1 prediction events (features and the class -> score mapping, or the prediction),
after its first-events reference: ``ratio = (engine + estimate) / engine``.

NannyML runs in its own venv (``bench_detection.ensure_venv``, pinned in ``bench_detection.PEERS``)
through ``estimation_peer.py``. Results: ``<out>/estimation.json``.

``--seeds N`` (N > 1) builds every case N times (``estimation_streams.build(seed=...)``, seed 0 the
one-seed run's data) and runs both systems on each: per case and metric, each system's mean error
and band coverage over all seeds' windows, and the paired difference with the SEED as the
independent unit (the mean over seeds of each seed's mean paired difference, its standard error
over seeds), with the number of seeds driftline's error was lower / higher on. The engine's cost is
measured on seed 0 only. Results: ``<out>/estimation_seeds.json`` (``estimation.json`` untouched).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from estimation_streams import CASES, Case, build  # noqa: E402

LEVEL = 0.95
Z95 = 1.959963984540054
_T0 = int(_dt.datetime(2026, 1, 5, tzinfo=_dt.timezone.utc).timestamp())


# -- driftline ----------------------------------------------------------------------------------
def run_driftline(case: Case) -> dict:
    from driftline.detectors.estimation import (
        CBPE, DLE, realised_classification, realised_regression,
    )

    t0 = time.process_time()
    if case.kind == "classification":
        ref_labels = np.asarray(case.classes)[case.ref_y]
        est = CBPE.fit(case.ref_out, ref_labels, case.classes, level=LEVEL)
        fit_s = time.process_time() - t0
        labels = np.asarray(case.classes)[case.y]
        windows, cpu = [], 0.0
        for w in range(case.windows):
            sl = case.window_slice(w)
            t = time.process_time()
            e = est.estimate(case.out[sl])
            cpu += time.process_time() - t
            windows.append((e, realised_classification(case.out[sl], labels[sl], case.classes)))
        detail = {"calibrators": [c.kind for c in est.calibrators]}
    else:
        est = DLE.fit(case.ref_features, case.ref_out, case.ref_y, level=LEVEL)
        fit_s = time.process_time() - t0
        windows, cpu = [], 0.0
        for w in range(case.windows):
            sl = case.window_slice(w)
            t = time.process_time()
            e = est.estimate(case.features[sl], case.out[sl])
            cpu += time.process_time() - t
            windows.append((e, realised_regression(case.out[sl], case.y[sl])))
        detail = {"spread_ratio_abs": est.model.c_abs, "spread_ratio_sq": est.model.c_sq}
    metrics = {}
    for m in windows[0][0]:
        metrics[m] = {"value": [e[m].value for e, _ in windows], "lower": [e[m].lower for e, _ in windows],
                      "upper": [e[m].upper for e, _ in windows], "realised": [r[m] for _, r in windows]}
    return {"metrics": metrics, "fit_cpu_s": fit_s, "estimate_cpu_s": cpu,
            "estimate_us_per_event": cpu / (case.windows * case.window) * 1e6, **detail}


def _events(case: Case, rows: slice, start: int) -> list[dict]:
    feats = case.features[rows]
    out = case.out[rows]
    evs = []
    for j in range(len(feats)):
        n = start + j
        stamp = _dt.datetime.fromtimestamp(_T0 + n / 100, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pred = ({c: float(s) for c, s in zip(case.classes, out[j])} if case.kind == "classification"
                else float(out[j]))
        evs.append({"type": "prediction", "event_id": f"00000000-0000-7000-8000-{n:012x}", "timestamp": stamp,
                    "model": "bench", "model_version": "v1",
                    "features": {f"x{i}": float(v) for i, v in enumerate(feats[j][:20])}, "prediction": pred})
    return evs


def engine_cost(case: Case, chunk: int = 5000) -> dict:
    """CPU seconds per event of the default detector engine on the case's windows as events (after
    a first-events reference made of the same rows: the engine's defaults)."""
    from driftline.detectors.config import DEFAULT_FIRST_EVENTS, DetectorsConfig
    from driftline.detectors.engine import DetectorEngine

    eng = DetectorEngine(DetectorsConfig())
    eng.ensure_model(DetectorsConfig().default_for("bench"))
    n = case.windows * case.window
    warm = min(DEFAULT_FIRST_EVENTS, n)
    reps = math.ceil(DEFAULT_FIRST_EVENTS / n) if n < DEFAULT_FIRST_EVENTS else 1
    pos = 0
    for _ in range(reps):  # the reference: the first events
        eng.observe_many(_events(case, slice(0, warm), pos))
        pos += warm
    eng.poll(float("-inf"))
    cpu, events = 0.0, 0
    for lo in range(0, n, chunk):
        evs = _events(case, slice(lo, min(n, lo + chunk)), pos + lo)
        t = time.process_time()
        eng.observe_many(evs)
        eng.poll(float("-inf"))
        cpu += time.process_time() - t
        events += len(evs)
    t = time.process_time()
    eng.flush()
    cpu += time.process_time() - t
    return {"engine_us_per_event": cpu / events * 1e6, "events": events}


# -- NannyML ------------------------------------------------------------------------------------
def run_nannyml(cases: list[Case], venv_dir: Path, tmp: Path, keys: list[str] | None = None) -> dict:
    """NannyML on every case in one peer process; results keyed by ``keys`` (default the names)."""
    from bench_detection import ensure_venv

    jobs = []
    for key, c in zip(keys or [c.name for c in cases], cases):
        path = tmp / f"{key}.npz"
        if c.kind == "classification":
            np.savez(path, ref_scores=c.ref_out, ref_labels=c.ref_y, scores=c.out)
        else:
            np.savez(path, ref_features=c.ref_features, ref_pred=c.ref_out, ref_y=c.ref_y,
                     features=c.features, pred=c.out)
        jobs.append({"case": key, "path": str(path), "kind": c.kind, "window": c.window})
    try:
        py = ensure_venv("nannyml", venv_dir)
    except Exception as exc:
        return {"error": f"NannyML's venv could not be made: {exc!r}"}
    job, res = tmp / "job.json", tmp / "out.json"
    job.write_text(json.dumps({"cases": jobs}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               NML_DISABLE_USAGE_LOGGING="1", DO_NOT_TRACK="1")  # no network at run time
    proc = subprocess.run([str(py), str(HERE / "estimation_peer.py"), str(job), str(res)], env=env, cwd=tmp)
    if proc.returncode:
        return {"error": f"peer exited {proc.returncode}"}
    return {"cases": json.loads(res.read_text())}


# -- figures ------------------------------------------------------------------------------------
def _score(value, lower, upper, realised) -> dict:
    v, lo, hi, r = (np.asarray(a, dtype=float) for a in (value, lower, upper, realised))
    ok = np.isfinite(v) & np.isfinite(r)
    return {"mae": float(np.mean(np.abs(v[ok] - r[ok]))) if ok.any() else None,
            "coverage": float(np.mean((lo[ok] <= r[ok]) & (r[ok] <= hi[ok]))) if ok.any() else None,
            "windows": int(ok.sum())}


def _paired(ours, theirs, realised) -> dict | None:
    """Mean over the windows of |ours - realised| - |theirs - realised| and its standard error
    (windows taken as independent; neighbouring windows of a drifting stream are not quite)."""
    a, b, r = (np.asarray(x, dtype=float) for x in (ours, theirs, realised))
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(r)
    if ok.sum() < 2:
        return None
    d = np.abs(a[ok] - r[ok]) - np.abs(b[ok] - r[ok])
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d)))}


def summarise(dl: dict, nml: dict | None) -> dict:
    out = {}
    for m, d in dl["metrics"].items():
        row = {"driftline": _score(d["value"], d["lower"], d["upper"], d["realised"]),
               "realised_range": [float(np.nanmin(d["realised"])), float(np.nanmax(d["realised"]))]}
        if nml and "metrics" in nml and m in nml["metrics"]:
            nm = nml["metrics"][m]
            v, se = np.asarray(nm["value"], dtype=float), np.asarray(nm["sampling_error"], dtype=float)
            k = min(len(v), len(d["realised"]))
            real = d["realised"][:k]
            row["nannyml"] = _score(v[:k], v[:k] - Z95 * se[:k], v[:k] + Z95 * se[:k], real)
            row["nannyml"]["coverage_shipped_band"] = _score(
                v[:k], nm["lower_confidence_boundary"][:k], nm["upper_confidence_boundary"][:k], real)["coverage"]
            row["error_difference"] = _paired(d["value"][:k], v[:k], real)
        out[m] = row
    return out


def _fmt(x, pct=False):
    if x is None:
        return "-"
    return f"{100 * x:.0f} %" if pct else f"{x:.4f}"


def table(results: dict) -> str:
    """The figures as a markdown table; with ``results["seeds"]`` > 1 the difference is over seeds
    and a column counts the seeds driftline's error was lower / higher on."""
    seeds = results.get("seeds", 1) > 1
    head = "difference over seeds (+- se over seeds) | seeds driftline lower / higher" if seeds else "difference (+- se)"
    lines = [f"| case | metric | realised range | error driftline | error NannyML | {head} "
             "| coverage driftline (95 %) | coverage NannyML (+-1.96 se) | NannyML shipped band (+-3 se) |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if seeds else "")]
    for case, r in results["cases"].items():
        for m, row in r["summary"].items():
            nm = row.get("nannyml", {})
            lo, hi = row["realised_range"]
            diff = row.get("error_difference")
            dtxt = f"{diff['mean']:+.4f} +- {diff['se']:.4f}" if diff else "-"
            if seeds:
                dtxt += f" | {diff['lower']} / {diff['higher']} of {diff['seeds']}" if diff else " | -"
            lines.append(f"| {case} | {m} | {lo:.3f} .. {hi:.3f} | {_fmt(row['driftline']['mae'])} | "
                         f"{_fmt(nm.get('mae'))} | {dtxt} | {_fmt(row['driftline']['coverage'], True)} | "
                         f"{_fmt(nm.get('coverage'), True)} | {_fmt(nm.get('coverage_shipped_band'), True)} |")
    return "\n".join(lines)


# -- over many seeds ----------------------------------------------------------------------------
def _concat(parts: list[dict], k: list[int]) -> dict:
    """Per-metric lists of every seed's first ``k[i]`` windows, one after another."""
    return {m: {f: [x for p, n in zip(parts, k) for x in p[m][f][:n]] for f in parts[0][m]} for m in parts[0]}


def summarise_seeds(dls: list[dict], nmls: list[dict | None]) -> dict:
    """Errors and coverages pooled over every seed's windows; the paired difference per seed (its
    mean over the seed's windows) averaged over the seeds, its se over the seeds."""
    per_seed = [summarise(dl, nml) for dl, nml in zip(dls, nmls)]
    both = [i for i, nml in enumerate(nmls) if nml and "metrics" in nml]
    if len(both) < len(dls):  # a seed without NannyML's figures: pool driftline alone
        return _pooled_only(dls, per_seed)
    k = [min(len(next(iter(dl["metrics"].values()))["value"]),
             len(next(iter(nml["metrics"].values()))["value"])) for dl, nml in zip(dls, nmls)]
    out = summarise({"metrics": _concat([dl["metrics"] for dl in dls], k)},
                    {"metrics": _concat([nml["metrics"] for nml in nmls], k)})
    for m, row in out.items():
        d = np.array([s[m]["error_difference"]["mean"] for s in per_seed if s[m].get("error_difference")])
        row["error_difference"] = None if len(d) < 2 else {
            "mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))), "seeds": len(d),
            "lower": int((d < 0).sum()), "higher": int((d > 0).sum()), "per_seed": d.tolist()}
        row["error_per_seed"] = {sys_: [s[m].get(sys_, {}).get("mae") for s in per_seed] for sys_ in ("driftline", "nannyml")}
    return out


def _pooled_only(dls: list[dict], per_seed: list[dict]) -> dict:
    k = [len(next(iter(dl["metrics"].values()))["value"]) for dl in dls]
    out = summarise({"metrics": _concat([dl["metrics"] for dl in dls], k)}, None)
    for m, row in out.items():
        row["driftline_per_seed"] = [s[m]["driftline"]["mae"] for s in per_seed]
    return out


def run_seeds(names: tuple[str, ...], seeds: int, *, quick: bool, venv_dir: Path | None, distinct: bool = False) -> dict:
    """Every case built ``seeds`` times; NannyML's peer (without ``venv_dir``: none) once with every
    seed's cases."""
    built = [(s, c) for s in range(seeds) for c in build(names, quick=quick, seed=s, distinct=distinct)]
    keys = [f"{c.name}-s{s}" for s, c in built]
    results: dict = {"level": LEVEL, "seeds": seeds, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        peer = {} if venv_dir is None else run_nannyml([c for _, c in built], venv_dir, Path(tmp), keys)
    if "error" in peer:
        print(f"NannyML: {peer['error']}", file=sys.stderr)
        results["nannyml_error"] = peer["error"]
    for name in names:
        runs = [(s, c, key) for (s, c), key in zip(built, keys) if c.name == name]
        dls, nmls = [], []
        for s, c, key in runs:
            dls.append(run_driftline(c))
            nml = peer.get("cases", {}).get(key)
            nmls.append(nml if nml and "metrics" in nml else None)
            print(f"{name} seed {s}: estimate {dls[-1]['estimate_us_per_event']:.2f} us/event", flush=True)
        c0 = runs[0][1]
        cost = engine_cost(c0)
        cost["ratio"] = (cost["engine_us_per_event"] + dls[0]["estimate_us_per_event"]) / cost["engine_us_per_event"]
        results["cases"][name] = {
            "kind": c0.kind, "windows": c0.windows, "window": c0.window, "reference_rows": len(c0.ref_y),
            "summary": summarise_seeds(dls, nmls), "cost_seed0": {**cost, "estimate_us_per_event": dls[0]["estimate_us_per_event"]},
            "driftline": [{k: v for k, v in dl.items() if k != "metrics"} for dl in dls],
            "nannyml": [({k: v for k, v in nml.items() if k != "metrics"} if nml else
                         peer.get("cases", {}).get(key)) for nml, (_, _, key) in zip(nmls, runs)]}
        print(f"{name}: seed 0 engine {cost['engine_us_per_event']:.1f} us/event, ratio {cost['ratio']:.3f}", flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="half the synthetic windows")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--no-peer", action="store_true", help="driftline only")
    ap.add_argument("--venv-dir", type=Path, default=ROOT / ".cache" / "bench-venvs")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--seeds", type=int, default=1, help="build each case this many times (seed 0 = the default data)")
    ap.add_argument("--distinct-rows", action="store_true",
                    help="the real data sets' windows without repeated rows (estimation_streams.build(distinct=True))")
    args = ap.parse_args()
    names = tuple(c for c in args.cases.split(",") if c)
    if args.seeds > 1:
        results = run_seeds(names, args.seeds, quick=args.quick, venv_dir=None if args.no_peer else args.venv_dir,
                            distinct=args.distinct_rows)
        print(table(results))
        args.out.mkdir(parents=True, exist_ok=True)
        suffix = "_distinct" if args.distinct_rows else ""
        (args.out / f"estimation_seeds{suffix}.json").write_text(json.dumps(results, indent=1, default=float))
        return 0
    cases = build(names, quick=args.quick, distinct=args.distinct_rows)
    results: dict = {"level": LEVEL, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        peer = {} if args.no_peer else run_nannyml(cases, args.venv_dir, Path(tmp))
    if "error" in peer:
        print(f"NannyML: {peer['error']}", file=sys.stderr)
        results["nannyml_error"] = peer["error"]
    for c in cases:
        dl = run_driftline(c)
        nml = peer.get("cases", {}).get(c.name)
        cost = engine_cost(c)
        cost["ratio"] = (cost["engine_us_per_event"] + dl["estimate_us_per_event"]) / cost["engine_us_per_event"]
        entry = {"kind": c.kind, "windows": c.windows, "window": c.window, "reference_rows": len(c.ref_y),
                 "summary": summarise(dl, nml), "cost": {**cost, "estimate_us_per_event": dl["estimate_us_per_event"]},
                 "driftline": {k: v for k, v in dl.items() if k != "metrics"}}
        if nml:
            entry["nannyml"] = {k: v for k, v in nml.items() if k != "metrics"}
        results["cases"][c.name] = entry
        print(f"{c.name}: estimate {dl['estimate_us_per_event']:.2f} us/event, engine "
              f"{cost['engine_us_per_event']:.1f} us/event, ratio {cost['ratio']:.3f}", flush=True)
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("estimation_distinct.json" if args.distinct_rows else "estimation.json")).write_text(
        json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
