"""Model: volume, latency, outputs and confidence over time; one verdict strip per detector (the
statistics on demand); drift heatmap; feature drill-down."""

from __future__ import annotations

import streamlit as st

from driftline.dashboard import detector_queries, health, queries
from driftline.dashboard.drilldown import render_drilldown
from driftline.dashboard.notices import render_notices
from driftline.dashboard.ui import COLORS, Ctx, data, empty, fig_defaults, plot, utc
from driftline.dashboard.verdicts import render_verdicts
from driftline.detectors.base import SUMMARY_STATISTICS


def render(ctx: Ctx) -> None:
    import plotly.express as px
    import plotly.graph_objects as go

    v = ctx.view
    where = f"{v.model} {v.version or '(all versions)'}" + (f" · segment {v.segment}" if v.segment else "")
    st.title(f"Model: {where}")
    st.caption(f"{v.start:%Y-%m-%d %H:%M} – {v.end:%Y-%m-%d %H:%M} UTC · buckets of {v.bucket_s} s")
    render_notices(ctx)

    vol = data(ctx, queries.volume(v))
    if vol is None:
        return
    if not len(vol):
        empty(f"No predictions for {where} in this time range.",
              "widen the time range or pick another version/segment in the sidebar.")
        return
    utc(vol, "t")
    total, errors = int(vol.n.sum()), int(vol.errors.sum())
    c = st.columns(4)
    c[0].metric("Predictions", f"{total:,}")
    c[1].metric("Error rate", f"{100 * errors / max(1, total):.2f}%")
    c[2].metric("Variants", ", ".join(sorted(vol.variant.unique())))
    lat = data(ctx, queries.latency(v))
    if lat is not None and len(lat):
        c[3].metric("Latency p95 (latest bucket)", f"{lat.p95.iloc[-1]:.1f} ms")

    left, right = st.columns(2)
    with left:
        vol["per_s"] = vol["n"] / v.bucket_s
        fig = px.bar(vol, x="t", y="per_s", color="variant", color_discrete_map=COLORS)
        plot(fig_defaults(fig, "Volume by variant (per second)", y_title="per second"))
    with right:
        if lat is not None and len(lat):
            utc(lat, "t")
            fig = go.Figure([go.Scatter(x=lat.t, y=lat[q], name=q, mode="lines")
                             for q in ("p50", "p95", "p99")])
            plot(fig_defaults(fig, "Latency (ms, served variants)", y_title="ms"))

    left, right = st.columns(2)
    with left:
        labels = data(ctx, queries.prediction_labels(v))
        values = None
        if labels is not None and len(labels):
            utc(labels, "t")
            labels["share"] = labels.n / labels.groupby("t").n.transform("sum")
            fig = px.area(labels, x="t", y="share", color="label")
            plot(fig_defaults(fig, "Predicted class share", y_title="share"))
        else:
            values = data(ctx, queries.prediction_values(v))
            if values is not None and len(values):
                utc(values, "t")
                fig = go.Figure([go.Scatter(x=values.t, y=values[q], name=q, mode="lines")
                                 for q in ("p10", "p50", "p90")])
                plot(fig_defaults(fig, "Prediction value (quantiles)"))
            else:
                st.caption("No class labels or numeric predictions to plot.")
    with right:
        conf = data(ctx, queries.confidence(v))
        if conf is not None and len(conf):
            utc(conf, "t")
            fig = go.Figure([go.Scatter(x=conf.t, y=conf[q], name=q, mode="lines")
                             for q in ("mean", "p10", "p50")])
            fig.update_yaxes(range=[0, 1])
            plot(fig_defaults(fig, "Confidence (top-class score)", y_title="score"))
        else:
            st.caption("Confidence needs class→score predictions; this model logs none.")

    st.subheader("Detector verdicts per window")
    verdicts = render_verdicts(ctx, (*health.DRIFT_DETECTORS, "quality"), health.DRIFT_PREFIXES,
                               title="Drift verdict per detector and window (hover: which features)",
                               key="model_verdicts", feature_links=True)
    if verdicts is not None and not len(verdicts):
        st.caption("No data-drift, prediction-drift or quality detector output for this slice yet.")
    render_drilldown(ctx, _heatmap(ctx))


def _heatmap(ctx: Ctx) -> tuple[str, ...]:
    """Draw the heatmap; return the features drifting in the latest window, worst first."""
    import plotly.graph_objects as go

    v = ctx.view
    st.subheader("Feature drift over time")
    stats = data(ctx, detector_queries.drift_statistics(v), quiet_missing=True)
    if stats is not None and len(stats):  # an empty result carries no columns
        stats = stats[stats.detector == "data_drift"]
    if stats is None or not len(stats):
        empty("No data-drift detector output for this slice yet.",
              "the collector's detectors write `driftline.drift_metrics` once a window closes (by default "
              "after the first 1,000 events, which serve as the reference until you set one from training "
              f"data: `driftline reference set --model {v.model} --version V --file train.parquet`); "
              "the drill-down below compares against earlier traffic meanwhile.")
        return ()
    options = [s for s in stats.statistic if s not in SUMMARY_STATISTICS] or list(stats.statistic)
    default = options.index("psi") if "psi" in options else 0
    statistic = st.selectbox("Statistic", options, index=default, key="heat_stat")
    hm = data(ctx, detector_queries.drift_heatmap(v, "data_drift", statistic))
    if hm is None or not len(hm):
        return ()
    utc(hm, "t")
    pivot = hm.pivot_table(index="feature", columns="t", values="value", aggfunc="max")
    drifted = hm.pivot_table(index="feature", columns="t", values="drift", aggfunc="max")
    is_p = statistic in ("ks", "chi2")
    fig = go.Figure(go.Heatmap(
        z=pivot.values, x=list(pivot.columns), y=list(pivot.index),
        colorscale="RdYlGn" if is_p else "YlOrRd", reversescale=False,
        customdata=drifted.reindex_like(pivot).values,
        hovertemplate="%{y}<br>%{x}<br>" + statistic + " %{z:.3f}<br>verdict: drift %{customdata}<extra></extra>"))
    plot(fig_defaults(fig, f"{statistic} per feature and window (detector data_drift)",
                      height=max(220, 28 * len(pivot) + 80)))
    latest = hm[hm.t == hm.t.max()]
    worst = latest[latest.drift.astype(bool)].sort_values("value", ascending=is_p)
    now_drifting = sorted(worst.feature)
    if now_drifting:
        # Since when each one drifts is in the verdict list above.
        st.warning(f"Drifting in the latest window: {', '.join(now_drifting)}")
    else:
        st.success("No feature drifts in the latest window.")
    return tuple(worst.feature)
