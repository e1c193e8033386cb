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


def errors(case, calibrators) -> list[float]:
    from driftline.detectors.estimation import CBPE, realised_classification

    est = CBPE(case.classes, calibrators)
    labels = np.asarray(case.classes)[case.y]
    errs = []
    for w in range(case.windows):
        sl = case.window_slice(w)
        e, r = est.estimate(case.out[sl]), realised_classification(case.out[sl], labels[sl], case.classes)
        errs.append([abs(e[m].value - r[m]) for m in METRICS])
    return np.nanmean(np.asarray(errs), axis=0).tolist()


def run(case) -> dict:
    from driftline.detectors.estimation_calib import KINDS, _fit_kind, fit_calibrators

    per: dict[str, list] = {k: [] for k in (*KINDS, "driftline")}
    picks: Counter = Counter()
    for x, p, y in [(case.ref_features, case.ref_out, case.ref_y), *case.more_references]:
        cols = [1] if p.shape[1] == 2 else range(p.shape[1])
        for kind in KINDS:
            per[kind].append(errors(case, [_fit_kind(kind, p[:, c], (y == c).astype(float)) for c in cols]))
        chosen = fit_calibrators(p, y)
        picks[chosen[0].kind] += 1
        per["driftline"].append(errors(case, chosen))
    return {"metrics": list(METRICS), "references": len(per["driftline"]), "picks": dict(picks),
            "bench_reference": {k: v[0] for k, v in per.items()},
            "mean": {k: np.mean(v, axis=0).tolist() for k, v in per.items()},
            "sd": {k: np.std(v, axis=0, ddof=1).tolist() for k, v in per.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="binary,multiclass")
    ap.add_argument("--references", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    results = {}
    for case in build(tuple(args.cases.split(",")), references=args.references):
        r = results[case.name] = run(case)
        print(f"{case.name}: {r['references']} references, driftline picked {r['picks']}; "
              f"mean |error| {'/'.join(METRICS)}")
        for k in r["mean"]:
            print(f"  {k:9s} bench reference {np.round(r['bench_reference'][k], 4).tolist()}  "
                  f"mean over references {np.round(r['mean'][k], 4).tolist()}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "estimation_references.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
