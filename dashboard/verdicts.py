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

from driftline.dashboard import detector_queries, health
from driftline.dashboard.ui import Ctx, data, fig_defaults, model_link, plot, utc

__all__ = ["MAX_FLAGS", "Flag", "current_flags", "evidence_link", "flag_lines", "measure", "render_verdicts"]

MAX_FLAGS = 10


@dataclass(frozen=True)
class Flag:
    """A detector and feature with a verdict in the detector's latest window."""

    detector: str
    feature: str
    since: dt.datetime  # first window of the current unbroken run of verdicts
    windows: int  # windows in that run
    measure: str = ""  # what the latest window measured, in words ("impact 0.44 (magnitude 0.88)")
    score: tuple[int, float] = (0, 0.0)  # ranks flags: impact where scored, else distance to threshold


def measure(r: Any) -> tuple[str, tuple[int, float]]:
    """The words and the rank of one :func:`detector_queries.latest_verdict_evidence` row: the
    impact (and JS magnitude) where the detector scored it, else the statistic furthest from its
    threshold."""
    if r.has_impact:
        return f"impact {r.impact:.2f} (magnitude {r.magnitude:.2f})", (1, float(r.impact))
    stat, value, thr, p = str(r.statistic_), float(r.stat_value), float(r.stat_threshold), float(r.stat_p_value)
    ratio = float(r.ratio) if r.ratio == r.ratio else 0.0
    if p == p:  # a test: its p-value against the level
        return f"{stat} p={p:.2g} (level {thr:.2g})", (0, ratio)
    if thr == thr:
        return f"{stat} {value:.3g} (threshold {thr:.3g})", (0, ratio)
    return f"{stat} {value:.3g}", (0, ratio)


def current_flags(verdicts: Any, evidence: Any = None) -> list[Flag]:
    """From :func:`detector_queries.detector_verdicts` rows: each (detector, feature) drifting in its
    detector's latest window, with since when (the run of windows naming it); with the rows of
    :func:`detector_queries.latest_verdict_evidence`, what it measured. Worst first (impact, then
    distance to the threshold), then longest running."""
    measured: dict[tuple[str, str], tuple[str, tuple[int, float]]] = {}
    if evidence is not None and len(evidence):
        measured = {(str(r.detector), str(r.feature)): measure(r) for r in evidence.itertuples()}
    flags: list[Flag] = []
    for det, rows in verdicts.sort_values("t").groupby("detector", sort=True):
        rows = list(rows.itertuples())
        latest = rows[-1]
        for feat in (latest.features if latest.drift else ()):
            i = len(rows) - 1
            while i > 0 and feat in rows[i - 1].features:
                i -= 1
            words, score = measured.get((str(det), str(feat)), ("", (0, 0.0)))
            flags.append(Flag(str(det), str(feat), rows[i].t.to_pydatetime(), len(rows) - i, words, score))
    return sorted(flags, key=lambda f: (-f.score[0], -f.score[1], f.since, f.detector, f.feature))


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


def evidence_link(ctx: Ctx, f: Flag) -> str:
    """Where a flag's evidence is: an input feature's drill-down on the Model page from the start of
    its run; a performance or concept signal on the Performance page, another on the Model page,
    over a range that shows as much before the run as during it."""
    v = ctx.view
    if health.family(f.detector) == 1 and f.feature not in ("*", "model") and f.detector != "prediction_drift":
        return model_link(ctx, v.model, version=v.version, segment=v.segment, feature=f.feature,
                          start=f.since)
    page = "performance" if health.family(f.detector) == 2 else "model"
    return model_link(ctx, v.model, page=page, version=v.version, segment=v.segment,
                      start=min(v.start, f.since - (v.end - f.since)))


def flag_lines(ctx: Ctx, flags: list[Flag], links: bool = True) -> list[str]:
    """The short list: one markdown line per flag (feature · detector · since · what it measured ·
    evidence link), the worst :data:`MAX_FLAGS`, then how many more."""
    lines = []
    for f in flags[:MAX_FLAGS]:
        runs = f"{f.windows} window{'s' if f.windows != 1 else ''}"
        parts = [f"**{f.feature}**", f.detector, f"since {f.since:%Y-%m-%d %H:%M} ({runs})"]
        if f.measure:
            parts.append(f.measure)
        if links:
            parts.append(f"[evidence]({evidence_link(ctx, f)})")
        lines.append("- " + " · ".join(parts))
    if len(flags) > MAX_FLAGS:
        lines.append(f"- … and {len(flags) - MAX_FLAGS} more")
    return lines


def _flag_list(ctx: Ctx, flags: list[Flag], feature_links: bool) -> None:
    if not flags:
        st.success("No detector gives a drift verdict in its latest window.")
        return
    st.warning(f"Drift verdicts in the latest window ({len(flags)})")
    st.markdown("\n".join(flag_lines(ctx, flags, links=feature_links)))


def _statistic(ctx: Ctx, detectors: tuple[str, ...], prefixes: tuple[str, ...], key: str) -> None:
    import plotly.graph_objects as go

    names = data(ctx, detector_queries.detector_series_names(ctx.view, detectors, prefixes), quiet_missing=True)
    if names is None or not len(names):
        return
    with st.expander("Statistics behind the verdicts (one series at a time)"):
        pairs = list(dict.fromkeys(f"{r.detector} · {r.feature}" for r in names.itertuples()))
        pair = st.selectbox("Detector · feature", pairs, key=f"{key}_series")
        det, feat = pair.split(" · ", 1)
        stats = [str(s) for s in names[(names.detector == det) & (names.feature == feat)].statistic]
        stat = st.selectbox("Statistic", stats, key=f"{key}_stat")
        s = data(ctx, detector_queries.detector_statistic(ctx.view, det, feat, stat))
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
                    title: str, key: str, feature_links: bool = True, statistics: bool = True) -> Any:
    """The strip chart, the flags in the latest window (with links to their evidence unless
    ``feature_links`` is off) and, with ``statistics``, the statistic picker; returns the verdict
    rows (``None`` or empty when the detectors wrote nothing for the slice)."""
    det = data(ctx, detector_queries.detector_verdicts(ctx.view, detectors, prefixes), quiet_missing=True)
    if det is None or not len(det):
        return det
    utc(det, "t")
    _strip(det, title)
    flags = current_flags(det)
    evidence = None
    if flags:
        evidence = data(ctx, detector_queries.latest_verdict_evidence(ctx.view, detectors, prefixes),
                        quiet_missing=True)
    _flag_list(ctx, current_flags(det, evidence) if evidence is not None else flags, feature_links)
    if statistics:
        _statistic(ctx, detectors, prefixes, key)
    return det
