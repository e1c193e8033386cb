"""The demo's guide: follows the run through the store and says, at each stage, what to open and
what to look for.

Stages, each printed once when the store shows it (a thread polls every ``poll_s``):

1. ``verdicts``  — the reference is complete and the first drift verdicts and performance
   estimates are in (model healthy);
2. ``drift``     — printed by the demo when it injects the drift;
3. ``detected``  — data drift verdicts in the drifted region, with the top features;
4. ``estimated`` — estimated accuracy (CBPE, issue 18) in the drifted region falling below the
   other regions', before the labels say anything (``driftline.performance_estimates``);
5. ``realised``  — realised accuracy in the drifted region below :data:`ACCURACY_FLOOR` on
   labelled traffic since the drift began, next to the healthy regions, with the SQL;
6. ``incident``  — the alerting service opened an incident: its dashboard deep link;
7. ``stopped``   — printed by the demo when the drift ends;
8. ``resolved``  — the incident resolved.

Everything is read with the SQL a user would run (:func:`accuracy_sql`), from ClickHouse only.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from driftline.collector.embedded.demo import DRIFT_REGION, MODEL, REGIONS, DemoOptions
from driftline.collector.store.tables import PERFORMANCE_ESTIMATES_TABLE

log = logging.getLogger("driftline.demo")

#: realised accuracy the drifted region falls below (the demo rules' threshold says the same)
ACCURACY_FLOOR = 0.85
#: how far the drifted region's estimated accuracy must fall below the others' to be told
ESTIMATE_DROP = 0.02
#: fewest labelled predictions a region's accuracy is quoted on
MIN_LABELLED = 50


def accuracy_sql(model: str = MODEL, since: dt.datetime | None = None, per_minute: bool = True) -> str:
    """Realised accuracy per region (and minute) on labelled predictions: the SQL a user runs
    (``driftline sql "..."``). Shadow predictions are left out: they are not what users got."""
    where = [f"model = '{model}'", "variant != 'shadow'"]
    if since is not None:
        where.append(f"timestamp >= toDateTime64('{since.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S}', 3, 'UTC')")
    minute = "toStartOfMinute(timestamp) AS minute, " if per_minute else ""
    order = "minute, region" if per_minute else "region"
    return (f"SELECT {minute}tags['region'] AS region, count() AS labelled, "
            "round(avg(label_str = prediction_label), 3) AS accuracy "
            f"FROM driftline.labeled_predictions WHERE {' AND '.join(where)} "
            f"GROUP BY {order} ORDER BY {order}")


class Guide:
    """Prints the demo's stages as the store shows them. ``start()``, then ``drift_changed()``
    from the demo's loop, ``stop()`` and ``summary()`` at the end."""

    def __init__(self, options: DemoOptions, *, print_fn: Callable[[str], None] = print,
                 client: Any = None, poll_s: float = 3.0,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.options = options
        self.print = print_fn
        self.poll_s = poll_s
        self.clock = clock
        self._client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = clock()
        self.drift_started: dt.datetime | None = None
        self.drift_stopped: dt.datetime | None = None
        self.incident = ""
        self.done: set[str] = set()
        self.estimate_band: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def dashboard(self) -> str:
        return self.options.dashboard_url.rstrip("/")

    def client(self) -> Any:
        if self._client is None:
            from driftline.collector.store import connect

            self._client = connect(self.options.clickhouse_url, retry_for_s=30)
        return self._client

    # -- the demo's loop calls these ---------------------------------------------------------
    def start(self) -> None:
        import yaml

        from driftline.collector.embedded.demo import DETECTORS_CONFIG

        first = int(yaml.safe_load(DETECTORS_CONFIG.read_text(encoding="utf-8"))["reference"]["first_events"])
        where = f"open {self.dashboard}/ (Overview)" if self.dashboard else "run `driftline sql` against the store"
        self.print(f"demo guide: {where}. The model {MODEL} needs its reference first (its first {first:,} "
                   f"events, ~{first / self.options.rate_per_s:.0f} s here; `driftline reference show {MODEL}`); "
                   "the drift waits for the first verdicts.")
        self._thread = threading.Thread(target=self._run, name="demo-guide", daemon=True)
        self._thread.start()

    def drift_changed(self, drifting: bool) -> None:
        if drifting:
            self.drift_started = self.clock()
            self.print(f"demo guide [drift]: watch the Overview: {MODEL} turns 'drifting' when the data-drift "
                       f"verdicts of region={DRIFT_REGION} come in, then 'degraded' once delayed labels show "
                       "realised accuracy falling.")
        else:
            self.drift_stopped = self.clock()
            self.print("demo guide [stopped]: the alert resolves after two healthy accuracy windows; "
                       "the receiver prints the Slack 'resolved' message and the PagerDuty resolve.")

    def ready(self) -> bool:
        """Whether the first drift verdicts and performance estimates are stored (the drift may begin)."""
        return "verdicts" in self.done

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    # -- polling -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception as exc:  # the store may be busy or restarting: the demo goes on
                log.debug("demo guide: %s: %s", type(exc).__name__, exc)

    def check(self) -> None:
        """One look at the store; prints every stage that has become true."""
        if "verdicts" not in self.done and self._verdicts() and self._estimating():
            self._stage("verdicts", "the reference is complete, the first drift verdicts and performance "
                        "estimates are in (the estimator is fitted on the first labels): every region "
                        f"healthy. Open {self._link('overview')}: the Overview lists {MODEL} as healthy.")
        if self.drift_started is None:
            return
        if "detected" not in self.done:
            top = self._drifted_features()
            if top:
                self._stage("detected", f"data drift detected in region={DRIFT_REGION}: {', '.join(top)}. The "
                            "Overview shows the model drifting, top features by impact; the Drift page's heatmap "
                            "lights up for those features.")
        if "estimated" not in self.done:
            est = self.estimated_accuracy()
            if est is not None:
                lo, hi = self.estimate_band
                self._stage("estimated", f"estimated accuracy in region={DRIFT_REGION} is falling: {est:.3f} "
                            f"[{lo:.3f}, {hi:.3f}], from the model's own scores before the labels arrive. The "
                            "Performance page draws it beside the realised accuracy as labels come in; CBPE "
                            "sees the rows pushed near the boundary, not the confidently wrong ones, so the "
                            "labels will show a larger drop.")
        if "realised" not in self.done:
            acc = self.accuracy(since=self.drift_started)
            eu = acc.get(DRIFT_REGION)
            if eu is not None and eu[1] < ACCURACY_FLOOR:
                others = ", ".join(f"{r} {a:.3f}" for r, (_n, a) in sorted(acc.items()) if r != DRIFT_REGION)
                self._stage("realised", f"realised accuracy confirms it: {DRIFT_REGION} {eu[1]:.3f} on {eu[0]} "
                            f"labelled predictions since the drift (floor {ACCURACY_FLOOR}); {others}. The same "
                            f"numbers per minute:\n  driftline sql \"{accuracy_sql()}\"")
        self._incidents()

    def _stage(self, name: str, text: str) -> None:
        self.done.add(name)
        self.print(f"demo guide [{name}]: {text}")

    def _link(self, page: str) -> str:
        if not self.dashboard:
            return "the dashboard"
        return f"{self.dashboard}/?page={page}"

    def _since(self, t: dt.datetime) -> str:
        return f"toDateTime64('{t.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S}', 3, 'UTC')"

    def _verdicts(self) -> bool:
        rows = self.client().query(
            "SELECT count() FROM driftline.drift_metrics WHERE model = {m:String} AND detector = 'data_drift' "
            f"AND window_end >= {self._since(self.started_at)}", parameters={"m": MODEL}).result_rows
        return bool(rows and rows[0][0])

    def _estimating(self) -> bool:
        """Whether performance estimates are stored (the estimator is fitted on clean labels
        before the drift begins)."""
        rows = self.client().query(
            f"SELECT count() FROM driftline.{PERFORMANCE_ESTIMATES_TABLE} WHERE model = {{m:String}} "
            f"AND estimate IS NOT NULL AND window_end >= {self._since(self.started_at)}",
            parameters={"m": MODEL}).result_rows
        return bool(rows and rows[0][0])

    def _drifted_features(self) -> list[str]:
        assert self.drift_started is not None
        rows = self.client().query(
            "SELECT feature FROM driftline.drift_metrics FINAL WHERE model = {m:String} AND detector = 'data_drift' "
            f"AND segment = {{s:String}} AND drift AND window_start >= {self._since(self.drift_started)} "
            "GROUP BY feature ORDER BY count() DESC, feature LIMIT 3",
            parameters={"m": MODEL, "s": f"region={DRIFT_REGION}"}).result_rows
        return [r[0] for r in rows]

    def estimated_accuracy(self) -> float | None:
        """The latest estimated accuracy (CBPE, issue 18) of the drifted region since the drift
        began, once it is at least :data:`ESTIMATE_DROP` below the other regions' over the same
        windows (the model has become less sure there); None until then. Its band is kept in
        ``estimate_band``. CBPE sees the rows pushed near the boundary, not the confidently wrong
        ones, so the estimate falls less than the realised accuracy: the guide says so."""
        assert self.drift_started is not None
        rows = self.client().query(
            "SELECT segment = {s:String} AS drifted, argMax(estimate, window_start), argMax(lower, window_start), "
            f"argMax(upper, window_start), avg(estimate) FROM driftline.{PERFORMANCE_ESTIMATES_TABLE} FINAL "
            "WHERE model = {m:String} AND metric = 'accuracy' AND estimate IS NOT NULL "
            f"AND window_start >= {self._since(self.drift_started)} GROUP BY drifted",
            parameters={"m": MODEL, "s": f"region={DRIFT_REGION}"}).result_rows
        by = {bool(r[0]): r for r in rows}
        if True not in by or False not in by:
            return None
        est, lo, hi, _ = by[True][1:]
        if est > by[False][4] - ESTIMATE_DROP:
            return None
        self.estimate_band = (float(lo), float(hi))
        return float(est)

    def accuracy(self, since: dt.datetime | None = None) -> dict[str, tuple[int, float]]:
        """{region: (labelled predictions, realised accuracy)} since ``since``."""
        rows = self.client().query(accuracy_sql(since=since, per_minute=False)).result_rows
        return {r: (int(n), float(a)) for r, n, a in rows if int(n) >= MIN_LABELLED}

    def _incidents(self) -> None:
        rows = self.client().query(
            "SELECT event, incident, rule, segment, condition, dashboard_link FROM driftline.alerts FINAL "
            f"WHERE model = {{m:String}} AND event_time >= {self._since(self.started_at)} ORDER BY event_time",
            parameters={"m": MODEL}).result_rows
        for event, incident, rule, segment, condition, link in rows:
            if event == "firing" and "incident" not in self.done:
                self._stage("incident", f"incident opened: rule {rule} ({condition}) on {MODEL} [{segment}]. Open "
                            f"the model page at the incident: {link or self._link('model')}\n  The receiver "
                            "prints one Slack message, one PagerDuty trigger and one signed retraining request.")
                self.incident = incident  # after the stage is printed: the demo may stop the drift now
            elif event == "resolved" and incident == self.incident and "resolved" not in self.done:
                self._stage("resolved", f"incident {incident} resolved: realised accuracy in {DRIFT_REGION} is back "
                            "above the floor; the Overview shows the model healthy again.")

    def summary(self) -> None:
        """At the end: realised accuracy per region and minute, and the SQL that gave it."""
        try:
            rows = self.client().query(accuracy_sql()).result_rows
        except Exception as exc:
            self.print(f"demo guide: no summary ({type(exc).__name__})")
            return
        self.print(f"demo guide: realised accuracy per minute ({', '.join(REGIONS)}), from\n"
                   f"  driftline sql \"{accuracy_sql()}\"")
        by_minute: dict[Any, dict[str, float]] = {}
        for minute, region, _n, acc in rows:
            by_minute.setdefault(minute, {})[region] = float(acc)
        for minute, accs in by_minute.items():
            self.print(f"  {minute:%H:%M}  " + "  ".join(f"{r} {accs[r]:.3f}" if r in accs else f"{r}   -  "
                                                         for r in REGIONS))
