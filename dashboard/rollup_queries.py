"""Panel queries over the per-minute rollups (``collector/store/rollups.py``), same answers as raw SQL.

A time range is split into whole minutes, read from a rollup, and the partial minutes at its two
edges, aggregated from the raw table with the very SELECT the materialized view runs; the two
are combined with ``UNION ALL`` before the final aggregation. Counts and sums are therefore those
of the raw rows; quantiles are t-digest estimates (as the raw panels' ``quantileTDigest``).

A view can use the rollups when it has no segment filter (tags are not rolled up) and its chart
buckets are whole minutes; :func:`split` says so, and ``queries`` falls back to raw SQL otherwise.
Input features are rolled up per hour (:func:`feature_split`) in equi-depth bins chosen per hour;
a histogram over a reference's edges is re-binned from every hour's bins and is approximate only
inside the bins each edge cuts (one per hour at most); deciles are interpolated over them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from driftline.collector.store import rollup_sql as R
from driftline.dashboard.view import View, ch_time
from driftline.sdk.contract import PREDICTION

P = f"driftline.{PREDICTION.table}"
TB = "toStartOfInterval(minute, toIntervalSecond({bucket:UInt32}))"
_T64 = "toDateTime64({%s:String}, 6, 'UTC')"
SERVED = "variant NOT LIKE 'shadow%'"


def _minute_ceil(t: dt.datetime) -> dt.datetime:
    f = t.replace(second=0, microsecond=0)
    return f if f == t else f + dt.timedelta(minutes=1)


def split(start: dt.datetime, end: dt.datetime, bucket_s: int, segment: str = "") -> dict[str, Any] | None:
    """Parameters for a rollup read of ``[start, end)``, or ``None`` if raw SQL must answer."""
    if segment or bucket_s % 60:
        return None
    ra, rb = _minute_ceil(start), end.replace(second=0, microsecond=0)
    if rb <= ra:
        return None
    out = {"start": ch_time(start), "end": ch_time(end), "ra": ch_time(ra), "rb": ch_time(rb),
           "bucket": bucket_s}
    ha = ra.replace(minute=0) + (dt.timedelta(hours=1) if ra.minute else dt.timedelta(0))
    hb = rb.replace(minute=0)
    if bucket_s % 3600 == 0 and ha < hb:  # whole hours come from the hourly tier
        out.update(ha=ch_time(ha), hb=ch_time(hb))
    return out


def view_split(v: View) -> dict[str, Any] | None:
    s = split(v.start, v.end, v.bucket_s, v.segment)
    if s is not None:
        s["model"] = v.model
        if v.version:
            s["version"] = v.version
    return s


def _hour_ceil(t: dt.datetime) -> dt.datetime:
    f = t.replace(minute=0, second=0, microsecond=0)
    return f if f == t else f + dt.timedelta(hours=1)


def feature_split(v: View) -> dict[str, Any] | None:
    """Parameters for reading ``rollup_features_1h`` over ``v``: whole hours ``[fa, fb)`` from the
    rollup, the partial hours at the edges from the raw table; ``None`` if raw SQL must answer."""
    fa, fb = _hour_ceil(v.start), v.end.replace(minute=0, second=0, microsecond=0)
    if v.segment or fb <= fa:
        return None
    out: dict[str, Any] = {"model": v.model, "start": ch_time(v.start), "end": ch_time(v.end),
                           "fa": ch_time(fa), "fb": ch_time(fb)}
    if v.version:
        out["version"] = v.version
    return out


def _edges(ts: str = "timestamp", widen_s: int = 0) -> str:
    lo, hi = (f" + toIntervalSecond({widen_s})", f" - toIntervalSecond({widen_s})") if widen_s else ("", "")
    return (f"(({ts} >= {_T64 % 'start'} AND {ts} < least({_T64 % 'ra'}{lo}, {_T64 % 'end'})) OR "
            f"({ts} >= greatest({_T64 % 'rb'}{hi}, {_T64 % 'start'}) AND {ts} < {_T64 % 'end'}))")


def _filters(p: dict[str, Any], version_col: str | tuple[str, ...] = "model_version",
             model: bool = True) -> str:
    parts = ["model = {model:String}"] if model and "model" in p else []
    if "version" in p:
        cols = (version_col,) if isinstance(version_col, str) else version_col
        parts += [f"{c} = {{version:String}}" for c in cols]
    return " AND ".join(parts) or "1"


def _interior() -> str:
    return f"minute >= {_T64 % 'ra'} AND minute < {_T64 % 'rb'}"


def _union(table: str, cols: str, raw_sql: str, p: dict[str, Any], where: str = "1",
           version_col: str | tuple[str, ...] = "model_version") -> str:
    f = _filters(p, version_col)
    return (f"(SELECT {cols} FROM driftline.{table} WHERE {f} AND {_interior()} AND {where} "
            f"UNION ALL SELECT {cols} FROM ({raw_sql}) WHERE {where})")


def predictions_src(p: dict[str, Any], cols: str, where: str = "1") -> str:
    raw = R.PREDICTIONS_SELECT.format(src=P, where=f"{_filters(p)} AND {_edges()}")
    if "ha" not in p:
        return _union("rollup_predictions_1m", cols, raw, p, where)
    f = _filters(p)
    hours = f"minute >= {_T64 % 'ha'} AND minute < {_T64 % 'hb'}"
    minutes = (f"((minute >= {_T64 % 'ra'} AND minute < {_T64 % 'ha'}) OR "
               f"(minute >= {_T64 % 'hb'} AND minute < {_T64 % 'rb'}))")
    return (f"(SELECT {cols} FROM driftline.rollup_predictions_1h WHERE {f} AND {hours} AND {where} "
            f"UNION ALL SELECT {cols} FROM driftline.rollup_predictions_1m WHERE {f} AND {minutes} "
            f"AND {where} UNION ALL SELECT {cols} FROM ({raw}) WHERE {where})")


def features_src(p: dict[str, Any], cols: str, where: str = "1") -> str:
    """Rows of ``rollup_features_1h`` for a :func:`feature_split`: the latest rolls of its whole hours
    up to the model's last rolled one (``collector/store/feature_rolls.py``); from the raw rows the
    partial hour at the start, everything after the last rolled hour (the hours not rolled yet and
    the partial one at the end) and the hours rolled as raw (``rollup_sql.ROLL_MIN_VALUES``), as
    fine bins of 256 per doubling (``FEATURES_RAW_SELECT``). The bound is a constant by the time the
    raw table is read, so its primary key skips the rolled hours (an hour not rolled before a rolled
    one is read once rolled: the roller fills such gaps at its next run)."""
    f = _filters(p)
    hours = f"hour >= {_T64 % 'fa'} AND hour < {_T64 % 'fb'}"
    rolls = f"{_filters(p, version_col=())} AND {hours}"
    after = f"greatest({_T64 % 'fa'}, {R.rolled_until(rolls)})"
    # and the hours rolled as raw (too few feature values to bin), read from the raw rows
    small = f"timestamp >= {_T64 % 'fa'} AND timestamp < {after} AND {R.HOUR} IN {R.raw_hours(rolls)}"
    edges = (f"(timestamp >= {_T64 % 'start'} AND timestamp < {_T64 % 'fa'}) OR "
             f"(timestamp >= {after} AND timestamp < {_T64 % 'end'}) OR ({small})")
    raw = R.FEATURES_RAW_SELECT.format(src=P, where=f"{f} AND ({edges})")
    return (f"(SELECT {cols} FROM driftline.rollup_features_1h WHERE {f} AND {hours} AND {R.rolled_rows(rolls)} "
            f"AND {where} UNION ALL SELECT {cols} FROM ({raw}) WHERE {where})")


def labels_src(p: dict[str, Any], cols: str, where: str = "1") -> str:
    raw = R.PREDICTIONS_LABELS_MV_SELECT.format(where=f"{_filters(p)} AND {_edges()}")
    return _union("rollup_labels_1m", cols, raw, p, where)


def outcomes_src(p: dict[str, Any], cols: str, where: str = "1") -> str:
    raw = R.PREDICTIONS_OUTCOMES_MV_SELECT.format(where=f"{_filters(p)} AND {_edges()}")
    return _union("rollup_outcomes_1m", cols, raw, p, where)


def shadow_src(p: dict[str, Any], cols: str) -> str:
    # Edge pairs: primary in an edge interval, its shadow anywhere in range within a minute of it.
    rows = (f"{_filters(p)} AND timestamp >= {_T64 % 'start'} AND timestamp < {_T64 % 'end'} "
            f"AND {_edges(widen_s=60)}")
    raw = R.SHADOW_RAW_SELECT.format(rows=rows, primary=_edges())
    return _union("rollup_shadow_1m", cols, raw, p, version_col=("p_version", "s_version"))


def _r(num: str, den: str) -> str:
    # NULL where the raw panel's avgIf over a Nullable expression has no rows
    return f"if({den} = 0, NULL, {num} / {den})"


# -- panels ------------------------------------------------------------------------------------
_PRED = "minute, model, variant, has_label, prediction_label, n, errors, last_ts"
LAT = "quantilesTDigestIfMerge(0.5, 0.95, 0.99)(latency_q)"


def catalog() -> str:
    return """
