"""``driftline rollups``: check the dashboard's rollups against the raw prediction log, or rebuild them.

    driftline rollups check              # exit 1 if a rollup's count differs from the raw rows'
    driftline rollups check --json
    driftline rollups rebuild --yes      # recompute every rollup from the raw tables

The rollups (``rollups.py``) are filled by materialized views as rows are inserted. The raw tables
are the record; ``check`` counts, per model and hour, from the raw tables and from the rollups
(:data:`COUNTED`): the rows of ``predictions``, ``labels`` and ``outcomes`` (``rollup_predictions_1m``,
``rollup_predictions_1h``; ``rollup_arrivals_1h`` per hour only), the served predictions' feature
values (``rollup_features_1h``, which the drift panels read) and the served predictions that have a
label (``rollup_labels_1m``, the label join behind the performance panels). A rollup that counts
fewer missed an insert; one that counts more holds rows deleted since (deletions reach the
aggregates only by ``rebuild``).
Rows that arrive while the check runs can differ for a moment, so a difference is read twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Collection, NamedTuple

from driftline.collector.store.client import DEFAULT_URL, connect, resolve_url, store_errors
from driftline.collector.store.rollup_sql import FEATURE_VALUES, HOUR, SERVED
from driftline.collector.store.tables import DATABASE as DB
from driftline.sdk.contract import LABEL, OUTCOME, PREDICTION
from driftline.sdk.errors import StoreError


class Counted(NamedTuple):
    """A rollup checked against the raw rows it counts, per model and hour (or per hour only, the
    model given as ``'*'``): ``raw`` and ``rolled`` are queries giving ``model, hour, n``."""

    table: str
    rollup: str
    raw: str
    rolled: str
    what: str = "raw rows"


def _raw(table: str, by_model: bool, n: str = "count()", where: str = "1") -> str:
    model = "model" if by_model else "'*'"
    return f"SELECT {model} AS model, {HOUR} AS hour, {n} AS n FROM {DB}.{table} WHERE {where} GROUP BY model, hour"


def _rolled(rollup: str, by_model: bool, n: str = "sum(n)", where: str = "1", time: str = "minute") -> str:
    """A rollup's count per model and hour (its ``time`` column may be finer than the hour)."""
    model = "model" if by_model else "'*'"
    return (f"SELECT {model} AS model, toDateTime(toStartOfHour({time}), 'UTC') AS hour, {n} AS n "
            f"FROM {DB}.{rollup} WHERE {where} GROUP BY model, hour")


_LABELLED = f"{SERVED} AND (model, event_id) IN (SELECT model, prediction_id FROM {DB}.{LABEL.table})"

#: what ``check`` compares: every prediction, label and outcome is counted once by the rollups
#: that count rows; every served prediction's feature value once by the feature rollup; every
#: served prediction with a label once by the label join (by the hour of the prediction)
COUNTED: tuple[Counted, ...] = (
    *(Counted(PREDICTION.table, rollup, _raw(PREDICTION.table, True), _rolled(rollup, True))
      for rollup in ("rollup_predictions_1m", "rollup_predictions_1h")),
    *(Counted(kind.table, "rollup_arrivals_1h", _raw(kind.table, False),
              _rolled("rollup_arrivals_1h", False, where=f"kind = '{kind.table}'", time="hour"))
      for kind in (LABEL, OUTCOME)),
    Counted(PREDICTION.table, "rollup_features_1h", _raw(PREDICTION.table, True, f"sum({FEATURE_VALUES})", SERVED),
            _rolled("rollup_features_1h", True, time="hour"), "feature values"),
    Counted(PREDICTION.table, "rollup_labels_1m", _raw(PREDICTION.table, True, where=_LABELLED),
            _rolled("rollup_labels_1m", True, "sum(labelled)"), "labelled predictions"),
)


def missing(client: Any) -> list[str]:
    """The rollups of :data:`COUNTED` the store does not have (an older release's store before a
    collector started: every writer creates and backfills them at start, as ``rebuild`` does)."""
    have = {r[0] for r in client.query(f"SELECT name FROM system.tables WHERE database = '{DB}'").result_rows}
    return sorted({c.rollup for c in COUNTED} - have)


