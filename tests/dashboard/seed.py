"""Realistic data for one model, generated inside ClickHouse (``INSERT … SELECT FROM numbers()``).

Test data, kept with the tests (it is the only reason the dashboard would import alerting): used
by the dashboard's tests and benchmark, and handy for a screenshot or a demo without Kafka:
predictions (primary, a shadow and an A/B arm ``challenger``) whose inputs drift at
``drift_at``, delayed labels for 60 % of served predictions, ``click`` outcomes, detector rows in
``drift_metrics``, a stored reference and a few alerts. Ten million predictions take seconds
because no row passes through Python.

>>> from tests.dashboard.seed import SeedSpec, seed   # doctest: +SKIP
>>> seed(client, SeedSpec(model="churn", n_predictions=100_000))
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

FEATURES: dict[str, tuple[float, float]] = {  # name -> (mean, std) before drift
    "mean radius": (14.1, 3.5), "mean texture": (19.3, 4.3), "mean perimeter": (92.0, 24.3),
    "worst area": (880.0, 569.0), "mean smoothness": (0.096, 0.014), "mean symmetry": (0.18, 0.027),
}
DRIFTED = {"mean radius": 1.35, "mean texture": 1.4, "mean perimeter": 1.3}
#: importance to the model (the impact rows: importance × PSI, the PSI of a shifted feature in
#: [0.6, 1.1)): apart enough that the impact order is this order, which is neither the names' nor
#: the PSI's, so a page that ranks by impact shows it
IMPORTANCE = {"mean perimeter": 0.5, "mean texture": 0.25, "mean radius": 0.12, "worst area": 0.05,
              "mean smoothness": 0.04, "mean symmetry": 0.04}
#: the alarm budget the seeded detectors state: one false verdict per week
BUDGET = {"false_verdicts": 1, "per": "week", "source": "observed traffic"}
REGIONS = ("eu", "us", "apac")


@dataclass(frozen=True)
class SeedSpec:
    """What to generate. Times are UTC; defaults end now and span the last 24 hours."""

    model: str = "seeded-model"
    version: str = "v1"
    n_predictions: int = 100_000
    end: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    span_s: float = 86400.0
    drift_at_fraction: float = 0.6
    shadow_share: float = 0.5
    challenger_share: float = 0.2
    label_share: float = 0.6
    window_s: int = 1800
    alerts: bool = True
    detectors: bool = True  # drift_metrics rows and a stored reference
    seed: int = 7
    #: features whose inputs shift at ``drift_at`` (scaled by DRIFTED[name], else by 1.25)
    drifted: tuple[str, ...] = tuple(DRIFTED)
    #: whether performance falls after the drift (accuracy, concept drift); False: drift only
    degrade: bool = True

    @property
    def start(self) -> dt.datetime:
        return self.end - dt.timedelta(seconds=self.span_s)

    @property
    def drift_at(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.span_s * self.drift_at_fraction)


def _uuid_expr(salt: str, num: str, kind: int = 0) -> str:
    # Deterministic ids: labels and outcomes are generated separately and must name their
    # prediction, so every id is a function of the row number.
    return f"toUUID(concat('{salt}', '-{kind:04x}-7000-8000-', leftPad(lower(hex({num})), 12, '0')))"


def _ts(spec: SeedSpec) -> str:
    return f"{spec.start.timestamp():.6f}"


def seed_predictions(client: Any, spec: SeedSpec, salt: str) -> None:
    """Primary, challenger and shadow predictions; one row per ``number``."""
    n = spec.n_predictions
    step = spec.span_s / n
    drift_num = int(n * spec.drift_at_fraction)
    h = f"cityHash64(number, {spec.seed})"
    # u(k): a uniform in [0, 1) from the row number, different for each k
    u = lambda k: f"(cityHash64(number, {spec.seed}, {k}) % 1000000) / 1000000.0"  # noqa: E731
    drifting = (f"(number >= {drift_num} AND ({h} % 3 = 0 OR number >= "
                f"{drift_num + (n - drift_num) // 3}))")
    feats = []
    for i, (name, (mean, std)) in enumerate(FEATURES.items()):
        # Box-Muller from two row-derived uniforms: reproducible normal inputs.
        normal = f"sqrt(-2 * log(greatest({u(10 + i)}, 1e-9))) * cos(2 * pi() * {u(30 + i)})"
        scale = DRIFTED.get(name, 1.25) if name in spec.drifted else 1.0
        feats.append(f"'{name}', round(({mean} + {std} * {normal}) * if({drifting}, {scale}, 1.0), 5)")
    # The shadow scores the same request as the primary it follows, so it keeps the row number.
    shadow = f"{h} % 1000 < {int(spec.shadow_share * 1000)}"
    truth_benign = f"({u(1)} < 0.6)"
    err = f"if({drifting}, 0.3, 0.05)" if spec.degrade else "0.05"
    sql = f"""
