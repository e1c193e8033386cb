"""Evaluation of prediction-log rules (performance, latency, error rate, volume, shadow
agreement, segments) and of drift rules (verdict, exceeded, a statistic's value) against the real
chDB store."""

from __future__ import annotations

import datetime as dt
import uuid

from driftline.alerting.evaluate import Evaluator
from driftline.alerting.incidents import hysteresis
from driftline.alerting.rules import parse_rules
from tests.alerting.helpers import unique_model

PRED_COLS = ["event_id", "timestamp", "model", "model_version", "variant", "request_id",
             "features_num", "features_str", "features_bool", "features_null", "prediction",
             "prediction_num", "prediction_label", "prediction_scores", "latency_ms", "status",
             "error", "tags"]
LABEL_COLS = ["event_id", "timestamp", "model", "model_version", "prediction_id", "label",
              "label_num", "label_str", "tags"]
T0 = dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)


def pred(model, t, label, *, variant="primary", rid=None, latency=10.0, status="ok", tags=None):
    eid = uuid.uuid4()
    return eid, [eid, t, model, "v1", variant, rid or str(uuid.uuid4()), {}, {}, {}, [],
                 f'"{label}"', None, label, {}, latency, status, "", tags or {}]


def rule(**kw):
    doc = {"rules": [{"name": "r", "channels": [], **kw}]}
    return parse_rules(doc, env={}).rules[0]


def test_performance_volume_latency_errors_and_segments(alert_ch):
    model = unique_model("perf")
    preds, labels = [], []
    # Hour 0: 600 labelled predictions, 90% correct. Hour 1: 600, 70% correct, slow, 10% errors,
    # region=eu only. Hour 2: silence.
    for hour, acc, lat, err in ((0, 0.9, 10.0, 0.0), (1, 0.7, 400.0, 0.1)):
        for i in range(600):
            t = T0 + dt.timedelta(hours=hour, seconds=i * 5)
            region = "eu" if hour == 1 or i % 2 else "us"
            eid, row = pred(model, t, "yes", latency=lat, status="error" if i < err * 600 else "ok",
                            tags={"region": region})
            preds.append(row)
            truth = "yes" if i < acc * 600 else "no"
            labels.append([uuid.uuid4(), t + dt.timedelta(minutes=5), model, "v1", eid,
                           f'"{truth}"', None, truth, {}])
    alert_ch.insert("driftline.predictions", preds, column_names=PRED_COLS)
    alert_ch.insert("driftline.labels", labels, column_names=LABEL_COLS)
    ev = Evaluator(alert_ch, history_windows=3)
    now = T0 + dt.timedelta(hours=3)

    (s,) = ev.evaluate(rule(kind="performance", statistic="accuracy", threshold=0.8,
                            window_s=3600, min_samples=500, model=model), now)
    assert [w.breached for w in s.windows] == [False, True, None]  # hour 2: no labels
    assert round(s.windows[0].value, 3) == 0.9 and s.windows[1].samples == 600
    assert hysteresis(s.windows, 1, 1).state == "breaching"
    # the evidence SQL reproduces the numbers
    assert len(alert_ch.query(s.sql).result_rows) == 2

    (s,) = ev.evaluate(rule(kind="volume", threshold=1, window_s=3600, model=model), now)
    assert [w.value for w in s.windows] == [600.0, 600.0, 0.0]
    assert [w.breached for w in s.windows] == [False, False, True]

    (s,) = ev.evaluate(rule(kind="latency", statistic="p95", threshold=250, window_s=3600,
                            model=model), now)
    assert [w.breached for w in s.windows] == [False, True, None]

    (s,) = ev.evaluate(rule(kind="error_rate", threshold=0.05, window_s=3600, model=model), now)
    assert [w.breached for w in s.windows][:2] == [False, True]

    segs = ev.evaluate(rule(kind="performance", statistic="accuracy", threshold=0.8,
                            window_s=3600, min_samples=250, model=model, segment="region=*"), now)
    by = {s.segment: [w.breached for w in s.windows] for s in segs}
    assert by == {"region=eu": [False, True, None], "region=us": [False, None, None]}


