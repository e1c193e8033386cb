"""Overview: is each model healthy? State (healthy / drifting / degraded) and since when, the top
drifted features, the alarm budget and its use, open alerts, traffic and latency."""

from __future__ import annotations

import streamlit as st

from driftline.dashboard import detector_queries, health, queries
from driftline.dashboard.ui import Ctx, data, empty, fig_defaults, model_link, plot, utc


# Cell colours of the state column (text, not emoji: headless and minimal systems lack the font).
_STATE_STYLE = {health.HEALTHY: "background-color: #d8f0d8", health.DRIFTING: "background-color: #ffe0b3",
                health.DEGRADED: "background-color: #f8c4c4", health.NO_OUTPUT: "color: #888888"}


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
    rows_h = data(ctx, detector_queries.overview_health(v.start, v.end), quiet_missing=True)
    verdicts = uses = None
    since = None if rows_h is None else health.verdicts_since(rows_h)
    if since is not None:  # only when some model drifts or is degraded now
        verdicts = data(ctx, detector_queries.overview_verdicts(since, v.end))
    if rows_h is not None and len(rows_h):
        uses = data(ctx, detector_queries.overview_budget_use(v.end))
    alerts = data(ctx, queries.open_alerts(), quiet_missing=True)
    if alerts is not None and not len(alerts):
        alerts = None  # an empty result carries no columns to group by
    healths = {} if rows_h is None else health.model_health(rows_h, verdicts, uses)
    alerts_by = {} if alerts is None else alerts.groupby("model").size().to_dict()
    sev_by = {} if alerts is None else alerts.groupby("model")["severity"].agg(
        lambda s: "critical" if "critical" in set(s) else str(s.iloc[0])).to_dict()

    no_output = health.ModelHealth("", health.NO_OUTPUT, "no detector output in the time read",
                                   None, False, None, (), None, 0, "")
    lines = [healths.get(str(r.model), no_output) for r in models.itertuples()]
    c = st.columns(5)
    c[0].metric("Models", len(models))
    c[1].metric("Predictions", f"{int(models.predictions.sum()):,}")
    for col, state in zip(c[2:], (health.HEALTHY, health.DRIFTING, health.DEGRADED)):
        col.metric(state.capitalize(), sum(1 for h in lines if h.state == state))

    rows = []
    for r, h in zip(models.itertuples(), lines):
        since = ""
        if h.since is not None:
            since = ("before " if h.since_open else "") + f"{h.since:%Y-%m-%d %H:%M}"
        top = ", ".join(f.feature for f in h.top())
        if top and h.ranked_by:
            top += f" (by {h.ranked_by})"
        # The deep link opens the model page from the start of the current state.
        start = min(v.start, h.since) if h.since is not None and h.state != health.HEALTHY else None
        rows.append({
            "model": r.model, "open": model_link(ctx, r.model, start=start), "state": h.state,
            "since": since, "top drifted features": top,
            "alarm budget · use": h.budget_use() if h.latest_window else "", "why": h.rule,
            "open alerts": int(alerts_by.get(r.model, 0)), "worst severity": sev_by.get(r.model, ""),
            "predictions": int(r.predictions), "per second": round(float(r.per_s), 2),
            "p50 ms": r.p50_ms, "p95 ms": r.p95_ms, "p99 ms": r.p99_ms, "error rate": float(r.error_rate), "versions": r.versions,
            "last seen": r.last_seen,
        })
    import pandas as pd

    table = pd.DataFrame(rows).style.map(lambda x: _STATE_STYLE.get(x, ""), subset=["state"])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "open": st.column_config.LinkColumn("open", display_text="model page"),
        "p50 ms": st.column_config.NumberColumn(format="%.1f"),
        "p95 ms": st.column_config.NumberColumn(format="%.1f"),
        "p99 ms": st.column_config.NumberColumn(format="%.1f"),
        "error rate": st.column_config.NumberColumn(format="percent"),
    })
    st.caption(
        "**degraded**: a performance or concept-drift verdict in its latest window; **drifting**: "
        "otherwise a data or prediction drift verdict in its latest window; **since**: the first "
        "window of the current unbroken run (all traffic). Top features rank by impact (importance "
        "× drift magnitude) where the detector scored it, else by the crossed statistic furthest "
        "past its threshold. The alarm budget is how many false verdicts the thresholds allow on "
        "traffic that does not drift; drift windows during a real shift are expected use, not false "
        "alarms, so a count above the budget means the model really changed (or the reference is "
        "stale), not that the detector misfired.")
    _attention(ctx, [(str(r.model), h) for r, h in zip(models.itertuples(), lines)])
    if rows_h is None:
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


def attention_lines(ctx: Ctx, healths: list[tuple[str, health.ModelHealth]]) -> list[str]:
    """One markdown line per drifting or degraded model, worst state first: its state since when and
    its top drifted features by impact, each a link to the feature's drill-down from the start of
    the state; a degraded model without drifted inputs says which signal degraded."""
    order = {s: i for i, s in enumerate(health.STATES)}
    lines = []
    for model, h in sorted(healths, key=lambda mh: (order.get(mh[1].state, len(order)), mh[0])):
        if h.state not in (health.DEGRADED, health.DRIFTING):
            continue
        since = "" if h.since is None else (
            f" since {'before ' if h.since_open else ''}{h.since:%Y-%m-%d %H:%M}")
        start = None if h.since is None or h.since_open else h.since
        line = f"- **{model}** · {h.state}{since}"
        feats = [f"[{f.feature}]({model_link(ctx, model, feature=f.feature, start=start)})"
                 + (f" ({f.words()})" if f.words() else "") for f in h.top()]
        if feats:
            line += f" · top drifted features by {h.ranked_by or 'impact'}: " + ", ".join(feats)
        else:
            line += " · " + (f"signals: {h.rule.split(' — ', 1)[1]}" if " — " in h.rule else h.rule)
        page = "performance" if h.state == health.DEGRADED else "model"
        lines.append(line + f" · [{page} page]({model_link(ctx, model, page=page, start=start)})")
    return lines


def _attention(ctx: Ctx, healths: list[tuple[str, health.ModelHealth]]) -> None:
    lines = attention_lines(ctx, healths)
    if lines:
        st.subheader("Drifting and degraded models")
        st.markdown("\n".join(lines))
