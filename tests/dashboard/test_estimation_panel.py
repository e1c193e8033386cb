"""dashboard/estimation_panel.py: its query on the session's store reads each window's latest
row (graded by later labels), and the estimation error counts graded windows only."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from driftline.dashboard.estimation_panel import estimates, estimation_error
from driftline.dashboard.view import View

COLS = ["model", "model_version", "segment", "window_start", "window_end", "metric", "method", "estimate",
        "lower", "upper", "level", "threshold", "verdict", "realised", "labelled", "labelled_share", "n",
        "updated_at"]
T0 = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)


def test_the_panel_reads_the_latest_grade_of_each_window(ch_client: Any) -> None:
    from driftline.collector.store import migrate

    migrate(ch_client)
    model = f"est-{uuid.uuid4().hex[:8]}"
    w = dt.timedelta(hours=1)

    def row(i: int, est: float, realised: float | None, labelled: int, at: int, segment: str = "") -> list:
        s = T0 + i * w
        return [model, "v1", segment, s, s + w, "accuracy", "cbpe", est, est - 0.03, est + 0.03, 0.95, 0.8,
                est + 0.03 < 0.8, realised, labelled, labelled / 1000, 1000, T0 + dt.timedelta(days=at)]

    ch_client.insert("driftline.performance_estimates",
                     [row(0, 0.9, None, 0, 1), row(1, 0.7, None, 0, 1), row(0, 0.9, 0.88, 500, 2),
                      row(1, 0.7, 0.75, 300, 2), row(2, 0.72, None, 0, 2), row(0, 0.5, 0.5, 10, 2, "r=eu")],
                     column_names=COLS)
    q = estimates(View(model, T0, T0 + 10 * w))
    df = ch_client.query_df(q.sql, parameters=dict(q.params))
    assert list(df.estimate) == [0.9, 0.7, 0.72]  # one row per window, segment '' only
    assert list(df.labelled) == [500, 300, 0] and list(df.verdict) == [False, True, True]
    err, graded = estimation_error(df, "accuracy")
    assert graded == 2 and abs(err - (0.02 + 0.05) / 2) < 1e-9


def _panel(url: str, model: str, start: str, end: str) -> None:
    import datetime as dt

    from driftline.dashboard import estimation_panel
    from driftline.dashboard.data import DashboardSettings
    from driftline.dashboard.ui import Ctx
    from driftline.dashboard.view import View

    s, e = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    estimation_panel.render(Ctx(DashboardSettings.from_env({"DRIFTLINE_CLICKHOUSE_URL": url}),
                                View(model, s, e), e, (model,)))


def test_the_panel_draws_band_realised_and_coverage(ch_client: Any, clickhouse_url: str) -> None:
    from streamlit.testing.v1 import AppTest

    model = f"est-{uuid.uuid4().hex[:8]}"
    w = dt.timedelta(hours=1)
    rows = [[model, "v1", "", T0 + i * w, T0 + (i + 1) * w, "accuracy", "cbpe", 0.9 - 0.05 * i,
             0.87 - 0.05 * i, 0.93 - 0.05 * i, 0.95, 0.8, 0.93 - 0.05 * i < 0.8,
             (0.88 - 0.05 * i) if i < 3 else None, 400 if i < 3 else 0, 0.4 if i < 3 else 0.0, 1000, T0]
            for i in range(5)]
    ch_client.insert("driftline.performance_estimates", rows, column_names=COLS)
    at = AppTest.from_function(_panel, default_timeout=60,
                               args=(clickhouse_url, model, T0.isoformat(), (T0 + 10 * w).isoformat())).run()
    assert not at.exception and not at.error
    got = {m.label: m.value for m in at.metric}
    assert got["Estimated accuracy (latest window)"] == "0.700"
    assert got["Estimation error (mean |estimate - realised|)"] == "0.020"
    assert len(at.get("plotly_chart")) == 1
    assert any("2 window(s) with the estimated accuracy past the threshold" in c.value for c in at.caption)
    # A slice without estimates: a caption that says how to get them, no chart.
    at = AppTest.from_function(_panel, default_timeout=60,
                               args=(clickhouse_url, "nobody", T0.isoformat(), (T0 + w).isoformat())).run()
    assert not at.exception and not at.get("plotly_chart")
    assert any("--labels COLUMN" in c.value for c in at.caption)
