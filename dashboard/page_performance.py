"""Performance: metrics once labels arrive, and the concept-drift signals.

One readable series per detector: the performance detector's metrics per window (accuracy, F1,
ROC AUC, or MAE and RMSE) on one chart, one 0/1 verdict row per concept or output-drift detector on
the strip below it, and every statistic of every detector only behind a toggle, one small chart
per detector (never twenty series on one axis)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from driftline.dashboard import detector_queries, estimation_panel, health, queries
from driftline.dashboard.ui import Ctx, data, empty, fig_defaults, pct, plot, utc
from driftline.dashboard.verdicts import render_verdicts


def render(ctx: Ctx) -> None:
    import plotly.express as px
    import plotly.graph_objects as go

    v = ctx.view
    st.title(f"Performance: {v.model} {v.version}".rstrip())
    st.caption("Ground truth joins the prediction log by prediction id; delayed labels fill in "
               "recent buckets over time.")
    perf = data(ctx, queries.performance(v))
    if perf is None:
        return
    labelled = int(perf.labelled.sum()) if len(perf) else 0
    if not labelled:
        empty("No labels have arrived for these predictions yet.",
              "send ground truth with `monitor.log_label(prediction_id, label)` (or a label event "
              "on the labels topic); accuracy and concept-drift signals appear here as it arrives.")
    else:
        utc(perf, "t")
        total = int(perf.predictions.sum())
        c = st.columns(4)
        c[0].metric("Labelled predictions", f"{labelled:,}", f"{pct(labelled / max(1, total))} coverage",
                    delta_color="off")
        acc = (perf.accuracy * perf.labelled).sum() / labelled
        if acc == acc:
            recent = perf[perf.labelled > 0].tail(3)
            recent_acc = (recent.accuracy * recent.labelled).sum() / max(1, recent.labelled.sum())
            c[1].metric("Accuracy (range)", pct(acc))
            c[2].metric("Accuracy (latest buckets)", pct(recent_acc), f"{100 * (recent_acc - acc):+.1f} pts")
        if perf.mae.notna().any():
            c[1].metric("MAE", f"{perf.mae.mean():.4g}")
            c[2].metric("RMSE", f"{perf.rmse.mean():.4g}")
        c[3].metric("Mean label delay", f"{perf.label_delay_s.mean():.1f} s")
        left, right = st.columns(2)
        with left:
            series = [c for c in ("accuracy", "mae", "rmse") if perf[c].notna().any()]
            fig = go.Figure([go.Scatter(x=perf.t, y=perf[s], name=s, mode="lines+markers")
                             for s in series])
            plot(fig_defaults(fig, "Metrics on labelled predictions (by prediction time)"))
        with right:
            perf["coverage"] = perf.labelled / perf.predictions.clip(lower=1)
            fig = px.bar(perf, x="t", y="coverage")
            fig.update_yaxes(range=[0, 1])
            plot(fig_defaults(fig, "Label coverage", y_title="share labelled"))
        cm = data(ctx, queries.confusion(v))
        if cm is not None and len(cm):
            pivot = cm.pivot_table(index="actual", columns="predicted", values="n", fill_value=0)
            fig = px.imshow(pivot, text_auto=True, color_continuous_scale="Blues",
                            labels=dict(x="predicted", y="actual", color="count"))
            left, right = st.columns(2)
            with left:
                plot(fig_defaults(fig, "Confusion matrix (range)", height=320))
            with right:
                rows = []
                for cls in pivot.index:
                    tp = float(pivot.at[cls, cls]) if cls in pivot.columns else 0.0
                    fp = float(pivot[cls].sum()) - tp if cls in pivot.columns else 0.0
                    fn = float(pivot.loc[cls].sum()) - tp
                    prec, rec = tp / max(1.0, tp + fp), tp / max(1.0, tp + fn)
                    rows.append({"class": cls, "precision": prec, "recall": rec,
                                 "f1": 2 * prec * rec / max(1e-12, prec + rec), "support": int(tp + fn)})
                st.markdown("**Per class**")
                st.dataframe(rows, hide_index=True, width="stretch")
    render_estimation(ctx)
    _signals(ctx)


def render_estimation(ctx: Ctx) -> None:
    """Estimated against realised performance (dashboard/estimation_panel.py, issue 18)."""
    estimation_panel.render(ctx)


#: at most this many series on one small chart of the statistics toggle (the rest are listed)
MAX_SERIES_PER_CHART = 8
#: the performance detector's metrics, in the order they are drawn
PERFORMANCE_METRICS = ("accuracy", "f1", "roc_auc", "mae", "rmse")
SIGNAL_DETECTORS = (*health.DEGRADE_DETECTORS, "prediction_drift")


def _signals(ctx: Ctx) -> None:
    st.subheader("Detector signals: performance, concept drift, output drift")
    series = data(ctx, detector_queries.detector_series(ctx.view, SIGNAL_DETECTORS, health.DEGRADE_PREFIXES),
                  quiet_missing=True)
    if series is not None and len(series):
        utc(series, "t")
        _performance_chart(series)
    det = render_verdicts(ctx, SIGNAL_DETECTORS, health.DEGRADE_PREFIXES,
                          title="Verdict per detector and window (hover: which signals)",
                          key="perf_verdicts", statistics=False)
    if det is None or not len(det):
        empty("No performance or concept-drift detector output for this slice.",
              "the collector's performance and concept detectors write `driftline.drift_metrics` "
              "once labels arrive for a model with detectors enabled.")
        return
    if series is not None and len(series) and st.toggle(
            "Show every detector statistic", key="perf_statistics",
            help="One small chart per detector with each statistic it wrote per window."):
        _statistics_charts(series)


def _performance_chart(series: Any) -> None:
    import plotly.graph_objects as go

    perf = series[(series.detector == "performance") & series.statistic.isin(PERFORMANCE_METRICS)]
    if not len(perf):
        return
    fig = go.Figure()
    thresholds: dict[float, list[str]] = {}
    for stat in (s for s in PERFORMANCE_METRICS if s in set(perf.statistic)):
        rows = perf[perf.statistic == stat]
        fig.add_trace(go.Scatter(x=rows.t, y=rows.value, name=stat, mode="lines+markers"))
        thr = rows.threshold.dropna()
        if len(thr):
            thresholds.setdefault(round(float(thr.iloc[-1]), 6), []).append(stat)
    for y, stats in thresholds.items():  # a line, not a series: the legend keeps one entry per metric
        fig.add_hline(y=y, line=dict(dash="dot", width=1, color="grey"),
                      annotation_text=f"threshold ({', '.join(stats)})", annotation_position="bottom right")
    plot(fig_defaults(fig, "Performance per window (detector performance)", height=280))


def _statistics_charts(series: Any) -> None:
    import plotly.graph_objects as go

    for det, rows in series.groupby("detector", sort=True):
        names = list(dict.fromkeys(zip(rows.feature, rows.statistic)))
        fig = go.Figure()
        for feat, stat in names[:MAX_SERIES_PER_CHART]:
            one = rows[(rows.feature == feat) & (rows.statistic == stat)]
            label = stat if feat in ("model", "error") else f"{feat} · {stat}"
            fig.add_trace(go.Scatter(x=one.t, y=one.value, name=label, mode="lines"))
        plot(fig_defaults(fig, f"Detector statistics: {det}", height=220))
        if len(names) > MAX_SERIES_PER_CHART:
            st.caption(f"{det}: {len(names) - MAX_SERIES_PER_CHART} more series not drawn "
                       "(the Model page's statistic picker shows any one of them).")
