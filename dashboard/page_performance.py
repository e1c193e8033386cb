"""Performance: metrics once labels arrive, and the concept-drift signals."""

from __future__ import annotations

import streamlit as st

from driftline.dashboard import estimation_panel, health, queries
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
    estimation_panel.render(ctx)  # estimated vs realised performance (issue 18), before any label
    _signals(ctx)


def _signals(ctx: Ctx) -> None:
    st.subheader("Detector signals: performance, concept drift, output drift")
    det = render_verdicts(ctx, (*health.DEGRADE_DETECTORS, "prediction_drift"), health.DEGRADE_PREFIXES,
                          title="Verdict per detector and window (hover: which signals)",
                          key="perf_verdicts", feature_links=False)
    if det is None or not len(det):
        empty("No performance or concept-drift detector output for this slice.",
              "the collector's performance and concept detectors write `driftline.drift_metrics` "
              "once labels arrive for a model with detectors enabled.")
