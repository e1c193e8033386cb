"""Overview: every model at a glance — traffic, latency, errors, drift status, open alerts."""

from __future__ import annotations

import streamlit as st

from driftline.dashboard import queries
from driftline.dashboard.ui import Ctx, data, empty, fig_defaults, model_link, plot, utc


def render(ctx: Ctx) -> None:
    v = ctx.view
    st.title("Overview")
    st.caption(f"{v.start:%Y-%m-%d %H:%M} – {v.end:%Y-%m-%d %H:%M} UTC")
    models = data(ctx, queries.overview_models(v.start, v.end))
    if models is None:
        return
    if not len(models):
        empty("No predictions in this time range.",
              "widen the time range in the sidebar, or log predictions with the SDK / sidecar "
              "(`driftline up --demo` shows live example traffic).")
        return
    drift = data(ctx, queries.overview_drift(v.start, v.end), quiet_missing=True)
    alerts = data(ctx, queries.open_alerts(), quiet_missing=True)
    drift_by = {} if drift is None else {r.model: r for r in drift.itertuples()}
    alerts_by = {} if alerts is None else alerts.groupby("model").size().to_dict()
    sev_by = {} if alerts is None else alerts.groupby("model")["severity"].agg(
        lambda s: "critical" if "critical" in set(s) else str(s.iloc[0])).to_dict()

    n_alerts = sum(alerts_by.values())
    n_drifting = sum(1 for r in drift_by.values() if r.drifting)
    c = st.columns(4)
    c[0].metric("Models", len(models))
    c[1].metric("Predictions", f"{int(models.predictions.sum()):,}")
    c[2].metric("Models drifting (latest window)", n_drifting)
    c[3].metric("Open alerts", n_alerts)

    rows = []
    for r in models.itertuples():
        d = drift_by.get(r.model)
        if d is None:
            status = "no detector output"
        elif d.drifting:
            status = f"DRIFT: {', '.join(str(x) for x in d.what[:4])}"
        else:
            status = f"ok ({d.checks} checks)"
        rows.append({
            "model": r.model, "open": model_link(ctx, r.model), "versions": r.versions,
            "predictions": int(r.predictions), "per second": round(float(r.per_s), 2),
            "p50 ms": r.p50_ms, "p95 ms": r.p95_ms, "p99 ms": r.p99_ms,
            "error rate": float(r.error_rate), "drift": status,
            "open alerts": int(alerts_by.get(r.model, 0)),
            "worst severity": sev_by.get(r.model, ""), "last seen": r.last_seen,
        })
    import pandas as pd

    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "open": st.column_config.LinkColumn("open", display_text="model page"),
        "p50 ms": st.column_config.NumberColumn(format="%.1f"),
        "p95 ms": st.column_config.NumberColumn(format="%.1f"),
        "p99 ms": st.column_config.NumberColumn(format="%.1f"),
        "error rate": st.column_config.NumberColumn(format="percent"),
    })
    if drift is None:
        st.caption("No detector output table yet: the collector writes `driftline.drift_metrics` "
                   "once detectors run.")

    traffic = data(ctx, queries.overview_traffic(v.start, v.end, v.bucket_s))
    if traffic is not None and len(traffic):
        import plotly.express as px

        utc(traffic, "t")
        traffic["per_s"] = traffic["n"] / v.bucket_s
        fig = px.line(traffic, x="t", y="per_s", color="model")
        plot(fig_defaults(fig, "Traffic (predictions per second)", y_title="per second"))
    if alerts is not None and len(alerts):
        st.subheader("Open alerts")
        st.dataframe(alerts[["severity", "rule", "model", "model_version", "segment", "condition",
                             "since", "last_event"]], hide_index=True, width="stretch")