def differences(client: Any, absent: Collection[str] = ()) -> list[dict[str, Any]]:
    """Per (raw table, rollup, model, hour) where the counts differ: ``raw`` and ``rollup`` rows.
    The rollups in ``absent`` (:func:`missing`) are left out."""
    out = []
    for c in COUNTED:
        if c.rollup in absent:
            continue
        sql = (f"SELECT model, hour, r.n AS raw, u.n AS rolled FROM ({c.raw}) AS r FULL OUTER JOIN ({c.rolled}) "
               f"AS u USING (model, hour) WHERE raw != rolled ORDER BY model, hour SETTINGS join_use_nulls = 0")
        for model, hour, raw, rolled_n in client.query(sql).result_rows:
            out.append({"table": c.table, "rollup": c.rollup, "model": model, "hour": hour.isoformat(),
                        "raw": int(raw), "rollup_rows": int(rolled_n), "counts": c.what})
    return out


def check(client: Any, recheck_s: float = 2.0, absent: Collection[str] = ()) -> list[dict[str, Any]]:
    """The differences seen twice, ``recheck_s`` apart (rows stored in between settle)."""
    first = differences(client, absent)
    if not first:
        return []
    time.sleep(max(0.0, recheck_s))
    key = ("table", "rollup", "model", "hour", "raw", "rollup_rows")  # "counts" follows from the rollup
    seen = {tuple(d[k] for k in key) for d in first}
    return [d for d in differences(client, absent) if tuple(d[k] for k in key) in seen]


def _check(args: argparse.Namespace, client: Any) -> int:
    absent = missing(client)
    found = check(client, args.recheck_s, absent)
    if args.json:
        print(json.dumps({"consistent": not found and not absent, "missing": absent, "differences": found}))
        return 1 if found or absent else 0
    for rollup in absent:
        print(f"{rollup} is missing: `driftline rollups rebuild --yes` creates and fills it (or start a collector)")
    if not found and not absent:
        print("rollups consistent with the raw tables: "
              + ", ".join(f"{c.table} → {c.rollup} ({c.what})" for c in COUNTED))
        return 0
    for d in found:
        what = "misses" if d["rollup_rows"] < d["raw"] else "holds more than"
        who = "every model" if d["model"] == "*" else f"model {d['model']!r}"
        print(f"{d['rollup']} {what} {d['table']}: {who}, hour {d['hour']}: "
              f"{d['rollup_rows']} against {d['raw']} {d['counts']}")
    if found:
        print(f"{len(found)} difference{'s' if len(found) != 1 else ''}; `driftline rollups rebuild --yes` "
              "recomputes the rollups from the raw tables (stop the collectors first)")
    return 1


def _rebuild(args: argparse.Namespace, client: Any) -> int:
    from driftline.collector.store import rollups

    if not args.yes:
        print("rebuild truncates every rollup and refills it from the raw tables; rows inserted meanwhile "
              "may be counted twice, so stop the collectors first, then run with --yes", file=sys.stderr)
        return 2
    started = time.monotonic()
    rollups.rebuild(client)
    print(f"rollups rebuilt from the raw tables in {time.monotonic() - started:.1f} s")
    return 0


def _handler(args: argparse.Namespace) -> int:
    url = resolve_url(args.clickhouse_url, os.environ)
    try:
        with store_errors(url):
            return {"check": _check, "rebuild": _rebuild}[args.action](args, connect(url))
    except StoreError as exc:  # 2, not 1: exit 1 of `check` means the rollups differ
        print(f"driftline: {exc}", file=sys.stderr)
        return 2


def register(sub: Any) -> None:
    """Add the ``rollups`` command to the ``driftline`` parser."""
    p = sub.add_parser("rollups", help="check the dashboard's rollups against the raw tables, or rebuild them")
    p.add_argument("action", choices=("check", "rebuild"),
                   help="check: counts per model and hour, exit 1 on a difference; rebuild: recompute all")
    p.add_argument("--yes", action="store_true", help="rebuild: the collectors are stopped, go ahead")
    p.add_argument("--json", action="store_true", help="check: print the differences as JSON")
    p.add_argument("--recheck-s", type=float, default=2.0, metavar="SECONDS",
                   help="check: read a difference again after this long before reporting it (default 2)")
    p.add_argument("--clickhouse-url", help=f"default: DRIFTLINE_CLICKHOUSE_URL or {DEFAULT_URL}")
    p.set_defaults(handler=_handler)
