"""The collector's rollup audit: ``driftline rollups check`` over the recent hours, on its own.

The dashboard reads the rollups, which materialized views fill as rows are inserted. An insert can
store its rows and leave some of its views unrun, with no error to the writer:

* chDB 26.9 was seen to skip every view of one insert (the writer's sentinel catches that case
  and inserts again), and to skip *some* views of an insert (a demo beside a CI run: one insert's
  89 predictions in the raw table, in none of the four rollups checked, no log line, nothing
  reinserted). The sentinel cannot see a partial skip;
* a real ClickHouse server stores the source table's rows before it runs the views; a view that
  fails fails the insert after the rows are stored, and the writer's retry finds them stored and
  skips them.

Either way the rows are stored (the raw tables are the record) but the charts under-count, silently.
So every ``interval_s`` the collector compares the rollups with the raw rows over the last
``lookback_h`` hours (:func:`~driftline.collector.store.rollup_check.check`: a difference must be
seen twice, so rows in flight do not count) and says what it finds:

* ``driftline_rollup_rows_missing{rollup}``: rows (or feature values, labelled predictions) the
  raw tables hold and the rollup does not count, over the audited hours: alert when > 0;
* ``driftline_rollup_rows_surplus{rollup}``: the other way, rows deleted since (``driftline
  delete``), which the aggregates keep until a rebuild;
* a WARNING per (rollup, model, hour) the first time it is missing rows, naming the fix
  (``driftline rollups rebuild --yes`` with the collectors stopped), and an INFO once consistent.

Cost: the check's queries over ``lookback_h`` hours of the raw tables (every feature map of the
served predictions, for the feature-value count), once per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from driftline.collector.store.client import error_code
from driftline.collector.store.rollup_check import COUNTED, check, missing

logger = logging.getLogger("driftline.collector")

#: hours audited back from now (the current one and the two before): late rows land in past hours
AUDIT_LOOKBACK_H = 3
#: rollups kept by another loop, not audited here: the feature rollup's roller (``feature_rolls.py``)
#: compares every closed hour's raw feature values with its latest roll and rolls it again
ROLLED = ("rollup_features_1h",)
#: at most this many differences named in the log per audit (the metric counts them all)
MAX_LOGGED = 10


class RollupAudit:
    """Runs :meth:`run_once` every ``interval_s`` on its own thread (:meth:`start`)."""

    def __init__(self, client: Any, registry: CollectorRegistry, *, interval_s: float,
                 lookback_h: int = AUDIT_LOOKBACK_H, recheck_s: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.interval_s = interval_s
        self.lookback_h = lookback_h
        self.recheck_s = recheck_s
        self.clock = clock
        self.missing_rows = Gauge("driftline_rollup_rows_missing",
                                  "Raw rows (feature values, labelled predictions) of the audited recent hours "
                                  "that a rollup does not count: the dashboard under-counts them until "
                                  "`driftline rollups rebuild --yes`", ["rollup"], registry=registry)
        self.surplus_rows = Gauge("driftline_rollup_rows_surplus",
                                  "Rows a rollup counts over the audited recent hours that the raw tables no longer "
                                  "hold (deleted since; kept in the aggregates until a rebuild)", ["rollup"],
                                  registry=registry)
        self.audits = Counter("driftline_rollup_audits_total", "Rollup audits run (and failed, by outcome)",
                              ["outcome"], registry=registry)
        for rollup in {c.rollup for c in COUNTED} - set(ROLLED):
            self.missing_rows.labels(rollup).set(0)
            self.surplus_rows.labels(rollup).set(0)
        self._named: set[tuple[str, str, str]] = set()  # (rollup, model, hour) already logged as missing rows
        self._failing = False
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[dict[str, Any]]:
        """One audit: the differences found (as :func:`~driftline.collector.store.rollup_check.check`
        gives them); metrics and log updated."""
        since = int((self.clock() - self.lookback_h * 3600) // 3600 * 3600)
        found = check(self.client, self.recheck_s, [*missing(self.client), *ROLLED], since)
        short: dict[str, int] = {c.rollup: 0 for c in COUNTED if c.rollup not in ROLLED}
        over: dict[str, int] = dict(short)
        for d in found:
            gap = d["raw"] - d["rollup_rows"]
            if gap > 0:
                short[d["rollup"]] += gap
            else:
                over[d["rollup"]] -= gap
        for rollup in short:
            self.missing_rows.labels(rollup).set(short[rollup])
            self.surplus_rows.labels(rollup).set(over[rollup])
        named = {(d["rollup"], d["model"], d["hour"]): d for d in found if d["raw"] > d["rollup_rows"]}
        new = [d for key, d in named.items() if key not in self._named]
        for d in new[:MAX_LOGGED]:
            who = "every model" if d["model"] == "*" else f"model {d['model']!r}"
            logger.warning("rollup audit: %s misses %d of %d %s of %s (%s, hour %s): the raw rows are stored, "
                           "the dashboard's charts under-count them; `driftline rollups rebuild --yes` (collectors "
                           "stopped) recomputes the rollups", d["rollup"], d["raw"] - d["rollup_rows"], d["raw"],
                           d["counts"], d["table"], who, d["hour"])
        if len(new) > MAX_LOGGED:
            logger.warning("rollup audit: %d more (rollup, model, hour) miss rows (driftline_rollup_rows_missing; "
                           "`driftline rollups check` lists them)", len(new) - MAX_LOGGED)
        if self._named and not named:
            logger.info("rollup audit: the rollups count every raw row of the last %d hours again", self.lookback_h)
        self._named = set(named)
        self.audits.labels("ok").inc()
        return found

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the store away: said once per streak, tried next interval
                self.audits.labels("failed").inc()
                if not self._failing:
                    # The type and ClickHouse's error code only: a message could quote a stored value.
                    code = error_code(exc)
                    logger.warning("rollup audit could not run (%s%s); trying again every %g s", type(exc).__name__,
                                   f", ClickHouse code {code}" if code else "", self.interval_s)
                self._failing = True
            else:
                if self._failing:
                    logger.info("rollup audit runs again")
                self._failing = False

    def start(self, stop: threading.Event) -> threading.Thread:
        """Audit every ``interval_s`` until ``stop`` is set (a daemon thread: a stop does not wait
        for an audit in flight)."""
        self._thread = threading.Thread(target=self._loop, args=(stop,), name="driftline-rollup-audit", daemon=True)
        self._thread.start()
        return self._thread