def test_shadow_agreement(alert_ch):
    model = unique_model("shadow")
    rows = []
    for i in range(200):
        t = T0 + dt.timedelta(seconds=i)
        rid = f"r{i}"
        rows.append(pred(model, t, "a", rid=rid)[1])
        rows.append(pred(model, t, "a" if i < 180 else "b", variant="shadow", rid=rid)[1])
    alert_ch.insert("driftline.predictions", rows, column_names=PRED_COLS)
    (s,) = Evaluator(alert_ch, history_windows=1).evaluate(
        rule(kind="shadow_agreement", threshold=0.95, window_s=3600, model=model),
        T0 + dt.timedelta(hours=1))
    assert s.windows[0].value == 0.9 and s.windows[0].breached and s.windows[0].samples == 200


def test_drift_rules_read_the_verdict_unless_they_name_exceeded_or_a_threshold(alert_ch):
    """One window, feature x drifting by its verdict; feature y's Jensen-Shannon crossed its own
    0.1 but its verdict denies drift (a noisy statistic must not page a verdict rule)."""
    model = unique_model("verdict")
    start = T0 + dt.timedelta(days=2)
    end = start + dt.timedelta(minutes=10)
    cols = ["model", "model_version", "detector", "feature", "segment", "window_start", "window_end",
            "statistic", "value", "p_value", "threshold", "drift", "reference_size", "current_size", "details",
            "exceeded"]
    rows = [[model, "v1", "data_drift", f, "", start, end, stat, value, None, thr, verdict, 1000, 1000, "{}",
             value > thr]
            for f, verdict, js, w in (("x", True, 0.3, 0.5), ("y", False, 0.12, 0.02))
            for stat, value, thr in (("jensen_shannon", js, 0.1), ("wasserstein", w, 0.1))]
    alert_ch.insert("driftline.drift_metrics", rows, column_names=cols)
    ev = Evaluator(alert_ch)
    now = end + dt.timedelta(minutes=1)

    def drifted(**kw) -> tuple[str, ...]:
        (series,) = ev.evaluate(rule(kind="drift", model=model, statistic="jensen_shannon", **kw), now)
        (window,) = series.windows
        return tuple(sorted(s.feature for s in window.features))

    assert drifted() == ("x",)  # the verdict, on the named statistic's rows
    assert drifted(flag="verdict") == ("x",)
    assert drifted(flag="exceeded") == ("x", "y")  # the statistic's own crossing, if the rule says so
    assert drifted(threshold=0.2) == ("x",)  # the statistic's value against the rule's threshold
    assert drifted(threshold=0.1) == ("x", "y")


def test_drift_rules_list_drifted_features_by_impact_else_by_the_statistic(alert_ch):
    """Window 0 has impact rows (c > b > a, the reverse of their statistic), window 1 none (a
    store from before impact), window 2 one for b only: impact first, then the statistic."""
    model = unique_model("impact")
    start0 = T0 + dt.timedelta(days=3)
    cols = ["model", "model_version", "detector", "feature", "segment", "window_start", "window_end",
            "statistic", "value", "p_value", "threshold", "drift", "reference_size", "current_size", "details",
            "exceeded"]
    step = dt.timedelta(minutes=10)
    stats = {"a": 0.5, "b": 0.3, "c": 0.2, "d": 0.01}  # d: no verdict, no impact row
    impacts = ({"c": 0.09, "b": 0.05, "a": 0.02}, {}, {"b": 0.04})
    rows = []
    for i, imp in enumerate(impacts):
        s, e = start0 + i * step, start0 + (i + 1) * step
        rows += [[model, "v1", "data_drift", f, "", s, e, "jensen_shannon", v, None, 0.1, f != "d", 1000, 1000,
                  "{}", v > 0.1] for f, v in stats.items()]
        rows += [[model, "v1", "data_drift", f, "", s, e, "impact", v, None, None, True, 1000, 1000,
                  '{"rank": 1}', False] for f, v in imp.items()]
    alert_ch.insert("driftline.drift_metrics", rows, column_names=cols)
    ev = Evaluator(alert_ch)
    now = start0 + 4 * step

    def listed(**kw) -> list[list[tuple[str, float | None]]]:
        (series,) = ev.evaluate(rule(kind="drift", model=model, statistic="jensen_shannon", **kw), now)
        return [[(s.feature, s.impact) for s in w.features] for w in series.windows]

    assert listed() == [[("c", 0.09), ("b", 0.05), ("a", 0.02)],
                        [("a", None), ("b", None), ("c", None)],
                        [("b", 0.04), ("a", None), ("c", None)]]
    # A threshold rule lists what breaches it, in the same order; a feature filter keeps to its features.
    assert listed(threshold=0.25)[0] == [("b", 0.05), ("a", 0.02)]
    assert listed(features=["a", "b"])[0] == [("b", 0.05), ("a", 0.02)]
    # The window's value is still the named statistic's, never an impact.
    (series,) = ev.evaluate(rule(kind="drift", model=model, statistic="jensen_shannon"), now)
    assert [w.value for w in series.windows] == [0.5, 0.5, 0.5]
    # The evidence SQL reproduces the impacts it ranked by.
    first = alert_ch.query(series.sql).result_rows[-1]  # newest first: the last is window 0
    assert sorted(first[6]) == [("a", "data_drift", 0.02), ("b", "data_drift", 0.05), ("c", "data_drift", 0.09)]


