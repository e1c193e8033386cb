"""The rollups counted against the raw prediction log: what ``driftline rollups check`` and the
collector's audit (``rollup_audit.py``) compare.

The rollups (``rollups.py``) are filled by materialized views as rows are inserted. The raw tables
are the record; :func:`differences` counts, per model and hour, from the raw tables and from the
rollups (:data:`COUNTED`): the rows of ``predictions``, ``labels`` and ``outcomes``
(``rollup_predictions_1m``, ``rollup_predictions_1h``; ``rollup_arrivals_1h`` per hour only), the
served predictions' feature values (``rollup_features_1h``, which the drift panels read: each
(model, hour)'s latest roll, up to the model's last rolled hour, ``feature_rolls.py``) and the
served predictions that have a label (``rollup_labels_1m``, the label join behind the performance
panels). A rollup that counts fewer missed an insert; one that counts more holds rows deleted since
(deletions reach the aggregates only by ``rebuild``). Rows that arrive while the check runs can
differ for a moment, so :func:`check` reads a difference twice.
"""

from __future__ import annotations

import time
from typing import Any, Collection, NamedTuple

from driftline.collector.store.rollup_sql import FEATURE_VALUES, HOUR, ROLLS, SERVED, latest_rolls, rolled_rows
from driftline.collector.store.tables import DATABASE as DB
from driftline.sdk.contract import LABEL, OUTCOME, PREDICTION


class Counted(NamedTuple):
    """A rollup checked against the raw rows it counts, per model and hour (or per hour only, the
    model given as ``'*'``): ``raw`` and ``rolled`` are queries giving ``model, hour, n``, with a
    ``{since}`` placeholder (epoch seconds at the start of an hour: only the hours from then on)."""

    table: str
    rollup: str
    raw: str
    rolled: str
    what: str = "raw rows"


def _raw(table: str, by_model: bool, n: str = "count()", where: str = "1") -> str:
    model = "model" if by_model else "'*'"
    return (f"SELECT {model} AS model, {HOUR} AS hour, {n} AS n FROM {DB}.{table} "
            f"WHERE ({where}) AND timestamp >= toDateTime({{since}}, 'UTC') GROUP BY model, hour")


def _rolled(rollup: str, by_model: bool, n: str = "sum(n)", where: str = "1", time: str = "minute") -> str:
    """A rollup's count per model and hour (its ``time`` column may be finer than the hour)."""
    model = "model" if by_model else "'*'"
    return (f"SELECT {model} AS model, toDateTime(toStartOfHour({time}), 'UTC') AS hour, {n} AS n "
            f"FROM {DB}.{rollup} WHERE ({where}) AND {time} >= toDateTime({{since}}, 'UTC') GROUP BY model, hour")


# The feature rollup's hours up to each model's last rolled one (the dashboard reads the rollup for
# those, the raw rows after): an hour there without a roll is missing from the charts until rolled.
_ROLLED_RAW = (f"SELECT p.model AS model, {HOUR} AS hour, sum({FEATURE_VALUES}) AS n "
               f"FROM {DB}.{PREDICTION.table} AS p INNER JOIN (SELECT model, max(hour) AS last FROM {ROLLS} "
               f"GROUP BY model) AS w ON p.model = w.model WHERE {SERVED} AND {HOUR} <= w.last "
               f"AND timestamp >= toDateTime({{since}}, 'UTC') GROUP BY model, hour")
# the rolled values: the latest roll's rows, and the values of the hours rolled as raw (too few
# feature values: the dashboard reads their raw rows), as their roll counted them
_ROLLED = (f"SELECT model, hour, sum(n) AS n FROM ("
           f"{_rolled('rollup_features_1h', True, where=rolled_rows(), time='hour')} UNION ALL "
           f"SELECT model, hour, n FROM ({latest_rolls()}) WHERE raw = 1 AND hour >= toDateTime({{since}}, 'UTC')) "
           "GROUP BY model, hour")
_LABELLED = f"{SERVED} AND (model, event_id) IN (SELECT model, prediction_id FROM {DB}.{LABEL.table})"

#: what is compared: every prediction, label and outcome is counted once by the rollups that count
#: rows; every served prediction's feature value once by the feature rollup; every served
#: prediction with a label once by the label join (by the hour of the prediction)
COUNTED: tuple[Counted, ...] = (
    *(Counted(PREDICTION.table, rollup, _raw(PREDICTION.table, True), _rolled(rollup, True))
      for rollup in ("rollup_predictions_1m", "rollup_predictions_1h")),
    *(Counted(kind.table, "rollup_arrivals_1h", _raw(kind.table, False),
              _rolled("rollup_arrivals_1h", False, where=f"kind = '{kind.table}'", time="hour"))
      for kind in (LABEL, OUTCOME)),
    Counted(PREDICTION.table, "rollup_features_1h", _ROLLED_RAW, _ROLLED, "feature values"),
    Counted(PREDICTION.table, "rollup_labels_1m", _raw(PREDICTION.table, True, where=_LABELLED),
            _rolled("rollup_labels_1m", True, "sum(labelled)"), "labelled predictions"),
)


def missing(client: Any) -> list[str]:
    """The rollups of :data:`COUNTED` the store does not have (an older release's store before a
    collector started: every writer creates and backfills them at start, as ``rebuild`` does)."""
    have = {r[0] for r in client.query(f"SELECT name FROM system.tables WHERE database = '{DB}'").result_rows}
    return sorted({c.rollup for c in COUNTED} - have)


def differences(client: Any, absent: Collection[str] = (), since: int = 0) -> list[dict[str, Any]]:
    """Per (raw table, rollup, model, hour) where the counts differ: ``raw`` and ``rollup`` rows.
    The rollups in ``absent`` (:func:`missing`) are left out; only hours from ``since`` (epoch
    seconds, the start of an hour) are counted."""
    out = []
    for c in COUNTED:
        if c.rollup in absent:
            continue
        raw, rolled = c.raw.format(since=int(since)), c.rolled.format(since=int(since))
        sql = (f"SELECT model, hour, r.n AS raw, u.n AS rolled FROM ({raw}) AS r FULL OUTER JOIN ({rolled}) "
               f"AS u USING (model, hour) WHERE raw != rolled ORDER BY model, hour SETTINGS join_use_nulls = 0")
        for model, hour, raw_n, rolled_n in client.query(sql).result_rows:
            out.append({"table": c.table, "rollup": c.rollup, "model": model, "hour": hour.isoformat(),
                        "raw": int(raw_n), "rollup_rows": int(rolled_n), "counts": c.what})
    return out


_KEY = ("table", "rollup", "model", "hour", "raw", "rollup_rows")  # "counts" follows from the rollup


def check(client: Any, recheck_s: float = 2.0, absent: Collection[str] = (), since: int = 0) -> list[dict[str, Any]]:
    """The differences seen twice, ``recheck_s`` apart (rows stored in between settle)."""
    first = differences(client, absent, since)
    if not first:
        return []
    time.sleep(max(0.0, recheck_s))
    seen = {tuple(d[k] for k in _KEY) for d in first}
    return [d for d in differences(client, absent, since) if tuple(d[k] for k in _KEY) in seen]
