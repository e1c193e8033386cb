"""``make demo`` tells a true story (issue 19): drift that hurts one region's realised accuracy,
one incident that opens and resolves, one message per channel at the local receiver. Then every
dashboard page renders the demo's data in headless Chromium (the end-to-end browser check of
``driftline up --demo``: one demo stack serves both), and the stack stops cleanly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from driftline.collector.embedded.demo import DRIFT_REGION, REGIONS, DemoOptions, _drift_ends, train
from driftline.collector.embedded.demo_guide import ACCURACY_FLOOR
from driftline.collector.store.tables import PERFORMANCE_ESTIMATES_TABLE
from tests.collector.embedded.up_testkit import Up, client, demo_up
from tests.dashboard.test_browser import _grid_rows, browser, check_page, open_page  # noqa: F401 (browser: a fixture)


def test_the_drift_pushes_benign_cases_across_the_decision_boundary() -> None:
    import numpy as np

    m = train()
    drifted = np.array([m.drift(x, int(y)) for x, y in zip(m.x_test, m.y_test)])
    assert (m.primary.predict(m.x_test) == m.y_test).mean() > 0.93
    assert (m.primary.predict(drifted) == m.y_test).mean() < 0.8
    malignant = m.y_test == 0
    assert (drifted[malignant] == m.x_test[malignant]).all()  # only benign cases move
    assert (drifted[~malignant] != m.x_test[~malignant]).any(axis=1).all()


@pytest.mark.parametrize("drifted_s, incident, ends", [
    (10, "inc", False),   # before drift_for_s
    (30, "", False),      # the guide has not seen the incident yet
    (30, "inc", True),
    (90, "", True),       # at most 3 x drift_for_s
])
def test_the_drift_lasts_drift_for_s_and_until_the_incident_opened(drifted_s: float, incident: str,
                                                                    ends: bool) -> None:
    opts = DemoOptions(drift_for_s=30)
    assert _drift_ends(opts, drifted_s, SimpleNamespace(incident=incident)) is ends
    assert _drift_ends(opts, drifted_s, None) is (drifted_s >= 30)
    assert _drift_ends(DemoOptions(drift_for_s=0), 10_000, None) is False


def test_the_demo_rules_load_with_the_environment_the_stack_gives_them(tmp_path: Path) -> None:
    from driftline.alerting.rules import load_rules
    from driftline.collector.embedded.demo_alerting import prepare

    demo = prepare(tmp_path, "http://127.0.0.1:8501")
    demo.close()  # its receiver's listening sockets: not served here
    rules = load_rules(demo.rules_path, env=demo.env)  # a *_env name the stack does not set raises
    (rule,) = rules.rules
    assert (rule.kind, rule.statistic, rule.op, rule.threshold) == ("performance", "accuracy", "<", ACCURACY_FLOOR)
    assert rule.segment == "region=*" and rule.retrain == "demo-retrain"
    assert {c.type for c in rules.channels.values()} == {"slack", "pagerduty", "webhook"}
    assert rules.dashboard_url == "http://127.0.0.1:8501"
    assert not any(v in " ".join(demo.receiver_args) for k, v in demo.env.items() if "URL" not in k)  # no secret on argv


def _overview_state(driver: Any, url: str, shot: str, states: tuple[str, ...], until: Any = None) -> str:
    """The Overview's state of the demo model in headless Chromium over the hour up to ``until``
    (None: now); reloaded (a new ``to`` each time, past the panels' cache) until it is one of
    ``states`` or three looks have passed."""
    from driftline.dashboard.view import iso

    got = ""
    for attempt in range(3):
        to = (until or dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)) + dt.timedelta(seconds=attempt)
        open_page(driver, f"{url}&from={iso(to - dt.timedelta(hours=1))}&to={iso(to)}", f"{shot}-{attempt}",
                  ("breast-cancer",))
        rows = _grid_rows(driver)
        header = next(r for r in rows if "state" in r)
        got = next(r for r in rows if r and r[0] == "breast-cancer")[header.index("state")]
        if got in states:
            break
    return got


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """The demo stack on the compressed schedule, for the story, the pages and the stop below."""
    data_dir = tmp_path_factory.mktemp("demo")
    up = demo_up(data_dir)
    try:
        yield up
    finally:
        up.kill_all()  # stopped by the last test unless a failure came first
        (data_dir / "up.out").write_text(up.output)  # the story as a visitor saw it, for a failure's reader


@pytest.fixture(scope="module")
def told(demo: Up) -> Up:
    """The demo stack once its story is told (the incident resolved): every page has its data."""
    demo.wait_printed("demo guide [resolved]", timeout_s=1320)
    return demo


@pytest.mark.integration
@pytest.mark.timeout(900)  # ~3.5 min on an idle machine; the stages wait for each other on a busy one
def test_the_demo_drift_hurts_one_region_opens_one_incident_and_resolves_it(demo: Up, browser: Any) -> None:
    up = demo
    # The visitor's view: the Overview shows the model healthy, then drifting once the eu verdicts are in.
    overview = f"http://127.0.0.1:{up.ports['dashboard']}/?page=overview"
    up.wait_printed("demo guide [verdicts]", timeout_s=600)
    # The drift starts HEALTHY_FIRST_S after the first verdicts: the Overview over the hour up
    # to the verdicts (as a deep link sets it) shows windows that closed before any drifted row.
    verdicts_at = dt.datetime.now(dt.timezone.utc)
    assert _overview_state(browser, overview, "demo-overview-before", ("healthy",), verdicts_at) == "healthy"
    up.wait_printed("demo guide [detected]", timeout_s=600)
    drifting = ("drifting", "degraded")
    assert _overview_state(browser, overview, "demo-overview-drift", drifting) in drifting
    up.wait_printed("demo guide [resolved]", timeout_s=720)
    ch = client(up.clickhouse_url)
    # Realised accuracy per region in the alert rule's 20-second windows, as a user would query it.
    rows = ch.query(
        "SELECT tags['region'] AS region, intDiv(toUnixTimestamp(timestamp), 20) AS w, count() AS n, "
        "avg(label_str = prediction_label) AS acc FROM driftline.labeled_predictions "
        "WHERE model = 'breast-cancer' AND variant != 'shadow' GROUP BY region, w HAVING n >= 40").result_rows
    worst = {r: min(a for reg, _w, _n, a in rows if reg == r) for r in REGIONS}
    assert worst[DRIFT_REGION] < ACCURACY_FLOOR, worst
    assert all(worst[r] >= 0.88 for r in REGIONS if r != DRIFT_REGION), worst
    drifted = ch.query("SELECT DISTINCT feature FROM driftline.drift_metrics FINAL WHERE model = 'breast-cancer' "
                       f"AND detector = 'data_drift' AND segment = 'region={DRIFT_REGION}' AND drift").result_rows
    assert {"worst perimeter", "worst radius"} & {r[0] for r in drifted}
    # Performance estimated before the labels (issue 18): the drifted region's estimate falls
    # below the others', and its windows were graded with the realised accuracy as labels came.
    est = ch.query("SELECT segment, min(estimate), countIf(realised IS NOT NULL), max(labelled_share) "
                   f"FROM driftline.{PERFORMANCE_ESTIMATES_TABLE} FINAL WHERE model = 'breast-cancer' "
                   "AND metric = 'accuracy' AND estimate IS NOT NULL GROUP BY segment").result_rows
    est = {seg: (lowest, graded, share) for seg, lowest, graded, share in est}
    assert est[f"region={DRIFT_REGION}"][0] < min(est[f"region={r}"][0] for r in REGIONS if r != DRIFT_REGION) - 0.02, est
    assert all(graded > 0 and 0 < share <= 1 for _low, graded, share in est.values()), est
    events = ch.query("SELECT incident, event, segment FROM driftline.alerts FINAL WHERE model = 'breast-cancer' "
                      "ORDER BY event_time").result_rows
    assert [(e, s) for _i, e, s in events] == [("firing", "region=eu"), ("resolved", "region=eu")]
    assert len({i for i, _e, _s in events}) == 1


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_the_alerts_page_shows_the_resolved_story_with_no_incident_open(told: Up, browser: Any) -> None:
    # Runs before pages_stack seeds open incidents: an empty open-incidents answer once failed the page.
    check_page(browser, f"http://127.0.0.1:{told.ports['dashboard']}", "alerts", "",
               ("Alert events", "accuracy-by-region", "Open incidents"))


@pytest.fixture(scope="module")
def pages_stack(told: Up) -> Up:
    """The told demo, plus alert history with incidents still open (as the alerting service records
    them: tests/dashboard/seed.py), beside the story's own resolved incident."""
    from tests.dashboard.seed import SeedSpec, seed_alerts

    seed_alerts(client(told.clickhouse_url), SeedSpec(model="breast-cancer", span_s=600, window_s=60),
                dashboard_url=f"http://127.0.0.1:{told.ports['dashboard']}")
    return told


#: Each page of the dashboard, with what it must show of the demo: on the Alerts page the story's
#: real alert (accuracy-by-region) and a seeded one still open (input-drift).
PAGES = [
    ("overview", "", ("Predictions", "breast-cancer")),
    ("model", "&model=breast-cancer", ("Volume by variant", "Feature drill-down", "reference vs current")),
    ("performance", "&model=breast-cancer", ("Labelled predictions", "Confusion matrix")),
    ("shadow", "&model=breast-cancer", ("Paired requests", "Outcome tests", "challenger")),
    ("alerts", "", ("Alert events", "input-drift", "accuracy-by-region")),
    ("sql", "", ("Example queries", "driftline.predictions")),
]


@pytest.mark.integration
@pytest.mark.timeout(900)  # the first page waits for the story when it runs alone
@pytest.mark.parametrize("page,query,expected", PAGES, ids=[p[0] for p in PAGES])
def test_every_dashboard_page_renders_the_demo_in_the_browser(pages_stack: Up, browser: Any, page: str, query: str,
                                                              expected: tuple[str, ...]) -> None:
    check_page(browser, f"http://127.0.0.1:{pages_stack.ports['dashboard']}", page, query, expected)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_demo_stops_cleanly_having_told_the_story_in_order(told: Up) -> None:
    up = told
    code = up.stop()
    out = up.output
    assert code == 0, out[-3000:]
    received = [line for line in out.splitlines() if line.startswith("receiver: ")]
    # One message per channel and event: Slack firing + resolved, PagerDuty trigger + resolve, one
    # retraining request whose signature the receiver verified (a bad one prints REJECTED).
    expected = ["receiver: slack     [CRITICAL] accuracy-by-region", "receiver: slack     [RESOLVED] accuracy-by-region",
                "receiver: pagerduty trigger driftline-", "receiver: pagerduty resolve driftline-",
                "receiver: webhook   signature valid; io.driftline.retrain"]
    assert len(received) == len(expected) and all(sum(line.startswith(e) for line in received) == 1
                                                  for e in expected), received
    # The guide's stages, in the story's order, with the model page's deep link at the incident.
    stages = ["demo guide [verdicts]", "demo: injecting drift now", "demo guide [detected]",
              "demo guide [realised]", "demo guide [incident]", "demo: drift stopped", "demo guide [resolved]"]
    at = [out.index(s) for s in stages]
    # Performance estimated before the labels (issue 18): told with its band, for region eu.
    assert "demo guide [estimated]: estimated accuracy in region=eu is falling" in out
    assert at == sorted(at), dict(zip(stages, at))
    incident = out[at[4]:].split("\n", 2)[:2]
    link = f"http://127.0.0.1:{up.ports['dashboard']}/?page=model&model=breast-cancer&version=v1&segment=region%3Deu&from="
    assert link in " ".join(incident), incident