INSERT INTO driftline.predictions (event_id, timestamp, model, model_version, variant, request_id,
    features_num, features_str, prediction, prediction_label, prediction_scores, latency_ms,
    status, error, tags)
SELECT
    {_uuid_expr(salt, 'number * 2 + is_shadow')} AS event_id,
    toDateTime64({_ts(spec)} + number * {step!r} + is_shadow * 0.001, 6, 'UTC'),
    '{spec.model}', '{spec.version}',
    multiIf(is_shadow, 'shadow', {u(2)} < {spec.challenger_share}, 'challenger', 'primary'),
    toString({_uuid_expr(salt, 'number * 2')}),
    map({', '.join(feats)}),
    map('referrer', ['search', 'ads', 'direct', 'partner'][1 + {h} % 4]),
    concat('{{"benign": ', toString(round(p, 6)), ', "malignant": ', toString(round(1 - p, 6)), '}}'),
    if(p >= 0.5, 'benign', 'malignant'),
    map('benign', round(p, 6), 'malignant', round(1 - p, 6)),
    round(if(is_shadow, 0.7, 1.0) * (3 + 6 * {u(3)} + if({u(4)} < 0.02, 40 * {u(5)}, 0)), 3),
    if({u(6)} < 0.005, 'error', 'ok'), if({u(6)} < 0.005, 'TimeoutError', ''),
    map('region', ['eu', 'us', 'apac'][1 + intDiv({h}, 7) % 3])
FROM (
    SELECT number, is_shadow,
           -- correct with probability 1 - err; confidence grows with a row-derived uniform
           if(({truth_benign}) = ({u(7)} >= {err}), 0.5 + 0.49 * {u(8)}, 0.5 - 0.49 * {u(8)})
               * if(is_shadow, 0.97, 1.0) AS p
    FROM numbers({n}) ARRAY JOIN if({shadow}, [0, 1], [0]) AS is_shadow
)"""
    client.command(sql, settings={"max_insert_threads": 2})


def seed_labels_outcomes(client: Any, spec: SeedSpec, salt: str) -> None:
    n = spec.n_predictions
    step = spec.span_s / n
    u = lambda k: f"(cityHash64(number, {spec.seed}, {k}) % 1000000) / 1000000.0"  # noqa: E731
    client.command(f"""
INSERT INTO driftline.labels (event_id, timestamp, model, model_version, prediction_id, label,
                              label_str, tags)
SELECT {_uuid_expr(salt, 'number', 1)}, toDateTime64({_ts(spec)} + number * {step!r} + 30, 6, 'UTC'),
       '{spec.model}', '{spec.version}', {_uuid_expr(salt, 'number * 2')},
       if({u(1)} < 0.6, '"benign"', '"malignant"'), if({u(1)} < 0.6, 'benign', 'malignant'), map()
FROM numbers({n}) WHERE {u(9)} < {spec.label_share}""")
    client.command(f"""
INSERT INTO driftline.outcomes (event_id, timestamp, model, prediction_id, request_id, name, value,
                                tags)
