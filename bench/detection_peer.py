"""One peer of the detection benchmark, run inside that peer's own venv by ``bench_detection.py``.

    <venv>/bin/python bench/detection_peer.py {evidently|alibi|nannyml} JOB.json OUT.json

JOB.json lists the cases: ``{"cases": [{"case", "path", "kind"}], "evidently_check": n}``; each
``path`` is an ``.npz`` with ``reference`` (the shared reference sample), ``reference_nannyml``
(NannyML's longer one), ``windows`` (n x window values: float with NaN for missing, or int codes
with -1 for missing) and ``levels``. OUT.json gets, per case, the flag of every window, the CPU
seconds and how the verdict was read. Imports only numpy, pandas and the peer (no driftline).

How each peer is driven, with its defaults:

* **Evidently** ``DataDriftPreset()``: a per-column ``ValueDrift`` whose test and threshold are
  chosen by ``get_stattest(..., None)`` and decided by the test's own ``drifted`` (K-S p < 0.05
  for a numeric reference of <= 1,000 rows, Wasserstein > 0.1 above; chi-squared / Z-test /
  Jensen-Shannon for few values and categories). The Report renders a plotly widget per column
  (~0.2 s each), so the windows are judged by the function the Report calls for each column,
  ``get_one_column_drift``'s test step, and the first ``evidently_check`` windows of every case
  are also run through the full ``Report([DataDriftPreset()])`` (one column per window) and must
  agree: the count of disagreements is reported.
* **alibi-detect** ``KSDrift`` (numeric) / ``ChiSquareDrift`` (categorical, integer codes), default
  ``p_val=0.05``, one feature: ``is_drift`` of ``predict``. Windows are batched as columns of one
  detector (``drift_type="feature"``: the same uncorrected test per column as the default
  ``"batch"`` verdict of a one-feature detector). alibi takes no missing values (NaN gives a NaN
  p-value, never drift), so in cases with NaN each window is tested on its present values.
* **NannyML** ``UnivariateDriftCalculator`` defaults (Jensen-Shannon for continuous and
  categorical columns, thresholds from the spread of the reference's own chunks), ``chunk_size``
  = the window, fitted on ``reference_nannyml``; the verdict is the method's ``alert`` column.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BATCH = 250  # windows per call where the API takes many at once


def _series(values: np.ndarray, kind: str, levels: list[str]) -> pd.Series:
    if kind == "categorical":
        lv = np.asarray(levels, dtype=object)
        out = np.where(values >= 0, lv[np.clip(values, 0, None)], None)
        return pd.Series(out, dtype=object)
    return pd.Series(values, dtype=float)


# -- Evidently --------------------------------------------------------------------------------
def run_evidently(data: dict, kind: str, check: int) -> dict:
    from evidently.legacy.core import ColumnType
    from evidently.legacy.options.data_drift import DataDriftOptions
    from evidently.legacy.calculations.stattests.registry import get_stattest

    ctype = ColumnType.Categorical if kind == "categorical" else ColumnType.Numerical
    levels = list(data["levels"])
    opts = DataDriftOptions()
    threshold = opts.get_threshold("x", ctype.value)
    ref = _series(data["reference"], kind, levels)
    ref = ref.replace([-np.inf, np.inf], np.nan).dropna()
    flags, methods = [], {}
    for w in data["windows"]:
        cur = _series(w, kind, levels).replace([-np.inf, np.inf], np.nan).dropna()
        if cur.empty:  # the Report raises on an empty column; count it as no verdict
            flags.append(False)
            continue
        test = get_stattest(ref, cur, ctype, opts.get_feature_stattest_func("x", ctype.value))
        res = test(ref, cur, ctype, threshold)
        flags.append(bool(res.drifted))
        methods[test.name] = methods.get(test.name, 0) + 1
    mismatches = _evidently_report_check(data, kind, flags, check) if check else None
    return {"flagged": flags, "methods": methods, "report_check": mismatches}


def _evidently_report_check(data: dict, kind: str, flags: list[bool], n: int) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    levels = list(data["levels"])
    wins = data["windows"][:n]
    ref = _series(data["reference"], kind, levels)
    names = [f"w{i}" for i in range(len(wins))]
    ref_df = pd.DataFrame({c: ref for c in names})
    cur_df = pd.DataFrame({c: _series(w, kind, levels) for c, w in zip(names, wins)})
    cols = {"categorical_columns" if kind == "categorical" else "numerical_columns": names}
    dd = DataDefinition(**cols)
    snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur_df, data_definition=dd),
                                           Dataset.from_pandas(ref_df, data_definition=dd))
    got = {}
    for m in snap.dict()["metrics"]:
        cfg = m.get("config", {})
        if not cfg.get("type", "").endswith("ValueDrift"):
            continue
        p_value = "p_value" in cfg["method"]
        value = float(m["value"])
        got[cfg["column"]] = value < cfg["threshold"] if p_value else value >= cfg["threshold"]
    wrong = sum(got[c] != f for c, f in zip(names, flags))
    return {"windows": len(names), "disagreements": wrong}


# -- alibi-detect -----------------------------------------------------------------------------
def run_alibi(data: dict, kind: str) -> dict:
    from alibi_detect.cd import ChiSquareDrift, KSDrift

    ref, wins = data["reference"], data["windows"]
    flags: list[bool] = []
    if kind == "categorical":
        missing = (ref < 0).any() or (wins < 0).any()
        if missing:
            raise SystemExit("alibi: categorical missing values are not generated by any case")
        for lo in range(0, len(wins), BATCH):
            x = wins[lo:lo + BATCH].T  # (window, k): one feature per window
            det = ChiSquareDrift(np.repeat(ref[:, None], x.shape[1], axis=1), p_val=0.05)
            flags += [bool(f) for f in det.predict(x, drift_type="feature")["data"]["is_drift"]]
        return {"flagged": flags, "method": "ChiSquareDrift"}
    if np.isnan(ref).any() or np.isnan(wins).any():
        det = KSDrift(ref[~np.isnan(ref)][:, None].astype(np.float32), p_val=0.05)
        for w in wins:
            present = w[~np.isnan(w)]
            flags.append(bool(present.size) and bool(det.predict(present[:, None].astype(np.float32))["data"]["is_drift"]))
        return {"flagged": flags, "method": "KSDrift on present values, one call per window"}
    for lo in range(0, len(wins), BATCH):
        x = wins[lo:lo + BATCH].T.astype(np.float32)
        det = KSDrift(np.repeat(ref[:, None], x.shape[1], axis=1).astype(np.float32), p_val=0.05)
        flags += [bool(f) for f in det.predict(x, drift_type="feature")["data"]["is_drift"]]
    return {"flagged": flags, "method": "KSDrift"}


# -- NannyML ----------------------------------------------------------------------------------
def run_nannyml(data: dict, kind: str) -> dict:
    import nannyml as nml

    nml.disable_usage_logging()  # no network at run time (the caller also sets the env var)
    levels = list(data["levels"])
    window = data["windows"].shape[1]
    ref = pd.DataFrame({"x": _series(data["reference_nannyml"], kind, levels)})
    ana = pd.DataFrame({"x": _series(data["windows"].reshape(-1), kind, levels)})
    if kind == "categorical":
        ref["x"], ana["x"] = ref["x"].astype("category"), ana["x"].astype("category")
    calc = nml.UnivariateDriftCalculator(column_names=["x"], chunk_size=window)
    calc.fit(ref)
    df = calc.calculate(ana).filter(period="analysis").to_df()
    alert = [c for c in df.columns if c[0] == "x" and c[-1] == "alert"]
    if len(alert) != 1:
        raise SystemExit(f"nannyml: expected one alert column for x, got {alert}")
    flags = [bool(v) for v in df[alert[0]].tolist()]
    if len(flags) != len(data["windows"]):
        raise SystemExit(f"nannyml: {len(flags)} chunks for {len(data['windows'])} windows")
    return {"flagged": flags, "method": f"UnivariateDriftCalculator {alert[0][1]}"}


def main(argv: list[str]) -> int:
    system, job_path, out_path = argv[1], Path(argv[2]), Path(argv[3])
    job = json.loads(job_path.read_text())
    out = {}
    for c in job["cases"]:
        with np.load(c["path"], allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        t0 = time.process_time()
        if system == "evidently":
            res = run_evidently(data, c["kind"], int(job.get("evidently_check", 0)))
        elif system == "alibi":
            res = run_alibi(data, c["kind"])
        elif system == "nannyml":
            res = run_nannyml(data, c["kind"])
        else:
            raise SystemExit(f"unknown system {system!r}")
        res["cpu_s"] = time.process_time() - t0
        out[c["case"]] = res
        print(f"{system}: {c['case']} {sum(res['flagged'])}/{len(res['flagged'])} windows flagged, "
              f"{res['cpu_s']:.1f} s CPU", flush=True)
    out_path.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
