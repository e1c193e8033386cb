"""Estimated and realised performance over time: one chart per metric, with the estimate's band
and the label coverage (issue 18), for the performance page.

Reads ``driftline.performance_estimates`` (``FINAL``: a window's latest row, graded by the labels
that arrived since it closed). The estimation error shown beside the chart is the mean
|estimate - realised| over the windows in range that have a realised value, weighted equally.

>>> import pandas as pd
>>> df = pd.DataFrame({"metric": ["accuracy"] * 2, "estimate": [0.8, 0.7], "realised": [0.82, None],
...                    "labelled": [400, 0]})
>>> err, graded = estimation_error(df, "accuracy")
>>> round(err, 3), graded
(0.02, 1)
"""

from __future__ import annotations

from typing import Any

from driftline.collector.store.tables import DATABASE, PERFORMANCE_ESTIMATES_TABLE
from driftline.dashboard.panel import Query, metrics_where, query
from driftline.dashboard.view import View

__all__ = ["estimates", "estimation_error", "render"]

_ORDER = ("accuracy", "f1", "roc_auc", "precision", "recall", "mae", "rmse")


def estimates(v: View) -> Query:
    """Every metric's estimate, band, realised value and label coverage per window of the slice."""
    w, p = metrics_where(v)
    return query("performance.estimates", f"""
SELECT window_start AS t, window_end, model_version, metric, method, estimate, lower, upper, level,
       threshold, verdict, realised, labelled, labelled_share, n
FROM {DATABASE}.{PERFORMANCE_ESTIMATES_TABLE} FINAL
WHERE {w} ORDER BY model_version, metric, t""", p)


def estimation_error(df: Any, metric: str) -> tuple[float | None, int]:
    """Mean |estimate - realised| of ``metric`` over the windows graded so far, and how many."""
    m = df[(df.metric == metric) & df.realised.notna() & df.estimate.notna() & (df.labelled > 0)]
    if not len(m):
        return None, 0
    return float((m.estimate - m.realised).abs().mean()), int(len(m))


def render(ctx: Any) -> None:
    """The panel: nothing but a caption when no estimates exist for the slice."""
    import plotly.graph_objects as go
    import streamlit as st

    from driftline.dashboard.ui import data, fig_defaults, plot, utc

    df = data(ctx, estimates(ctx.view), quiet_missing=True)
    st.subheader("Estimated performance (before the labels) and realised (as they arrive)")
    if df is None or not len(df):
        st.caption("No performance estimates for this slice: store the version's reference with its "
                    "labels (`driftline reference set ... --labels COLUMN`) or set "
                    "`performance_estimation.reference_labels` in the detector config.")
        return
    utc(df, "t")
    version = ctx.view.version or str(df.sort_values("t").model_version.iloc[-1])
    df = df[df.model_version == version]
    metrics = [m for m in _ORDER if m in set(df.metric)]
    metric = st.selectbox("Metric", metrics, key="estimation_metric")
    m = df[df.metric == metric].sort_values("t")
    err, graded = estimation_error(df, metric)
    c = st.columns(3)
    c[0].metric(f"Estimated {metric} (latest window)", f"{m.estimate.iloc[-1]:.3f}"
                if m.estimate.notna().any() else "n/a")
    c[1].metric("Estimation error (mean |estimate - realised|)", f"{err:.3f}" if err is not None else "n/a",
                f"over {graded} graded windows", delta_color="off")
    c[2].metric("Label coverage (latest window)", f"{100 * m.labelled_share.iloc[-1]:.0f} %")
    level = float(m.level.iloc[-1])
    fig = go.Figure([
        go.Scatter(x=m.t, y=m.upper, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"),
        go.Scatter(x=m.t, y=m.lower, mode="lines", line=dict(width=0), fill="tonexty",
                   fillcolor="rgba(31,119,180,0.2)", name=f"{level:.0%} band"),
        go.Scatter(x=m.t, y=m.estimate, mode="lines+markers", name=f"estimated ({m.method.iloc[-1].upper()})"),
        go.Scatter(x=m.t, y=m.realised, mode="markers", marker=dict(symbol="diamond", size=9),
                   name="realised (labelled rows)"),
        go.Bar(x=m.t, y=m.labelled_share, name="label coverage", yaxis="y2", opacity=0.25),
    ])
    if m.threshold.notna().any():
        fig.add_hline(y=float(m.threshold.dropna().iloc[-1]), line_dash="dot",
                      annotation_text="threshold")
    fig.update_layout(yaxis2=dict(overlaying="y", side="right", range=[0, 1], title="share labelled",
                                  showgrid=False))
    plot(fig_defaults(fig, f"{metric}: estimated with band, realised, label coverage ({version})", height=360))
    flagged = m[m.verdict]
    if len(flagged):
        st.caption(f"{len(flagged)} window(s) with the estimated {metric} past the threshold "
                   "(the whole band, at the false-alarm budget's level).")
