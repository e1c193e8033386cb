"""Every dashboard page under Streamlit's AppTest, on data seeded into the real embedded store."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboard.seed import DRIFTED, SeedSpec, seed
from driftline.dashboard.view import iso, link

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def seeded(ch_client: Any) -> SeedSpec:
    spec = SeedSpec(model=f"dash-{uuid.uuid4().hex[:8]}", n_predictions=30_000, span_s=6 * 3600,
                    window_s=900)
    return seed(ch_client, spec)


@pytest.fixture
def app_env(clickhouse_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_URL", clickhouse_url)
    monkeypatch.delenv("DRIFTLINE_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("DRIFTLINE_DASHBOARD_TOKEN_FILE", raising=False)
    return clickhouse_url


def open_page(page: str, spec: SeedSpec | None = None, **extra: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["page"] = page
    if spec is not None:
        at.query_params["model"] = spec.model
        at.query_params["from"] = iso(spec.start - dt.timedelta(minutes=1))
        at.query_params["to"] = iso(spec.end + dt.timedelta(minutes=1))
    for k, v in extra.items():
        at.query_params[k] = v
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return str(values[0])


def count(ch: Any, sql: str, **params: Any) -> int:
    return int(ch.query(sql, parameters=params).result_rows[0][0])


def test_overview_lists_the_model_with_drift_and_alerts(app_env: str, seeded: SeedSpec) -> None:
    at = open_page("overview", seeded)
    assert_clean(at)
    assert at.title[0].value == "Overview"
    table = at.dataframe[0].value
    row = table[table.model == seeded.model].iloc[0]
    assert row["predictions"] > 0
    assert row["state"] == "degraded"  # the seeded accuracy falls below its threshold
    assert row["open alerts"] == 2  # two seeded incidents still firing, one resolved
    assert "page=model" in row["open"] and seeded.model in row["open"]
    assert len(at.get("plotly_chart")) >= 1


def late_windows(spec: SeedSpec) -> list[dt.datetime]:
    """The seeded detector windows that start at or after the drift."""
    starts = [spec.start + dt.timedelta(seconds=k * spec.window_s) for k in range(int(spec.span_s // spec.window_s))]
    return [t for t in starts if t >= spec.drift_at]


def test_overview_says_which_models_are_healthy_drifting_or_degraded(app_env: str, seeded: SeedSpec,
                                                                     ch_client: Any) -> None:
    small = dict(n_predictions=3_000, span_s=seeded.span_s, window_s=seeded.window_s, end=seeded.end,
                 alerts=False)
    # Inputs drift in four features (one of little importance), accuracy holds: drifting.
    drifty = seed(ch_client, SeedSpec(model=f"drifty-{uuid.uuid4().hex[:6]}", degrade=False,
                                      drifted=(*DRIFTED, "worst area"), **small))  # type: ignore[arg-type]
    quiet = seed(ch_client, SeedSpec(model=f"quiet-{uuid.uuid4().hex[:6]}", drift_at_fraction=1.0,
                                     **small))  # type: ignore[arg-type]
    # Panels are cached per (url, sql, params) for a few seconds and an earlier test of this
    # process may have read the overview before these two models existed.
    st.cache_data.clear()
    at = open_page("overview", seeded)
    assert_clean(at)
    table = at.dataframe[0].value.set_index("model")
    late = late_windows(drifty)
    d = table.loc[drifty.model]
    assert d["state"] == "drifting"
    assert d["since"] == f"{late[0]:%Y-%m-%d %H:%M}"
    # Top three by impact (importance × magnitude), not by name: worst area drifted but ranks fourth.
    assert d["top drifted features"] == "mean perimeter, mean texture, mean radius (by impact)"
    assert d["alarm budget · use"] == (f"budget 1 false alarm / week · {len(late)} drift windows in "
                                       "the last 7 days")
    assert "data/prediction drift verdict on 4 features" in d["why"]
    assert f"model={drifty.model}" in d["open"] and "page=model" in d["open"]
    q = table.loc[quiet.model]
    assert q["state"] == "healthy" and q["since"].startswith("before ") and q["top drifted features"] == ""
    assert q["alarm budget · use"] == "budget 1 false alarm / week · 0 drift windows in the last 7 days"
    s = table.loc[seeded.model]
    assert s["state"] == "degraded" and s["since"] == f"{late_windows(seeded)[0]:%Y-%m-%d %H:%M}"
    assert "performance · model (accuracy, f1, roc_auc)" in s["why"]
    states = table.state.value_counts()
    assert int(metric(at, "Drifting")) == states.get("drifting", 0) >= 1
    assert int(metric(at, "Healthy")) == states.get("healthy", 0) >= 1
    assert int(metric(at, "Degraded")) == states.get("degraded", 0) >= 1
    assert not any("DRIFT:" in str(x) for x in at.dataframe[0].value.astype(str).values.ravel())
    # Below the table: each drifting or degraded model, worst first, its top features by impact,
    # each a link to its drill-down from the start of the state.
    attention = next(m.value for m in at.markdown if f"**{drifty.model}**" in m.value).splitlines()
    mine = [line for line in attention if any(f"**{m}**" in line for m in (drifty.model, quiet.model, seeded.model))]
    assert [line.split(" · ")[:2] for line in mine] == [
        [f"- **{seeded.model}**", f"degraded since {late_windows(seeded)[0]:%Y-%m-%d %H:%M}"],
        [f"- **{drifty.model}**", f"drifting since {late[0]:%Y-%m-%d %H:%M}"]]
    import re

    linked = re.findall(r"\[([^\]]+)\]\((/\?page=model[^)]*feature=[^)]*)\) \(impact ([0-9.]+)\)", mine[1])
    assert [name for name, _, _ in linked] == ["mean perimeter", "mean texture", "mean radius"]
    impacts = [float(i) for _, _, i in linked]
    assert impacts == sorted(impacts, reverse=True)
    assert all(f"model={drifty.model}" in url and f"from={iso(late[0])}".replace(":", "%3A") in url
               for _, url, _ in linked)
    assert "signals: performance · model (accuracy, f1, roc_auc)" not in mine[0]  # it has drifted features
    assert "[performance page](/?page=performance&" in mine[0] and "[model page](/?page=model&" in mine[1]
    assert not any("DRIFT:" in m.value for m in at.markdown)


def plot_titles(at: AppTest) -> list[str]:
    import json

    return [json.loads(c.proto.spec).get("layout", {}).get("title", {}).get("text", "")
            for c in at.get("plotly_chart")]


def test_model_page_shows_one_verdict_strip_per_detector_and_one_statistic_on_demand(
        app_env: str, seeded: SeedSpec) -> None:
    at = open_page("model", seeded)
    assert_clean(at)
    strip = [json_spec(c) for c in at.get("plotly_chart")
             if "Drift verdict per detector" in json_spec(c)["layout"]["title"]["text"]]
    assert len(strip) == 1
    traces = {t["name"]: t for t in strip[0]["data"]}
    late = late_windows(seeded)
    drifting = traces["drift verdict"]
    # data_drift and prediction_drift drift in every late window; quality never does.
    assert sorted(set(drifting["y"])) == ["data_drift", "prediction_drift"]
    assert len(drifting["y"]) == 2 * len(late)
    assert any("mean perimeter, mean radius, mean texture" in t for t in drifting["text"])
    assert "quality" in set(traces["no drift"]["y"])
    flags = next(m.value for m in at.markdown if "data_drift" in m.value).splitlines()
    since = f"since {late[0]:%Y-%m-%d %H:%M} ({len(late)} windows)"
    # feature · detector · since · what it measured · evidence, worst impact first
    assert [line.split(" · impact ")[0] for line in flags[:3]] == [
        f"- **{f}** · data_drift · {since}" for f in ("mean perimeter", "mean texture", "mean radius")]
    impacts = [float(line.split(" · impact ")[1].split()[0]) for line in flags[:3]]
    assert impacts == sorted(impacts, reverse=True) and impacts[0] > 0.25
    assert "feature=mean+perimeter" in flags[0] and "[evidence](/?page=model&" in flags[0]
    assert flags[3].startswith(f"- **confidence** · prediction_drift · {since} · mean 0.7")
    assert "[evidence](/?page=model&" in flags[3] and "feature=" not in flags[3]
    assert len(flags) == 4 and "worst area" not in "\n".join(flags)
    at.selectbox(key="model_verdicts_series").set_value("data_drift · mean radius").run()
    at.selectbox(key="model_verdicts_stat").set_value("psi").run()
    assert_clean(at)
    assert "data_drift · mean radius · psi per window" in plot_titles(at)


def json_spec(chart: Any) -> dict[str, Any]:
    import json

    return json.loads(chart.proto.spec)  # type: ignore[no-any-return]


def test_model_page_counts_match_clickhouse(app_env: str, seeded: SeedSpec, ch_client: Any) -> None:
    at = open_page("model", seeded)
    assert_clean(at)
    assert at.title[0].value.startswith(f"Model: {seeded.model}")
    expected = count(ch_client, "SELECT count() FROM driftline.predictions WHERE model = {m:String}",
                     m=seeded.model)
    assert metric(at, "Predictions") == f"{expected:,}"
    assert len(at.get("plotly_chart")) >= 6  # volume, latency, classes, confidence, heatmap, drill-down
    assert any("Drifting in the latest window" in w.value and "mean radius" in w.value for w in at.warning)
    # Drill-down against the stored reference: a drifted feature has a large PSI.
    at.selectbox(key="feature").set_value("mean radius").run()
    assert_clean(at)
    tests = at.dataframe[0].value
    assert float(tests[tests.statistic == "psi"].value.iloc[0]) > 0.1


def test_deep_link_from_an_alert_selects_version_segment_and_range(app_env: str, seeded: SeedSpec,
                                                                   ch_client: Any) -> None:
    from driftline.alerting.incidents import dashboard_link
    from urllib.parse import parse_qsl, urlsplit

    start, end = seeded.drift_at.replace(microsecond=0), seeded.end.replace(microsecond=0)
    url = dashboard_link("http://dash:8501", seeded.model, seeded.version, "region=eu", start, end)
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in parse_qsl(urlsplit(url).query):
        at.query_params[k] = v
    at.run()
    assert_clean(at)
    assert "segment region=eu" in at.title[0].value
    expected = count(ch_client, """SELECT count() FROM driftline.predictions WHERE model = {m:String}
        AND tags['region'] = 'eu' AND timestamp >= toDateTime64({s:String}, 6, 'UTC')
        AND timestamp < toDateTime64({e:String}, 6, 'UTC')""", m=seeded.model,
                     s=start.strftime("%Y-%m-%d %H:%M:%S"), e=end.strftime("%Y-%m-%d %H:%M:%S"))
    assert metric(at, "Predictions") == f"{expected:,}"
    assert at.selectbox(key="version").value == seeded.version
    assert at.selectbox(key="segment").value == "region=eu"
    assert at.query_params["page"] == "model"  # the app keeps the link in the address bar


def test_performance_page_shows_accuracy_falling_after_drift(app_env: str, seeded: SeedSpec) -> None:
    at = open_page("performance", seeded)
    assert_clean(at)
    overall = float(metric(at, "Accuracy (range)").rstrip("%"))
    latest = float(metric(at, "Accuracy (latest buckets)").rstrip("%"))
    assert latest < overall - 5  # the seeded drift drops accuracy from ~95% to ~70%
    assert len(at.get("plotly_chart")) >= 4
    # The detector signals: flags as a short list (one line per signal), since the drift.
    flags = [m.value for m in at.markdown if "since" in m.value]
    assert len(flags) == 1
    late = late_windows(seeded)
    since = f"since {late[0]:%Y-%m-%d %H:%M} ({len(late)} windows)"
    lines = flags[0].splitlines()
    # Ranked by distance to the threshold: the performance metric that fell furthest comes first.
    assert [line.split(" · [evidence]")[0].rsplit(" · ", 1)[0] for line in lines] == [
        f"- **{f}** · {d} · {since}" for f, d in (("model", "performance"), ("error", "concept.adwin"),
                                                   ("confidence", "prediction_drift"))]
    assert lines[0].split(" · ")[3].startswith("f1 0.6") and "(threshold 0.855)" in lines[0]
    assert lines[1].split(" · ")[3] == "changes 1"
    assert "[evidence](/?page=performance&" in lines[0] and "[evidence](/?page=model&" in lines[2]
    assert any(w.value == "Drift verdicts in the latest window (3)" for w in at.warning)


def series_per_chart(at: AppTest) -> dict[str, list[str]]:
    return {json_spec(c)["layout"]["title"]["text"]: [t.get("name", "") for t in json_spec(c)["data"]]
            for c in at.get("plotly_chart")}


def test_performance_page_draws_one_series_per_metric_and_statistics_behind_a_toggle(
        app_env: str, seeded: SeedSpec) -> None:
    at = open_page("performance", seeded)
    assert_clean(at)
    charts = series_per_chart(at)
    assert charts["Performance per window (detector performance)"] == ["accuracy", "f1", "roc_auc"]
    strip = charts["Verdict per detector and window (hover: which signals)"]
    assert strip == ["no drift", "drift verdict"]  # one row per detector, two colours
    assert not [t for t in charts if t.startswith("Detector statistics")]
    assert at.toggle(key="perf_statistics").value is False
    at.toggle(key="perf_statistics").set_value(True).run()
    assert_clean(at)
    charts = series_per_chart(at)
    stats = {t.split(": ", 1)[1]: names for t, names in charts.items() if t.startswith("Detector statistics")}
    assert stats == {"concept.adwin": ["changes"], "performance": ["accuracy", "f1", "roc_auc"],
                     "prediction_drift": ["confidence · mean"]}
    assert charts["Performance per window (detector performance)"] == ["accuracy", "f1", "roc_auc"]


def test_shadow_and_ab_page(app_env: str, seeded: SeedSpec) -> None:
    at = open_page("shadow", seeded)
    assert_clean(at)
    assert int(metric(at, "Paired requests").replace(",", "")) > 0
    tables = [d.value for d in at.dataframe]
    variants = tables[0]
    assert set(variants.variant) == {"primary", "challenger", "shadow"}
    outcomes = tables[1]
    challenger = outcomes[outcomes.variant == "challenger"].iloc[0]
    assert challenger["lift vs primary"] > 0 and challenger["p_value"] < 0.05  # 12% vs 8% clicks


def test_alerts_page_links_to_model_page_at_alert_time(app_env: str, seeded: SeedSpec) -> None:
    at = open_page("alerts", seeded)
    assert_clean(at)
    at.selectbox(key="alerts_model").set_value(seeded.model).run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert len(table) == 7 and set(table.status) == {"open", "resolved"}
    first = table.iloc[0]
    assert first["open"].startswith("/?page=model&model=" + seeded.model)
    assert "from=" in first["open"] and "to=" in first["open"]
    assert "drift_metrics" in at.code[0].value


def test_sql_console_runs_examples_and_limits_rows(app_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_DASHBOARD_SQL_MAX_ROWS", "100")
    at = open_page("sql")
    assert_clean(at)
    at.text_area(key="sql_text").input("SELECT number FROM system.numbers").run()
    at.button(key="sql_run").click().run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 100
    assert any("truncated at the 100-row limit" in c.value for c in at.caption)
    at.selectbox(key="sql_example").set_value("Tables and sizes").run()
    at.button(key="sql_run").click().run()
    assert_clean(at)
    assert "predictions" in set(at.dataframe[0].value["table"])


@pytest.mark.parametrize("statement", [
    "INSERT INTO driftline.deletions (predicate) VALUES ('from the console')",
    "DROP TABLE driftline.deletions",
    "SET readonly = 0",
])
def test_sql_console_refuses_writes(app_env: str, ch_client: Any, statement: str) -> None:
    before = count(ch_client, "SELECT count() FROM driftline.deletions")
    at = open_page("sql")
    at.text_area(key="sql_text").input(statement).run()
    at.button(key="sql_run").click().run()
    assert not at.exception
    messages = [e.value for e in at.error]
    assert messages and "ClickHouse refused the query" in messages[0]
    assert "readonly" in messages[0].lower()
    assert count(ch_client, "SELECT count() FROM driftline.deletions") == before


def test_empty_states_guide_a_new_user(app_env: str, ch_client: Any) -> None:
    spec = seed(ch_client, SeedSpec(model=f"bare-{uuid.uuid4().hex[:8]}", n_predictions=2_000,
                                    span_s=3600, shadow_share=0.0, label_share=0.0, alerts=False,
                                    detectors=False))
    at = open_page("performance", spec)
    assert_clean(at)
    assert any("No labels have arrived" in i.value for i in at.info)
    at = open_page("shadow", spec)
    assert_clean(at)
    assert any("No shadow predictions" in i.value for i in at.info)
    at = open_page("model", spec)
    assert_clean(at)
    assert any("No data-drift detector output" in i.value for i in at.info), [i.value for i in at.info]
    # Without a stored reference the drill-down compares with earlier traffic.
    assert any("no stored reference" in c.value for c in at.caption), [c.value for c in at.caption]


def test_unreachable_clickhouse_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from driftline.collector.embedded.broker import free_port

    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_URL", f"http://127.0.0.1:{free_port()}")
    at = open_page("overview")
    assert not at.exception
    assert any("Cannot reach ClickHouse" in e.value for e in at.error)
    assert any("driftline up" in i.value for i in at.info)


def test_token_gate(app_env: str, seeded: SeedSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_DASHBOARD_TOKEN", "s3cret-token")
    at = open_page("overview")
    assert not at.exception and not at.dataframe and not at.metric
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("not right" in e.value for e in at.error) and not at.dataframe
    at.text_input[0].input("s3cret-token")
    at.button[0].click().run()
    assert_clean(at)
    assert at.title[0].value == "Overview"
    at = open_page("overview", token="s3cret-token")  # a link carrying the token
    assert_clean(at)
    assert at.title[0].value == "Overview" and "token" not in at.query_params


def test_link_round_trip() -> None:
    from driftline.dashboard.view import parse_params

    start = dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.timezone.utc)
    url = link("model", "m", "v1", "region=eu", start, start + dt.timedelta(hours=2))
    from urllib.parse import parse_qsl, urlsplit

    p = parse_params(dict(parse_qsl(urlsplit(url).query)))
    assert (p.page, p.model, p.version, p.segment) == ("model", "m", "v1", "region=eu")
    assert p.start == start and p.end == start + dt.timedelta(hours=2)
    assert parse_params({"from": "garbage", "to": "2026-01-01"}).start is None


def test_cli_keeps_usage_stats_off_and_binds_loopback() -> None:
    from driftline.dashboard.cli import command, environment

    argv = command(8599)
    assert argv[argv.index("--browser.gatherUsageStats") + 1] == "false"
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert environment("http://x:8123", {})["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
