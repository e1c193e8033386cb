"""Detector verdicts as a page shows them: one strip per detector, flags as a short list, and the
statistics behind a verdict one at a time, on demand.

Used by the Model page (data and prediction drift, quality) and the Performance page (performance,
concept drift, output drift). A strip cell is red when the detector gave a drift verdict in that
window; hovering it lists the features. Twenty statistics on one axis say less than this.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import streamlit as st

from driftline.dashboard import queries
from driftline.dashboard.ui import Ctx, data, fig_defaults, model_link, plot, utc

__all__ = ["Flag", "current_flags", "render_verdicts"]

MAX_FLAGS = 8


@dataclass(frozen=True)
class Flag:
    """A detector and feature with a verdict in the detector's latest window."""

    detector: str
    feature: str
    since: dt.datetime  # first window of the current unbroken run of verdicts
    windows: int  # windows in that run


def current_flags(verdicts: Any) -> list[Flag]:
    """From :func:`queries.detector_verdicts` rows: each (detector, feature) drifting in its
    detector's latest window, with since when (the run of windows naming it), longest first."""
    flags: list[Flag] = []
    for det, rows in verdicts.sort_values("t").groupby("detector", sort=True):
        rows = list(rows.itertuples())
        latest = rows[-1]
        for feat in (latest.features if latest.drift else ()):
            i = len(rows) - 1
            while i > 0 and feat in rows[i - 1].features:
                i -= 1
            flags.append(Flag(str(det), str(feat), rows[i].t.to_pydatetime(), len(rows) - i))
    return sorted(flags, key=lambda f: (f.since, f.detector, f.feature))


def _hover(r: Any) -> str:
    if not r.drift:
        return f"no drift verdict ({r.judged} judged)"
    names = list(r.features)
    more = f" (+{r.drifted - len(names)} more)" if r.drifted > len(names) else ""
    return f"drift verdict on {r.drifted} of {r.judged}: " + ", ".join(names) + more


def _strip(det: Any, title: str) -> None:
    import plotly.graph_objects as go

    order = sorted(det.detector.unique())
    fig = go.Figure()
    for value, name, color in ((0, "no drift", "#cfe8cf"), (1, "drift verdict", "#d62728")):
        rows = det[det.drift.astype(int) == value]
        fig.add_trace(go.Scatter(
            x=rows.t, y=rows.detector, mode="markers", name=name,
            marker=dict(symbol="square", size=14, color=color, line=dict(width=0)),
            text=[_hover(r) for r in rows.itertuples()],
            hovertemplate="%{y} · %{x}<br>%{text}<extra></extra>"))
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], title="")
    fig = fig_defaults(fig, title, height=max(160, 46 * len(order) + 110))
    fig.update_layout(hovermode="closest")
    plot(fig)


def _flag_list(ctx: Ctx, flags: list[Flag], feature_links: bool) -> None:
    if not flags:
        st.success("No detector gives a drift verdict in its latest window.")
        return
    lines = []
    for f in flags[:MAX_FLAGS]:
        line = (f"- **{f.detector}** · {f.feature} — since {f.since:%Y-%m-%d %H:%M} ({f.windows} "
                f"window{'s' if f.windows != 1 else ''})")
        if feature_links and f.feature not in ("*", "model"):
            url = model_link(ctx, ctx.view.model, version=ctx.view.version, segment=ctx.view.segment,
                             feature=f.feature)
            line += f" · [drill down]({url})"
        lines.append(line)
    if len(flags) > MAX_FLAGS:
        lines.append(f"- … and {len(flags) - MAX_FLAGS} more")
    st.warning(f"Drift verdicts in the latest window ({len(flags)})")
    st.markdown("\n".join(lines))


def _statistic(ctx: Ctx, detectors: tuple[str, ...], prefixes: tuple[str, ...], key: str) -> None:
    import plotly.graph_objects as go

    names = data(ctx, queries.detector_series_names(ctx.view, detectors, prefixes), quiet_missing=True)
    if names is None or not len(names):
        return
    with st.expander("Statistics behind the verdicts (one series at a time)"):
        pairs = list(dict.fromkeys(f"{r.detector} · {r.feature}" for r in names.itertuples()))
        pair = st.selectbox("Detector · feature", pairs, key=f"{key}_series")
        det, feat = pair.split(" · ", 1)
        stats = [str(s) for s in names[(names.detector == det) & (names.feature == feat)].statistic]
        stat = st.selectbox("Statistic", stats, key=f"{key}_stat")
        s = data(ctx, queries.detector_statistic(ctx.view, det, feat, stat))
        if s is None or not len(s):
            return
        utc(s, "t")
        fig = go.Figure([go.Scatter(x=s.t, y=s.value, name=stat, mode="lines+markers")])
        if s.threshold.notna().any() and s.p_value.isna().all():
            fig.add_scatter(x=s.t, y=s.threshold, name="threshold", mode="lines",
                            line=dict(dash="dash", color="grey"))
        flagged = s[s.drift.astype(bool)]
        if len(flagged):
            fig.add_scatter(x=flagged.t, y=flagged.value, mode="markers", name="drift verdict",
                            marker=dict(color="#d62728", size=10, symbol="x"))
        plot(fig_defaults(fig, f"{det} · {feat} · {stat} per window", height=300))
        if s.p_value.notna().any():
            st.caption(f"{stat} is a test: the verdict uses its p-value (threshold "
                       f"{s.threshold.dropna().iloc[-1]:.3g}), the chart its statistic.")


def render_verdicts(ctx: Ctx, detectors: tuple[str, ...], prefixes: tuple[str, ...] = (), *,
                    title: str, key: str, feature_links: bool = False) -> Any:
    """The strip chart, the flags in the latest window and the statistic picker; returns the
    verdict rows (``None`` or empty when the detectors wrote nothing for the slice)."""
    det = data(ctx, queries.detector_verdicts(ctx.view, detectors, prefixes), quiet_missing=True)
    if det is None or not len(det):
        return det
    utc(det, "t")
    _strip(det, title)
    _flag_list(ctx, current_flags(det), feature_links)
    _statistic(ctx, detectors, prefixes, key)
    return det
