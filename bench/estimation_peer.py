"""NannyML's side of the estimation benchmark, run in its own venv by ``bench_estimation.py``.

    <venv>/bin/python bench/estimation_peer.py JOB.json OUT.json

JOB.json: ``{"cases": [{"case", "path", "kind", "window"}]}``; each ``path`` is an ``.npz`` with
the reference (``ref_scores`` (n, k) / ``ref_labels`` int codes for a classifier,
``ref_features`` / ``ref_pred`` / ``ref_y`` for a regressor) and the analysis rows in windows of
``window`` rows (``scores`` / ``features`` + ``pred``), no labels. NannyML runs with its defaults:

* ``CBPE`` (``classification_binary``: ``y_pred_proba`` the positive class, column 1;
  ``classification_multiclass``: one probability column per class), metrics roc_auc, f1,
  precision, recall, accuracy; ``y_pred`` the arg-max, ``chunk_size`` = the window;
* ``DLE`` (LightGBM, no hyperparameter tuning), metrics mae and rmse, on every feature.

Per window and metric OUT.json gets NannyML's ``value`` and ``sampling_error``; its shipped band
is value +- 3 sampling errors (``upper/lower_confidence_boundary``), also written. Imports only
numpy, pandas and nannyml (no driftline).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd

CLASS_METRICS = ["roc_auc", "f1", "precision", "recall", "accuracy"]
REG_METRICS = ["mae", "rmse"]


def _class_frames(scores: np.ndarray, labels: np.ndarray | None) -> tuple[pd.DataFrame, object]:
    k = scores.shape[1]
    df = pd.DataFrame({f"p_{c}": scores[:, c] for c in range(k)})
    pred = scores.argmax(axis=1)
    if k == 2:
        df["y_pred"] = pred
        proba: object = "p_1"
        if labels is not None:
            df["y_true"] = labels.astype(int)
    else:
        df["y_pred"] = [f"c{c}" for c in pred]
        proba = {f"c{c}": f"p_{c}" for c in range(k)}
        if labels is not None:
            df["y_true"] = [f"c{c}" for c in labels]
    return df, proba


def _read(result, metrics: list[str]) -> dict:
    df = result.filter(period="analysis").to_df()
    out = {}
    for m in metrics:
        out[m] = {field: [float(v) for v in df[(m, field)].to_numpy()]
                  for field in ("value", "sampling_error", "lower_confidence_boundary", "upper_confidence_boundary")}
    return out


def run_case(case: dict) -> dict:
    import nannyml as nml

    data = np.load(case["path"])
    t0 = time.process_time()
    if case["kind"] == "classification":
        ref, proba = _class_frames(data["ref_scores"], data["ref_labels"])
        ana, _ = _class_frames(data["scores"], None)
        k = data["ref_scores"].shape[1]
        est = nml.CBPE(y_pred_proba=proba, y_pred="y_pred", y_true="y_true", metrics=CLASS_METRICS,
                       problem_type="classification_binary" if k == 2 else "classification_multiclass",
                       chunk_size=int(case["window"]))
        metrics = CLASS_METRICS
    else:
        d = data["ref_features"].shape[1]
        names = [f"x{j}" for j in range(d)]
        ref = pd.DataFrame(data["ref_features"], columns=names).assign(y_pred=data["ref_pred"], y_true=data["ref_y"])
        ana = pd.DataFrame(data["features"], columns=names).assign(y_pred=data["pred"])
        est = nml.DLE(feature_column_names=names, y_pred="y_pred", y_true="y_true", metrics=REG_METRICS,
                      chunk_size=int(case["window"]))
        metrics = REG_METRICS
    est.fit(ref)
    t1 = time.process_time()
    result = est.estimate(ana)
    t2 = time.process_time()
    return {"metrics": _read(result, metrics), "fit_cpu_s": t1 - t0, "estimate_cpu_s": t2 - t1}


def main(argv: list[str]) -> int:
    job, out_path = json.loads(open(argv[1]).read()), argv[2]
    out = {}
    for case in job["cases"]:
        try:
            out[case["case"]] = run_case(case)
        except Exception as exc:  # one failing case must not lose the others
            out[case["case"]] = {"error": repr(exc)}
        print(f"nannyml: {case['case']} done", file=sys.stderr, flush=True)
    with open(out_path, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
