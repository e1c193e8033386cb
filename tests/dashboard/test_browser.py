"""The dashboard in headless Chromium: the Overview's health, the verdict strips and the SQL
console on a ``driftline dashboard`` over the session's chDB store, seeded; and the browser
helpers that tests/collector/embedded/test_demo.py uses to render every page of
``driftline up --demo`` once its story is told (one demo stack serves the story and the pages).

Debian's ``chromium`` and ``chromium-driver`` drive a real browser through Selenium. Each page
must render a title and its data, without Streamlit's exception element or a traceback.
Screenshots land in ``artifacts/screenshots/`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _free_ports(n: int) -> list[int]:
    from driftline.collector.embedded.broker import free_port

    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)



def wait_healthy(proc: subprocess.Popen, url: str, log_path: Path, what: str) -> None:
    """Wait until the Streamlit server at ``url`` answers its health check; fail with the end of
    its log if ``proc`` exits first."""
    def health() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited: {log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                return r.read() == b"ok"
        except OSError:
            return False

    wait_for(health, timeout_s=120, interval_s=0.5)

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1500,2200",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _settled(driver: Any, expected: tuple[str, ...] = ()) -> bool:
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'):
        return True  # finished, badly: the caller's assertions say so
    if not driver.find_elements(By.CSS_SELECTOR, "h1"):
        return False
    # Streamlit shows skeletons for elements not yet sent, and a status widget while running.
    if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSkeleton"]'):
        return False
    running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
    if any(e.is_displayed() and "Running" in e.text for e in running):
        return False
    html = driver.page_source
    return all(t in html for t in expected)


def open_page(driver: Any, url: str, name: str, expected: tuple[str, ...] = ()) -> str:
    from selenium.webdriver.common.by import By

    driver.get(url)
    try:
        wait_for(lambda: _settled(driver, expected), timeout_s=90, interval_s=0.5)
        time.sleep(1.5)  # plotly draws after the script finished
    finally:
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{name}.png"))
    html = driver.page_source
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), name
    assert "Traceback" not in html, name
    return html


def check_page(driver: Any, dashboard: str, page: str, query: str, expected: tuple[str, ...]) -> None:
    """Open ``page`` of the dashboard at ``dashboard``: it renders every ``expected`` text, and the
    pages with charts draw one."""
    from selenium.webdriver.common.by import By

    html = open_page(driver, f"{dashboard}/?page={page}{query}", page, expected)
    for text in expected:
        assert text in html, f"{page}: {text!r} missing"
    if page in ("model", "performance", "shadow", "overview"):
        # Plotly draws after Streamlit's script has finished, later still on a loaded machine: wait
        # for the chart (a page that never draws one still fails, after 30 s).
        deadline = time.monotonic() + 30
        while not (charts := driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert charts, f"{page}: no chart drawn"


@pytest.fixture(scope="module")
def health_dashboard(ch_client: Any, clickhouse_url: str,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A Streamlit server (``driftline dashboard``) on the session's chDB store, seeded with a
    model whose inputs drift (accuracy holds) and a quiet one; no demo traffic needed."""
    import datetime as dt

    from tests.dashboard.seed import DRIFTED, SeedSpec, seed

    end = dt.datetime.now(dt.timezone.utc)
    small = dict(n_predictions=2_000, span_s=2 * 3600, window_s=600, end=end, alerts=False)
    drifty = seed(ch_client, SeedSpec(model="drifty-browser", degrade=False,
                                      drifted=(*DRIFTED, "worst area"), **small))  # type: ignore[arg-type]
    quiet = seed(ch_client, SeedSpec(model="quiet-browser", drift_at_fraction=1.0, **small))  # type: ignore[arg-type]
    (port,) = _free_ports(1)
    log_path = tmp_path_factory.mktemp("dash") / "dashboard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_DASHBOARD")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "dashboard", "--port", str(port),
             "--clickhouse-url", clickhouse_url], stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(proc, url, log_path, "dashboard")
            yield {"dashboard": url, "drifty": drifty, "quiet": quiet}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_overview_in_the_browser_says_which_model_drifts_since_when_and_why(
        health_dashboard: dict[str, Any], browser: Any) -> None:
    import datetime as dt

    drifty = health_dashboard["drifty"]
    starts = (drifty.start + dt.timedelta(seconds=k * drifty.window_s)
              for k in range(int(drifty.span_s // drifty.window_s)))
    first_late = next(t for t in starts if t >= drifty.drift_at)
    since, top = f"{first_late:%Y-%m-%d %H:%M}", "mean perimeter, mean texture, mean radius (by impact)"
    open_page(browser, f"{health_dashboard['dashboard']}/?page=overview", "overview-health",
              ("Overview", "drifty-browser", "quiet-browser", since, top))
    rows = _grid_rows(browser)
    drifty_row = next(r for r in rows if r and r[0] == "drifty-browser")
    quiet_row = next(r for r in rows if r and r[0] == "quiet-browser")
    header = next(r for r in rows if "state" in r)
    cell = lambda row, col: row[header.index(col)]  # noqa: E731
    assert (cell(drifty_row, "state"), cell(drifty_row, "since")) == ("drifting", since), rows
    assert cell(drifty_row, "top drifted features") == top, rows
    assert cell(quiet_row, "state") == "healthy" and cell(quiet_row, "since").startswith("before "), rows
    assert cell(quiet_row, "top drifted features") == "", rows
    assert "worst area" not in browser.page_source  # drifted, but fourth by impact


def test_overview_in_the_browser_shows_a_model_turn_from_healthy_to_drifting(
        health_dashboard: dict[str, Any], browser: Any, ch_client: Any) -> None:
    import datetime as dt

    from tests.dashboard.seed import SeedSpec, seed, seed_metrics
    from driftline.dashboard.view import iso

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    quiet = seed(ch_client, SeedSpec(model="flip-browser", n_predictions=1_000, span_s=3600, window_s=600,
                                     end=now - dt.timedelta(minutes=30), drift_at_fraction=1.0, alerts=False))
    base = f"{health_dashboard['dashboard']}/?page=overview&from={iso(quiet.start - dt.timedelta(minutes=1))}"

    def state(to: dt.datetime, shot: str, expected: str) -> tuple[str, str]:
        # A new `to` each time: the panels are cached per query for a few seconds.
        open_page(browser, f"{base}&to={iso(to)}", shot, ("flip-browser", expected))
        rows = _grid_rows(browser)
        header = next(r for r in rows if "state" in r)
        row = next(r for r in rows if r and r[0] == "flip-browser")
        return row[header.index("state")], row[header.index("since")]

    assert state(now + dt.timedelta(minutes=1), "overview-before", "healthy")[0] == "healthy"
    # Three more windows, from where the quiet ones ended: inputs drift, accuracy holds.
    drift = SeedSpec(model="flip-browser", span_s=1800, window_s=600, end=now, drift_at_fraction=0.0,
                     degrade=False, alerts=False)
    seed_metrics(ch_client, drift)
    assert state(now + dt.timedelta(minutes=1, seconds=1), "overview-after", "drifting") == (
        "drifting", f"{drift.start:%Y-%m-%d %H:%M}")
    assert "mean perimeter" in browser.find_element("css selector", "body").text  # the linked top features


def _grid_rows(driver: Any) -> list[list[str]]:
    """The cell texts of Streamlit's data grid, from the accessible table it keeps beside the canvas."""
    from selenium.webdriver.common.by import By

    rows = []
    for tr in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"] table tr'):
        cells = tr.find_elements(By.CSS_SELECTOR, "th, td")
        rows.append([(c.get_attribute("textContent") or "").strip() for c in cells])
    assert rows, "no data grid rows in the page"
    return rows


@pytest.mark.parametrize("page,title,flag", [
    ("model", "Drift verdict per detector", "mean perimeter · data_drift · since"),
    ("performance", "Verdict per detector", "No detector gives a drift verdict in its latest window"),
], ids=["model", "performance"])
def test_verdict_strips_in_the_browser(health_dashboard: dict[str, Any], browser: Any, page: str,
                                       title: str, flag: str) -> None:
    from selenium.webdriver.common.by import By

    html = open_page(browser, f"{health_dashboard['dashboard']}/?page={page}&model=drifty-browser",
                     f"{page}-verdicts", (title,))
    deadline = time.monotonic() + 30
    while not browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot") and time.monotonic() < deadline:
        time.sleep(0.25)
    assert title in html
    text = browser.find_element(By.TAG_NAME, "body").text
    assert flag in text  # the drifting model's accuracy holds: its performance signals are quiet


def test_sql_console_in_the_browser_runs_and_refuses_writes(health_dashboard: dict[str, Any], browser: Any,
                                                           ch_client: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, f"{health_dashboard['dashboard']}/?page=sql", "sql", ("Example queries",))

    def run(sql: str, shot: str) -> str:
        area = browser.find_element(By.CSS_SELECTOR, "textarea")
        area.send_keys(Keys.CONTROL, "a")
        area.send_keys(Keys.DELETE)
        area.send_keys(sql)
        area.send_keys(Keys.CONTROL, Keys.ENTER)  # commits the text area
        time.sleep(0.5)
        [b for b in browser.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Run"][0].click()
        time.sleep(1)
        wait_for(lambda: _settled(browser, ("rows in", ) if "SELECT" in sql else ("refused",)),
                 timeout_s=60, interval_s=0.5)
        browser.save_screenshot(str(SHOTS / f"{shot}.png"))
        return browser.page_source

    html = run("SELECT model, count() AS n FROM driftline.predictions GROUP BY model", "sql-result")
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
    assert "Download CSV" in html
    html = run("DROP TABLE driftline.predictions", "sql-refused")
    assert "ClickHouse refused the query" in html and "READONLY" in html
    assert ch_client.query("EXISTS TABLE driftline.predictions").result_rows[0][0] == 1
