"""How much of CBPE's estimation error is the reference's luck: one case, many labelled references.

    python bench/estimation_references.py [--cases binary,multiclass] [--references 10]

The estimation benchmark (``bench_estimation.py``) fits on *one* labelled reference; a calibrator
fitted on it inherits that sample's noise, which then biases every window's estimate the same
way. Here the synthetic classification cases keep their model and windows and draw
``--references`` references from the reference population (the benchmark's own first), and
CBPE is fitted on each with every calibrator kind forced and with driftline's choice
(:func:`driftline.detectors.estimation_calib.fit_calibrators`). ``isotonic`` is NannyML's
calibrator (on the binary case's benchmark reference it gives NannyML's figures to four decimals).
Printed: per kind, the mean absolute estimation error over the windows, for the benchmark's
reference and averaged over all references, and how often driftline's rule picked each kind.
Results: ``<out>/estimation_references.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from estimation_streams import build  # noqa: E402

METRICS = ("accuracy", "f1", "roc_auc")
#: what is compared: kinds forced on every reference, and rules that choose on it
FORCED = ("identity", "platt", "isotonic", "bagged", "blend")
RULES = ("tested", "brier", "metric", "metric_se", "se", "se2", "stack", "shrink", "nannyml")


def errors(case, calibrators) -> tuple[list[float], list[float]]:
    """Mean |estimate - realised| and band coverage per metric over the case's windows."""
    from driftline.detectors.estimation import CBPE, realised_classification

    est = CBPE(case.classes, calibrators)
    labels = np.asarray(case.classes)[case.y]
    errs, cover = [], []
    for w in range(case.windows):
        sl = case.window_slice(w)
        e, r = est.estimate(case.out[sl]), realised_classification(case.out[sl], labels[sl], case.classes)
        errs.append([abs(e[m].value - r[m]) for m in METRICS])
        cover.append([float(e[m].lower <= r[m] <= e[m].upper) for m in METRICS])
    return np.nanmean(np.asarray(errs), axis=0).tolist(), np.nanmean(np.asarray(cover), axis=0).tolist()


def nannyml_rule(p: np.ndarray, y: np.ndarray) -> str:
    """NannyML 0.13's choice (``nannyml.calibration.needs_calibration``, reimplemented): isotonic
    when its held-out expected calibration error (10 stratified 90/10 splits, 10 equal-count
    bins) is below the raw scores', else the scores as they are; per class one-vs-rest. One kind
    for all classes here: isotonic if any class needs it."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    from driftline.detectors.estimation_calib import _fit_kind

    def ece(t, q):
        order = np.argsort(q, kind="stable")
        return sum(len(b) / len(q) * abs(q[b].mean() - t[b].mean()) for b in np.array_split(order, 10))

    for c in ([1] if p.shape[1] == 2 else range(p.shape[1])):
        s, t = p[:, c], (y == c).astype(float)
        if len(np.unique(t)) == 1 or roc_auc_score(t, s) > 0.999:
            continue
        raw, cal, true = [], [], []
        for train, test in StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=42).split(s, t):
            raw.append(s[test]); true.append(t[test])
            cal.append(_fit_kind("isotonic", s[train], t[train])(s[test]))
        true_all = np.concatenate(true)
        if ece(true_all, np.concatenate(raw)) > ece(true_all, np.concatenate(cal)):
            return "isotonic"
    return "identity"


def _calibrators(name: str, p: np.ndarray, y: np.ndarray):
    from driftline.detectors import estimation_calib as C

    if name in FORCED:
        return C.fit_calibrators(p, y, kind=name)
    if name == "nannyml":
        return C.fit_calibrators(p, y, kind=nannyml_rule(p, y))
    if name == "se2":
        old, C.SE_MARGIN = C.SE_MARGIN, 2.0
        try:
            return C.fit_calibrators(p, y, rule="se")
        finally:
            C.SE_MARGIN = old
    return C.fit_calibrators(p, y, rule=name)


def run(case, names=FORCED + RULES) -> dict:
    per: dict[str, list] = {k: [] for k in names}
    cov: dict[str, list] = {k: [] for k in names}
    picks: dict[str, Counter] = {k: Counter() for k in names}
    for x, p, y in [(case.ref_features, case.ref_out, case.ref_y), *case.more_references]:
        for name in names:
            cals = _calibrators(name, p, y)
            picks[name][cals[0].kind] += 1
            e, c = errors(case, cals)
            per[name].append(e)
            cov[name].append(c)
    return {"metrics": list(METRICS), "references": len(per[names[0]]),
            "picks": {k: dict(v) for k, v in picks.items() if k in RULES},
            "bench_reference": {k: v[0] for k, v in per.items()},
            "mean": {k: np.mean(v, axis=0).tolist() for k, v in per.items()},
            "sd": {k: np.std(v, axis=0, ddof=1).tolist() for k, v in per.items()},
            "coverage_bench_reference": {k: v[0] for k, v in cov.items()},
            "coverage_mean": {k: np.mean(v, axis=0).tolist() for k, v in cov.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="binary,multiclass")
    ap.add_argument("--references", type=int, default=10)
    ap.add_argument("--names", default=",".join(FORCED + RULES), help="kinds forced and rules compared")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    results = {}
    for case in build(tuple(args.cases.split(",")), references=args.references):
        r = results[case.name] = run(case, tuple(args.names.split(",")))
        print(f"{case.name}: {r['references']} references, driftline picked {r['picks']}; "
              f"mean |error| {'/'.join(METRICS)}")
        for k in r["mean"]:
            print(f"  {k:9s} bench reference {np.round(r['bench_reference'][k], 4).tolist()} "
                  f"cover {np.round(r['coverage_bench_reference'][k], 2).tolist()}  mean over references "
                  f"{np.round(r['mean'][k], 4).tolist()} cover {np.round(r['coverage_mean'][k], 2).tolist()}"
                  f"  {r['picks'].get(k, '')}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "estimation_references.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