SELECT model, model_version, sum(n) AS predictions, min(first_ts) AS first_seen,
       max(last_ts) AS last_seen
FROM driftline.rollup_predictions_1m GROUP BY model, model_version ORDER BY model, model_version"""


def overview_models(p: dict[str, Any]) -> str:
    src = predictions_src(p, "model, model_version, n, errors, last_ts, latency_q")
    return f"""
SELECT model, uniqExact(model_version) AS versions, sum(n) AS predictions,
       sum(n) / {{span:Float64}} AS per_s, {LAT} AS q, q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms,
       sum(errors) / sum(n) AS error_rate, max(last_ts) AS last_seen
FROM {src} GROUP BY model ORDER BY predictions DESC"""


def overview_traffic(p: dict[str, Any]) -> str:
    return f"""
SELECT model, {TB} AS t, sum(n) AS n FROM {predictions_src(p, 'model, minute, n')}
GROUP BY model, t ORDER BY model, t"""


def volume(p: dict[str, Any]) -> str:
    return f"""
SELECT {TB} AS t, variant, sum(n) AS n, sum(errors) AS errors
FROM {predictions_src(p, 'minute, variant, n, errors')} GROUP BY t, variant ORDER BY t, variant"""


def latency(p: dict[str, Any]) -> str:
    return f"""