SELECT {_uuid_expr(salt, 'number', 2)}, toDateTime64({_ts(spec)} + number * {step!r} + 5, 6, 'UTC'),
       '{spec.model}', {_uuid_expr(salt, 'number * 2')}, '', 'click',
       if({u(11)} < if({u(2)} < {spec.challenger_share}, 0.12, 0.08), 1, 0), map()
FROM numbers({n})""")


def _metric_rows(spec: SeedSpec) -> list[tuple[Any, ...]]:
    from driftline.detectors.base import STAT_ALARM_BUDGET, STAT_DRIFTED_SHARE, STAT_IMPACT

    rng = random.Random(spec.seed)
    rows: list[tuple[Any, ...]] = []
    n_windows = max(1, int(spec.span_s // spec.window_s))
    per_window = max(1, spec.n_predictions // n_windows)
    windows_per_week = int(7 * 86400 // spec.window_s)

    def add(det: str, feat: str, seg: str, ws: dt.datetime, stat: str, value: float,
            p: float | None, thr: float | None, drift: bool, details: dict[str, Any],
            exceeded: bool | None = None) -> None:
        # drift: the verdict of (detector, feature, segment, window); exceeded: this statistic's own
        rows.append((spec.model, spec.version, det, feat, seg, ws,
                     ws + dt.timedelta(seconds=spec.window_s), stat, float(value), p, thr, drift,
                     5000, per_window, json.dumps(details), drift if exceeded is None else exceeded))

    for w in range(n_windows):
        ws = spec.start + dt.timedelta(seconds=w * spec.window_s)
        late = ws >= spec.drift_at
        for seg in ("", "region=eu"):
            drifted = []
            for name in FEATURES:
                shift = late and name in spec.drifted
                psi = (0.6 + rng.random() * 0.5) if shift else rng.random() * 0.05
                ks_p = 1e-6 if shift else 0.2 + rng.random() * 0.8
                add("data_drift", name, seg, ws, "psi", psi, None, 0.2, shift, {"verdict": True},
                    exceeded=psi > 0.2)
                add("data_drift", name, seg, ws, "ks", 0.3 if shift else 0.02, ks_p, 0.05, shift,
                    {"correction": "holm"}, exceeded=ks_p < 0.05)
                if shift:
                    drifted.append(name)
                    imp = IMPORTANCE[name]
                    add("data_drift", name, seg, ws, STAT_IMPACT, imp * psi, None, None, True,
                        {"importance": imp, "magnitude": psi, "rank": 0})
            share = len(drifted) / len(FEATURES)
            add("data_drift", "*", seg, ws, STAT_DRIFTED_SHARE, share, None, 0.5, share >= 0.5,
                {"drifted": drifted})
        alpha = BUDGET["false_verdicts"] / windows_per_week
        add("data_drift", "*", "", ws, STAT_ALARM_BUDGET, alpha, None, None, False,
            {**BUDGET, "windows_per_period": windows_per_week,
             "per_test_alpha": alpha / (2 * len(FEATURES))})
        bad = late and spec.degrade
        acc = (0.7 if bad else 0.95) + rng.uniform(-0.02, 0.02)
        for stat, value in (("accuracy", acc), ("f1", acc - 0.02), ("roc_auc", acc + 0.02)):
            add("performance", "model", "", ws, stat, value, None, 0.855, acc < 0.855, {},
                exceeded=value < 0.855)
        add("concept.adwin", "error", "", ws, "changes", 1.0 if bad else 0.0, None, None, bad, {})
        conf = (0.78 if bad else 0.9) + rng.uniform(-0.01, 0.01)
        add("prediction_drift", "confidence", "", ws, "mean", conf, None, None, bad, {})
        agree = (0.8 if late else 0.96) + rng.uniform(-0.01, 0.01)
        add("shadow", "prediction", "", ws, "agreement_rate", agree, None, 0.9, agree < 0.9, {})
        lift = 0.04 + rng.uniform(-0.01, 0.01)
        add("ab", "click", "", ws, "lift.challenger", lift, 0.001, 0.05, True, {"test": "welch"})
        add("quality", "mean radius", "", ws, "missing_rate", 0.0, None, 0.05, False, {})
    return rows


def seed_metrics(client: Any, spec: SeedSpec) -> int:
    from driftline.detectors.base import MetricRow

    rows = _metric_rows(spec)
    client.insert("driftline.drift_metrics", rows, column_names=list(MetricRow.COLUMNS))
    return len(rows)


def seed_reference(client: Any, spec: SeedSpec) -> None:
    """A stored reference built from pre-drift inputs, as ``driftline reference set`` would."""
    import numpy as np
    import pandas as pd

    from driftline.detectors.reference import from_dataframe
    from driftline.detectors.reference_store import ReferenceStore

    rng = np.random.default_rng(spec.seed)
    df = pd.DataFrame({k: rng.normal(m, s, 5000) for k, (m, s) in FEATURES.items()})
    df["referrer"] = rng.choice(["search", "ads", "direct", "partner"], 5000)
    from driftline.collector.store import migrate

    migrate(client)
    store = ReferenceStore(client)
    store.save(from_dataframe(df, spec.model, spec.version))


def seed_alerts(client: Any, spec: SeedSpec, dashboard_url: str = "") -> None:
    from driftline.alerting.incidents import dashboard_link
    from driftline.alerting.store import COLUMNS
    from driftline.collector.store import migrate

    migrate(client)
    since = spec.drift_at
    rows = []
    for i, (rule, stat, sev, segment) in enumerate((
            ("input-drift", "psi", "critical", ""), ("accuracy-drop", "accuracy", "warning", ""),
            ("eu-drift", "psi", "warning", "region=eu"))):
        incident = f"{spec.model}-{rule}-{uuid.uuid4().hex[:6]}"
        for j, event in enumerate(("firing", "repeat") + (("resolved",) if i == 2 else ())):
            at = since + dt.timedelta(seconds=spec.window_s * (1 + j))
            link = dashboard_link(dashboard_url or "http://localhost:8501", spec.model, spec.version,
                                  segment, since - dt.timedelta(hours=1), at + dt.timedelta(hours=1))
            rows.append({
                "event_id": uuid.uuid4().hex, "event_time": at, "event": event, "incident": incident,
                "rule": rule, "kind": "drift", "severity": sev, "model": spec.model,
                "model_version": spec.version, "segment": segment, "statistic": stat,
                "condition": f"{stat} > 0.2" if stat == "psi" else f"{stat} < 0.855",
                "since": since, "value": 0.71 if stat == "psi" else 0.7, "samples": 5000,
                "features": json.dumps([{"feature": f, "psi": 0.7} for f in DRIFTED]),
                "windows": "[]", "evidence_sql": f"SELECT * FROM driftline.drift_metrics WHERE model = '{spec.model}'",
                "dashboard_link": link, "channels": ["slack"]})
    client.insert("driftline.alerts", [[r[c] for c in COLUMNS] for r in rows], column_names=list(COLUMNS))


def seed(client: Any, spec: SeedSpec) -> SeedSpec:
    """Create the tables if needed and seed everything for ``spec.model``; returns ``spec``."""
    from driftline.collector.store import migrate
    from driftline.collector.store.feature_rolls import roll_closed

    migrate(client)  # every table; the rollups' MVs fill them as the INSERT … SELECTs below run (the
    # feature rollup's closed hours are rolled after: the current hour is read raw)
    salt = uuid.uuid5(uuid.NAMESPACE_URL, f"{spec.model}/{spec.version}/{spec.seed}").hex[:8]
    seed_predictions(client, spec, salt)
    roll_closed(client)  # as a running collector's roller does
    seed_labels_outcomes(client, spec, salt)
    if spec.detectors:
        seed_metrics(client, spec)
        seed_reference(client, spec)
    if spec.alerts:
        seed_alerts(client, spec)
    return spec


__all__ = ["BUDGET", "DRIFTED", "FEATURES", "IMPORTANCE", "SeedSpec", "seed", "seed_alerts", "seed_metrics", "seed_predictions",
           "seed_reference"]
