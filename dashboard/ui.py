"""Shared page helpers: the page context, panel data with error states, and plot defaults."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import streamlit as st

from driftline.dashboard.data import DashboardSettings, DataError
from driftline.dashboard.panel import Query, fetch
from driftline.dashboard.view import View, link

COLORS = {"primary": "#1f77b4", "shadow": "#9467bd", "challenger": "#ff7f0e"}


@dataclass(frozen=True)
class Ctx:
    """Everything a page needs: settings, the selected slice, and the model catalogue."""

    settings: DashboardSettings
    view: View
    now: dt.datetime
    models: tuple[str, ...]

    @property
    def url(self) -> str:
        return self.settings.clickhouse_url


def data(ctx: Ctx, q: Query, *, quiet_missing: bool = False) -> Any:
    """The panel's rows as a DataFrame, or ``None`` after showing why (never a traceback)."""
    try:
        return fetch(ctx.url, q).df()
    except DataError as exc:
        if quiet_missing and exc.code == "UNKNOWN_TABLE":
            return None
        st.error(f"Panel '{q.name}' could not load: {exc.message}")
        if exc.hint:
            st.caption(exc.hint)
        return None


def empty(what: str, next_step: str) -> None:
    """An empty state that says what would fill it."""
    st.info(f"{what}\n\n**Next step:** {next_step}")


def utc(df: Any, *cols: str) -> Any:
    """ClickHouse returns naive UTC datetimes; label them so plots show UTC."""
    import pandas as pd

    for c in cols:
        if c in df:
            df[c] = pd.to_datetime(df[c]).dt.tz_localize("UTC")
    return df


def fig_defaults(fig: Any, title: str = "", height: int = 300, y_title: str = "") -> Any:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=dict(orientation="h", y=-0.2), hovermode="x unified")
    if y_title:
        fig.update_yaxes(title=y_title)
    fig.update_xaxes(title="")
    return fig


def plot(fig: Any) -> None:
    st.plotly_chart(fig, width="stretch", config={"displaylogo": False})


def model_link(ctx: Ctx, model: str, page: str = "model", start: dt.datetime | None = None,
               end: dt.datetime | None = None, version: str = "", segment: str = "",
               feature: str = "") -> str:
    return link(page, model, version, segment, start or ctx.view.start, end or ctx.view.end,
                feature=feature)


def pct(x: Any) -> str:
    try:
        return f"{100 * float(x):.1f}%"
    except (TypeError, ValueError):
        return "n/a"


def num(x: Any, fmt: str = "{:,.0f}") -> str:
    try:
        if x is None or x != x:  # None or NaN
            return "n/a"
        return fmt.format(x)
    except (TypeError, ValueError):
        return "n/a"


__all__ = ["COLORS", "Ctx", "data", "empty", "fig_defaults", "model_link", "num", "pct", "plot", "utc"]