SELECT {TB} AS t, {LAT} AS q, q[1] AS p50, q[2] AS p95, q[3] AS p99
FROM {predictions_src(p, 'minute, latency_q', SERVED)} GROUP BY t ORDER BY t"""


def prediction_labels(p: dict[str, Any]) -> str:
    src = predictions_src(p, "minute, prediction_label, n", f"{SERVED} AND has_label = 1")
    return f"""
SELECT {TB} AS t, prediction_label AS label, sum(n) AS n FROM {src}
GROUP BY t, label ORDER BY t, label LIMIT 5000"""


def prediction_values(p: dict[str, Any]) -> str:
    src = predictions_src(p, "minute, num_n, num_q", SERVED)
    return f"""
SELECT {TB} AS t, quantilesTDigestIfMerge(0.1, 0.5, 0.9)(num_q) AS q, q[1] AS p10, q[2] AS p50,
       q[3] AS p90
FROM {src} GROUP BY t HAVING sum(num_n) > 0 ORDER BY t"""


def confidence(p: dict[str, Any]) -> str:
    src = predictions_src(p, "minute, conf_n, conf_sum, conf_q", SERVED)
    return f"""
SELECT {TB} AS t, sum(conf_sum) / sum(conf_n) AS mean,
       quantilesTDigestIfMerge(0.1, 0.5)(conf_q) AS q, q[1] AS p10, q[2] AS p50
FROM {src} GROUP BY t HAVING sum(conf_n) > 0 ORDER BY t"""


_NUM = "feature = {feature:String} AND kind = 0"


def feature_bins(p: dict[str, Any]) -> str:
    # every hour's bins of the feature (hours overlap: each bin is an interval [lo, hi] with its count)
    return features_src(p, "n, s, lo, hi", _NUM)


def numeric_edges(p: dict[str, Any]) -> str:
    # Deciles of the mixture of every hour's bins, each bin's values taken as spread evenly over its
    # [lo, hi] (a bin with lo = hi: all at that value). One sweep: a bin adds its density n / (hi - lo)
    # at lo and removes it at hi; between consecutive points the summed density is constant, so the
    # cumulative count F is linear there and each decile is interpolated inside the segment (or is the
    # point) where F reaches it. Exact for values that bins keep as points; otherwise within the bins
    # that hold the decile, each about 1/32 of an hour's values (rollup_sql.FEATURE_BINS).
    return f"""