EST_COLS = ["model", "model_version", "segment", "window_start", "window_end", "metric", "method",
            "estimate", "lower", "upper", "level", "threshold", "verdict", "realised", "labelled",
            "labelled_share", "n", "updated_at"]


def test_estimated_and_realised_performance_read_the_band_and_the_labels(alert_ch):
    from driftline.alerting.incidents import build_alert

    model = unique_model("est")
    w = dt.timedelta(minutes=10)

    def row(i, est, lo, hi, verdict, realised, labelled, n=1000, at=1):
        start = T0 + i * w
        return [model, "v1", "", start, start + w, "accuracy", "cbpe", est, lo, hi, 0.95, 0.9, verdict,
                realised, labelled, labelled / n, n, T0 + dt.timedelta(days=at)]

    # Window 2 is written at close (no labels) and again once 40 % of its labels came: the later
    # row is the one read. Window 1's estimate is under 0.9 but its band is not: no breach.
    alert_ch.insert("driftline.performance_estimates", [row(2, 0.81, 0.77, 0.85, True, None, 0, at=1)],
                    column_names=EST_COLS)
    alert_ch.insert("driftline.performance_estimates", [
        row(0, 0.95, 0.93, 0.97, False, 0.94, 1000), row(1, 0.88, 0.85, 0.91, False, None, 0),
        row(2, 0.81, 0.77, 0.85, True, 0.83, 400, at=2), row(3, 0.5, 0.3, 0.7, False, None, 0, n=50)],
        column_names=EST_COLS)
    ev = Evaluator(alert_ch, history_windows=4)
    now = T0 + dt.timedelta(hours=1)

    (s,) = ev.evaluate(rule(kind="estimated_performance", statistic="accuracy", threshold=0.9,
                            min_samples=100, model=model), now)
    assert [x.breached for x in s.windows] == [False, False, True, None]
    assert s.windows[2].value == 0.81 and s.windows[2].samples == 1000
    alert = build_alert("firing", s, s.windows[2].start, "k", "", now)
    assert alert.condition == ("accuracy < 0.9: estimated accuracy 0.81 [0.77, 0.85], below 0.90, over "
                               "1,000 predictions; 40 % labelled so far: realised 0.83")
    assert len(alert_ch.query(s.sql).result_rows) == 4  # the evidence SQL reads the same windows
    # Without a threshold: the detector's own verdict (the band at the budget's level).
    (s,) = ev.evaluate(rule(kind="estimated_performance", statistic="accuracy", model=model), now)
    assert [x.breached for x in s.windows] == [False, False, True, False]
    # Realised: only windows with enough labelled rows are judged.
    (s,) = ev.evaluate(rule(kind="realised_performance", statistic="accuracy", threshold=0.9,
                            min_samples=100, model=model), now)
    assert [x.breached for x in s.windows] == [False, None, True, None]
    assert s.windows[2].summary.startswith("realised accuracy 0.83, below 0.90, over 400 labelled "
                                           "predictions (40 % of 1,000); estimated 0.81 [0.77, 0.85]")
