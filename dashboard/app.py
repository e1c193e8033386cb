"""driftline dashboard: ``streamlit run dashboard/app.py`` (or ``driftline dashboard``).

A query-parameter router: ``?page=overview|model|performance|shadow|alerts|sql`` plus
``model``, ``version``, ``segment``, ``from`` and ``to`` (ISO 8601, UTC) — the deep links the
alerting service emits. The sidebar writes its state back to the address bar, so any view can be
shared by copying the URL.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Callable

import streamlit as st

from driftline.dashboard import auth
from driftline.dashboard.data import DashboardSettings, ping
from driftline.dashboard.ui import Ctx, data
from driftline.dashboard.view import (
    CUSTOM, DEFAULT_PRESET, PRESETS, View, iso, parse_params, parse_time,
)

PAGES: dict[str, str] = {
    "overview": "Overview", "model": "Model", "performance": "Performance",
    "shadow": "Shadow and A/B", "alerts": "Alerts", "sql": "SQL",
}
ALL_VERSIONS = "(all versions)"
ALL_TRAFFIC = "(all traffic)"


def _renderer(page: str) -> Callable[[Ctx], None]:
    # Imported on demand: a page's plotting code loads only when it is shown.
    import importlib

    name = {"shadow": "shadow_ab"}.get(page, page)
    return importlib.import_module(f"driftline.dashboard.page_{name}").render  # type: ignore[no-any-return]


def _init(key: str, value: Any) -> None:
    # Deep-link values seed a widget only once per session; afterwards the widget owns it.
    if key not in st.session_state:
        st.session_state[key] = value


def _time_range(link: Any, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    options = [*PRESETS, CUSTOM]
    _init("range", CUSTOM if link.start and link.end else DEFAULT_PRESET)
    _init("from", iso(link.start) if link.start else iso(now - dt.timedelta(days=1)))
    _init("to", iso(link.end) if link.end else iso(now))
    choice = st.sidebar.selectbox("Time range (UTC)", options, key="range")
    if choice != CUSTOM:
        # End rounded up to 10 s so that reruns within the cache TTL reuse the same queries.
        end = dt.datetime.fromtimestamp(math.ceil(now.timestamp() / 10) * 10, dt.timezone.utc)
        return end - dt.timedelta(seconds=PRESETS[choice]), end
    c1, c2 = st.sidebar.columns(2)
    start = parse_time(c1.text_input("From", key="from"))
    end = parse_time(c2.text_input("To", key="to"))
    if start is None or end is None or end <= start:
        st.sidebar.error("From/To must be ISO times (2026-11-24T03:00:00Z) with From before To; "
                         "showing the last 24 hours.")
        return now - dt.timedelta(days=1), now
    return start, end


def _sidebar(settings: DashboardSettings, now: dt.datetime) -> tuple[str, Ctx]:
    from driftline.dashboard import queries
    from driftline.dashboard.panel import CACHE_TTL_S

    link = parse_params(st.query_params)
    _init("page", link.page if link.page in PAGES else "overview")
    st.sidebar.title("driftline")
    page = st.sidebar.radio("Page", list(PAGES), key="page", format_func=PAGES.__getitem__)
    start, end = _time_range(link, now)
    catalog = None
    if page != "sql":
        catalog = data(Ctx(settings, View("", start, end), now, ()), queries.catalog())
    models: tuple[str, ...] = ()
    model = version = segment = ""
    if catalog is not None and len(catalog):
        # Most recently active model first: the one a person most likely came to see.
        latest = catalog.groupby("model")["last_seen"].max().sort_values(ascending=False)
        models = tuple(str(m) for m in latest.index)
        if link.model and link.model not in models:
            # The catalogue is cached briefly; a link may name a model newer than that. The
            # pages say so themselves if it really has no data.
            models = (*models, link.model)
        _init("model", link.model if link.model in models else models[0])
        if page not in ("overview", "alerts", "sql"):
            model = st.sidebar.selectbox("Model", models, key="model")
            versions = [str(v) for v in catalog[catalog.model == model].model_version]
            _init("version", link.version if link.version in versions else ALL_VERSIONS)
            if st.session_state["version"] not in [ALL_VERSIONS, *versions]:
                st.session_state["version"] = ALL_VERSIONS
            chosen = st.sidebar.selectbox("Version", [ALL_VERSIONS, *versions], key="version")
            version = "" if chosen == ALL_VERSIONS else chosen
            seg_df = data(Ctx(settings, View(model, start, end, version), now, models),
                          queries.segments(View(model, start, end, version)))
            seg_opts = [ALL_TRAFFIC] + ([str(s) for s in seg_df.segment] if seg_df is not None else [])
            if link.segment and link.segment not in seg_opts:
                seg_opts.append(link.segment)
            _init("segment", link.segment or ALL_TRAFFIC)
            chosen = st.sidebar.selectbox("Segment (tag=value)", seg_opts, key="segment")
            segment = "" if chosen == ALL_TRAFFIC else chosen
        else:
            model = str(st.session_state["model"])
    if catalog is not None and len(catalog) and page != "alerts" and st.session_state.get("range") != CUSTOM:
        # A preset wider than the data (a demo started a minute ago, "last 24 hours") would
        # squeeze everything into one bucket: start the charts where the data starts.
        rows = catalog[catalog.model == model] if model else catalog
        if len(rows):
            first = rows.first_seen.min().to_pydatetime().replace(tzinfo=dt.timezone.utc)
            first = dt.datetime.fromtimestamp(math.floor(first.timestamp() / 10) * 10, dt.timezone.utc)
            if start < first < end:
                start = first
    _sync_params(page, model, version, segment, start, end)
    st.sidebar.caption(f"ClickHouse: {settings.clickhouse_url.split('@')[-1]} · read-only · "
                       f"times in UTC · data cached {CACHE_TTL_S} s")
    return page, Ctx(settings, View(model, start, end, version, segment, link.feature), now, models)


def _sync_params(page: str, model: str, version: str, segment: str, start: dt.datetime,
                 end: dt.datetime) -> None:
    params = {"page": page}
    if model and page not in ("overview", "sql"):
        params["model"] = model
    if version:
        params["version"] = version
    if segment:
        params["segment"] = segment
    if st.session_state.get("range") == CUSTOM:
        params["from"], params["to"] = iso(start), iso(end)
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)


def main(settings: DashboardSettings | None = None, now: dt.datetime | None = None) -> None:
    """Render one run of the app (Streamlit calls the script top to bottom on every rerun)."""
    st.set_page_config(page_title="driftline", page_icon="📉", layout="wide")
    settings = settings or DashboardSettings.from_env()
    if not auth.gate(auth.load_token()):
        st.stop()
    now = now or dt.datetime.now(dt.timezone.utc)
    problem = ping(settings.clickhouse_url)
    if problem:
        st.title("driftline")
        st.error(problem)
        st.info("The dashboard reads everything from ClickHouse. Start the whole stack with "
                "`driftline up` (add `--demo` for live example traffic), or point the dashboard "
                "at your server: `driftline dashboard --clickhouse-url http://host:8123`.")
        st.button("Retry")
        return
    page, ctx = _sidebar(settings, now)
    if page not in ("overview", "alerts", "sql") and not ctx.view.model:
        st.title(PAGES[page])
        st.info("No predictions are logged yet.\n\n**Next step:** wrap your model with the SDK "
                "(`Monitor(model=…).log(features, prediction)`), put the sidecar in front of your "
                "model server, or try `driftline up --demo`.")
        return
    _renderer(page)(ctx)


main()