WITH arraySort(e -> e.1, arrayFlatten(arrayMap(b -> if(b.2 > b.1, [(b.1, b.3 / (b.2 - b.1), 0.),
                                                                    (b.2, -b.3 / (b.2 - b.1), 0.)],
                                                      [(b.1, 0., b.3)]), g))) AS ev,
     arrayMap(e -> e.1, ev) AS xs, arrayPushFront(arrayPopBack(xs), xs[1]) AS prev,
     arrayPushFront(arrayPopBack(arrayCumSum(arrayMap(e -> e.2, ev))), 0.) AS dens,
     arrayMap((x, w, d) -> greatest(d, 0.) * (x - w), xs, prev, dens) AS seg,
     arrayCumSum(arrayMap((m, e) -> m + e.3, seg, ev)) AS F,
     arrayMap(r -> arrayFirstIndex(f -> f >= r * F[-1], F), [{R.DECILES}]) AS at,
     arrayMap((r, i) -> if(r * F[-1] >= F[i] - ev[i].3 OR seg[i] <= 0, xs[i],
                           prev[i] + (xs[i] - prev[i]) * (r * F[-1] - (F[i] - ev[i].3 - seg[i])) / seg[i]),
              [{R.DECILES}], at) AS dq
SELECT if(empty(g), [], dq) AS q, min_lo AS lo, max_hi AS hi
FROM (SELECT groupArray((lo, hi, toFloat64(n))) AS g, min(lo) AS min_lo, max(hi) AS max_hi FROM {feature_bins(p)})"""


def numeric_hist(p: dict[str, Any]) -> str:
    """Counts and sums per reference bin, re-binned from every hour's bins: a bin that an edge cuts
    (per edge, at most one bin of each hour, about 1/32 of its values) is split by a monotone density over
    its [min, max] whose mean is the bin's own (``u`` the position in the bin, ``m`` the mean's: the
    density (a + 1) u^a with a = 1 / (1 - m) - 2 when m > 1/2, mirrored below, uniform at 1/2; ``G``
    its CDF, ``H`` its first moment), which fits the tail bins, where the density falls to the extreme
    value, as well as the central ones. Every other count and sum is exact, and so are the totals."""
    g = "if(up, pow({u}, a + 1), 1 - pow(1 - ({u}), a + 1))"
    h = ("if(up, (a + 1) / (a + 2) * pow({u}, a + 2), "
         "1 / (a + 2) - pow(1 - ({u}), a + 1) + (a + 1) / (a + 2) * pow(1 - ({u}), a + 2))")
    u_lo = "(greatest(lo, if(bin = 0, lo, e[bin])) - lo) / (hi - lo)"
    u_hi = "(least(hi, if(bin = length(e), hi, e[bin + 1])) - lo) / (hi - lo)"
    return f"""
WITH {{edges:Array(Float64)}} AS e
SELECT bin, sum(n * w) AS n, sum(ws) AS s FROM (
  SELECT n, s, lo, hi, arraySum(arrayMap(x -> lo >= x, e)) AS b0, arraySum(arrayMap(x -> hi >= x, e)) AS b1,
         arrayJoin(range(b0, b1 + 1)) AS bin,
         if(hi > lo, greatest(0.01, least(0.99, (s / n - lo) / (hi - lo))), 0.5) AS m, m > 0.5 AS up,
         if(up, 1 / (1 - m), 1 / m) - 2 AS a,
         if(b0 = b1, 1., {g.format(u=u_hi)} - {g.format(u=u_lo)}) AS w,
         if(b0 = b1, s, n * (lo * w + (hi - lo) * ({h.format(u=u_hi)} - {h.format(u=u_lo)}))
                        + (s - n * (lo + (hi - lo) * m)) * w) AS ws
  FROM {feature_bins(p)})
GROUP BY bin HAVING n > 0 ORDER BY bin"""


def categorical_hist(p: dict[str, Any]) -> str:
    src = features_src(p, "feature, category, n", "feature = {feature:String} AND kind = 1")
    return f"""
SELECT category, sum(n) AS n FROM {src} GROUP BY category HAVING n > 0
ORDER BY n DESC, category LIMIT 30"""


def performance(p: dict[str, Any]) -> str:
    z = "0 AS labelled, 0 AS cmp_n, 0 AS correct, 0 AS num_n, 0. AS abs_sum, 0. AS sq_sum, 0 AS delay_ms"
    lab = labels_src(p, "minute, labelled, cmp_n, correct, num_n, abs_sum, sq_sum, delay_ms")
    pred = predictions_src(p, "minute, n", SERVED)
    return f"""
