"""The feature rollup, rolled from the raw rows once an hour is closed (issue 17).

``rollup_features_1h`` (per model, version, hour, feature and bin: count, sum, min, max) used to
be filled by a materialized view on every insert. A view aggregates one insert at a time: with a
fleet, an insert holds a few events per model, so nearly every feature value became a row of its
own (~11 rows per event at 1,000 models), written, then merged again and again: the store's CPU
per event rose 1.5-1.8x from 1 to 1,000 models (``bench/fleet.md``). Aggregated once per closed
hour, a model's values share bins across the whole hour and every row is written once; and the
bins are chosen then, from the hour's values: equi-depth bins per model, version, feature and hour
(at most ``FEATURE_BINS``, at least ``BIN_VALUES`` values each), so the rows are bounded whatever the
values (continuous values in fixed fine bins gave about a row per value at 1,000 models).

How it stays exact:

* A **roll** of an hour (or of some models' hour) is one ``INSERT ... SELECT`` of
  :data:`~driftline.collector.store.rollup_sql.FEATURES_SELECT` over the raw rows, tagged with a
  new **generation** (``gen``), then a record per (model, hour) in ``rollup_feature_rolls``: its
  generation and the feature values it counted. Readers use only the rows of a (model, hour)'s
  latest recorded generation (:func:`~driftline.collector.store.rollup_sql.rolled_rows`), so a roll
  that fails half-way, or two collectors rolling the same hour at once, never count anything twice.
* A (model, hour) is rolled again whenever its raw feature-value count differs from its latest
  roll's (:func:`pending`): rows that arrived late, rows deleted since (``driftline delete``: the
  aggregates no longer keep deleted values until a rebuild). Older generations' rows are deleted.
* A (model, hour) of fewer than ``ROLL_MIN_VALUES`` (10,000) served feature values gets a roll record
  marked ``raw`` and no bins: the dashboard reads its raw rows, which are exact and, that few, as
  cheap to read as bins (a fleet of small models pays no roll; bins of so few values would blur them).
  Late rows that make it bigger roll it into bins at the next run.
* Until an hour is rolled, the dashboard reads its raw rows (as it always did for the partial hours
  at a range's edges), so a chart never waits for a roll; after a late insert and before its
  re-roll, the chart shows the hour as rolled.

The collector's :class:`FeatureRoller` checks every ``interval_s`` the hours closed at least
``after_s`` ago, over the last ``lookback_h`` hours, and every hour when it starts and every
:data:`FULL_CHECK_S`; ``driftline rollups rebuild`` rolls every closed hour.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from driftline.collector.store.client import error_code
from driftline.collector.store.rollup_sql import (
    DB,
    RAW_FEATURE_VALUES,
    ROLL_MIN_VALUES,
    latest_rolls,
    roll_insert,
    roll_record,
)

logger = logging.getLogger("driftline.collector")

#: a re-roll names its models when at most this many of an hour need it, else rolls the whole hour
MAX_LISTED = 100
#: hours checked back from now on every roll (late rows land in recent hours)
LOOKBACK_H = 3
#: every hour is checked when the roller starts and this often after (late rows of older hours)
FULL_CHECK_S = 6 * 3600.0


def closed_before(now: float, after_s: float) -> int:
    """The start of the first hour not yet closed ``after_s`` seconds ago (epoch seconds): hours
    starting before it ended at least ``after_s`` ago."""
    return int((now - after_s) // 3600 * 3600)


def pending(client: Any, since: int, until: int) -> list[tuple[str, int, int, int, int]]:
    """(model, hour, raw values, rolled values, latest gen) for every (model, hour) with ``since <=
    hour < until`` (epoch seconds) whose raw feature-value count differs from its latest roll's (no
    roll: 0 values, gen 0)."""
    bounds = f"hour >= toDateTime({int(since)}, 'UTC') AND hour < toDateTime({int(until)}, 'UTC')"
    raw = RAW_FEATURE_VALUES.format(where=f"timestamp >= toDateTime64({int(since)}, 6, 'UTC') AND "
                                          f"timestamp < toDateTime64({int(until)}, 6, 'UTC')")
    sql = (f"SELECT model, toUInt32(hour), r.n, u.n, u.gen FROM ({raw}) AS r FULL OUTER JOIN "
           f"({latest_rolls(bounds)}) AS u USING (model, hour) WHERE r.n != u.n ORDER BY hour, model "
           f"SETTINGS join_use_nulls = 0")
    return [(m, int(h), int(r), int(u), int(g)) for m, h, r, u, g in client.query(sql).result_rows]


def roll(client: Any, hour: int, models: list[str] | None = None, *, after_gen: int = 0,
         clock: Callable[[], float] = time.time, min_values: int = ROLL_MIN_VALUES) -> int:
    """Roll ``hour`` (epoch seconds, the start of an hour) from the raw rows, for ``models`` or every
    model; returns the new generation (above ``after_gen``; the clock's microseconds, shifted)."""
    # Microseconds and 10 random bits: two collectors rolling the same hour at once get different ones.
    gen = max((int(clock() * 1e6) << 10) | random.getrandbits(10), after_gen + 1)
    only = " AND model IN {models:Array(String)}" if models is not None else ""
    params = {"models": models} if models is not None else None
    raw = (f"timestamp >= toDateTime64({hour}, 6, 'UTC') AND timestamp < toDateTime64({hour + 3600}, 6, 'UTC')"
           + only)
    rolled = f"hour = toDateTime({hour}, 'UTC')" + only
    client.command(roll_insert(raw, gen, min_values), parameters=params)
    client.command(roll_record(rolled, gen, raw, min_values), parameters=params)
    if after_gen:  # rows of older generations: never read again
        client.command(f"DELETE FROM {DB}.rollup_features_1h WHERE {rolled} AND gen < {gen}", parameters=params)
    return gen


def roll_pending(client: Any, since: int, until: int, *, clock: Callable[[], float] = time.time,
                 min_values: int = ROLL_MIN_VALUES) -> int:
    """Roll every (model, hour) of :func:`pending`; returns how many (model, hour) were rolled."""
    by_hour: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for model, hour, _raw, _rolled, gen in pending(client, since, until):
        by_hour[hour].append((model, gen))
    for hour, items in sorted(by_hour.items()):
        after = max(g for _, g in items)
        if after == 0 or len(items) > MAX_LISTED:  # never rolled, or much of it changed: the whole hour
            roll(client, hour, None, after_gen=after, clock=clock, min_values=min_values)
        else:
            roll(client, hour, sorted(m for m, _ in items), after_gen=after, clock=clock, min_values=min_values)
    return sum(len(v) for v in by_hour.values())


def roll_closed(client: Any, *, clock: Callable[[], float] = time.time, min_values: int = ROLL_MIN_VALUES) -> int:
    """Roll every closed hour that needs it (``rollups rebuild``, a new table, tests): (model, hour) rolled."""
    return roll_pending(client, 0, closed_before(clock(), 0.0), clock=clock, min_values=min_values)


class FeatureRoller:
    """Rolls closed hours every ``interval_s`` on its own thread (:meth:`start`)."""

    def __init__(self, client: Any, registry: CollectorRegistry, *, interval_s: float, after_s: float,
                 lookback_h: int = LOOKBACK_H, full_check_s: float = FULL_CHECK_S,
                 clock: Callable[[], float] = time.time, min_values: int = ROLL_MIN_VALUES) -> None:
        self.client = client
        self.min_values = min_values
        self.interval_s = interval_s
        self.after_s = after_s
        self.lookback_h = lookback_h
        self.full_check_s = full_check_s
        self.clock = clock
        self.rolled = Counter("driftline_feature_rollup_rolled_total",
                              "(model, hour) pairs the collector rolled into rollup_features_1h (first rolls and "
                              "re-rolls after late or deleted rows)", registry=registry)
        self.runs = Counter("driftline_feature_rollup_runs_total", "Feature-rollup roll runs (and failed, by outcome)",
                            ["outcome"], registry=registry)
        self.last_full = Gauge("driftline_feature_rollup_full_check_timestamp_seconds",
                               "When every hour was last checked for rolls (epoch seconds)", registry=registry)
        self._full_at: float | None = None
        self._failing = False
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One run: (model, hour) pairs rolled."""
        now = self.clock()
        full = self._full_at is None or now - self._full_at >= self.full_check_s
        since = 0 if full else int((now - self.lookback_h * 3600) // 3600 * 3600)
        n = roll_pending(self.client, since, closed_before(now, self.after_s), clock=self.clock,
                         min_values=self.min_values)
        if full:
            self._full_at = now
            self.last_full.set(now)
        self.rolled.inc(n)
        self.runs.labels("ok").inc()
        return n

    def _loop(self, stop: threading.Event) -> None:
        while True:
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the store away: said once per streak, tried next interval
                self.runs.labels("failed").inc()
                if not self._failing:
                    code = error_code(exc)  # type and code only: a message could quote a stored value
                    logger.warning("feature rollup: could not roll (%s%s); the dashboard reads raw rows for the "
                                   "hours not rolled; trying again every %g s", type(exc).__name__,
                                   f", ClickHouse code {code}" if code else "", self.interval_s)
                self._failing = True
            else:
                if self._failing:
                    logger.info("feature rollup: rolling again")
                self._failing = False
            if stop.wait(self.interval_s):
                return

    def start(self, stop: threading.Event) -> threading.Thread:
        """Roll now and every ``interval_s`` until ``stop`` is set (a daemon thread)."""
        self._thread = threading.Thread(target=self._loop, args=(stop,), name="driftline-feature-roller", daemon=True)
        self._thread.start()
        return self._thread


__all__ = ["FULL_CHECK_S", "LOOKBACK_H", "MAX_LISTED", "FeatureRoller", "closed_before", "pending", "roll",
           "roll_closed", "roll_pending"]