SELECT {TB} AS t, sum(pn) AS predictions, sum(labelled) AS labelled,
       {_r('sum(correct)', 'sum(cmp_n)')} AS accuracy, {_r('sum(abs_sum)', 'sum(num_n)')} AS mae,
       sqrt({_r('sum(sq_sum)', 'sum(num_n)')}) AS rmse, sum(delay_ms) / 1000 / sum(labelled) AS label_delay_s
FROM (SELECT minute, n AS pn, {z} FROM {pred}
      UNION ALL SELECT minute, 0 AS pn, labelled, cmp_n, correct, num_n, abs_sum, sq_sum, delay_ms
      FROM {lab})
GROUP BY t ORDER BY t SETTINGS prefer_column_name_to_alias = 1"""


def confusion(p: dict[str, Any]) -> str:
    src = labels_src(p, "actual, predicted, labelled", "actual_has = 1 AND predicted_has = 1")
    return f"""
SELECT actual, predicted, sum(labelled) AS n FROM {src} GROUP BY actual, predicted HAVING n > 0
ORDER BY actual, predicted LIMIT 400"""


def variant_accuracy(p: dict[str, Any]) -> str:
    lab = labels_src(p, "variant, labelled, cmp_n, correct")
    return f"""
SELECT variant, sum(labelled) AS labelled, {_r('sum(correct)', 'sum(cmp_n)')} AS accuracy
FROM (SELECT variant, 0 AS labelled, 0 AS cmp_n, 0 AS correct
      FROM {predictions_src(p, 'variant', SERVED)}
      UNION ALL SELECT variant, labelled, cmp_n, correct FROM {lab})
GROUP BY variant ORDER BY variant SETTINGS prefer_column_name_to_alias = 1"""


def variant_metrics(p: dict[str, Any]) -> str:
    src = predictions_src(p, "variant, n, errors, latency_q, conf_n, conf_sum, num_n, num_sum")
    return f"""
SELECT variant, sum(n) AS predictions, sum(errors) / sum(n) AS error_rate,
       {LAT} AS q, q[1] AS p50_ms, q[2] AS p95_ms, sum(conf_sum) / sum(conf_n) AS mean_confidence,
       {_r('sum(num_sum)', 'sum(num_n)')} AS mean_prediction
FROM {src} GROUP BY variant ORDER BY predictions DESC"""


def outcome_stats(p: dict[str, Any]) -> str:
    src = outcomes_src(p, "name, variant, n, s, s2", SERVED)
    return f"""
SELECT name AS outcome, variant, sum(n) AS n, sum(s) / sum(n) AS mean,
       (sum(s2) - sum(s) * sum(s) / sum(n)) / (sum(n) - 1) AS var
FROM {src} GROUP BY outcome, variant HAVING sum(n) > 0 ORDER BY outcome, variant
SETTINGS prefer_column_name_to_alias = 1"""


def shadow_agreement(p: dict[str, Any]) -> str:
    src = shadow_src(p, "minute, pairs, cmp_n, agree, diff_n, diff_sum, lat_n, lat_sum, p_err, s_err")
    return f"""
SELECT {TB} AS t, sum(pairs) AS pairs, {_r('sum(agree)', 'sum(cmp_n)')} AS agreement,
       {_r('sum(diff_sum)', 'sum(diff_n)')} AS mean_abs_diff, {_r('sum(lat_sum)', 'sum(lat_n)')} AS latency_delta_ms,
       (sum(s_err) - sum(p_err)) / sum(pairs) AS error_rate_delta
FROM {src} GROUP BY t HAVING sum(pairs) > 0 ORDER BY t SETTINGS prefer_column_name_to_alias = 1"""


def shadow_confusion(p: dict[str, Any]) -> str:
    src = shadow_src(p, "p_has, p_label, s_has, s_label, pairs")
    return f"""
SELECT if(p_has = 1, p_label, '(none)') AS primary_label, if(s_has = 1, s_label, '(none)') AS shadow_label,
       sum(pairs) AS n
FROM {src} GROUP BY primary_label, shadow_label HAVING n > 0 ORDER BY n DESC LIMIT 400"""


__all__ = ["feature_split", "split", "view_split"]
