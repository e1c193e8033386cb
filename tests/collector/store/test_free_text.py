"""Free text stays out of the categorical rollup (its lengths and entities summarised instead);
the feature rollup's rows are bounded by bins."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from driftline.collector.store import rollups
from driftline.collector.store.feature_rolls import roll_closed
from driftline.collector.store.free_text import TEXT_RULE, TEXT_SELECT, TextRule
from driftline.collector.store.rollup_sql import BIN_VALUES, FEATURE_BINS
from driftline.collector.store.writer import ClickHouseWriter

HOUR = dt.datetime(2026, 11, 3, 9, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("value,text", [
    ("pro", False), ("New York", False), ("<EMAIL_ADDRESS>", False), ("x" * 64, False),
    ("x" * 65, True), ("é" * 64, False),  # characters, not bytes
    ("my card was charged twice", True), ("call <PERSON>", True), ("hi <PHONE_NUMBER>!", True),
])
def test_text_rule_per_value(ch_client: Any, value: str, text: bool) -> None:
    assert ch_client.query(f"SELECT {TEXT_RULE.sql('{v:String}')}", parameters={"v": value}).result_rows[0][0] == text


def test_text_rule_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="min_words"):
        TextRule(min_words=1)


def _event(model: str, i: int, features: dict[str, Any], variant: str = "primary") -> dict[str, Any]:
    ts = HOUR + dt.timedelta(seconds=i)
    return {"type": "prediction", "event_id": str(uuid.uuid4()), "model": model, "model_version": "v1",
            "variant": variant, "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "features": features,
            "prediction": 0.5, "status": "ok"}


def test_free_text_feature_never_in_categories(ch_client: Any) -> None:
    rollups.ensure(ch_client)
    m = f"text-{uuid.uuid4().hex[:8]}"
    notes = [f"Hi, this is <PERSON>. Order {i} was charged twice, call me at <PHONE_NUMBER> or <PHONE_NUMBER>."
             for i in range(30)] + ["short but <PERSON> here", "ok"]
    events = [_event(m, i, {"note": note, "plan": ["pro", "free"][i % 2]}) for i, note in enumerate(notes)]
    events.append(_event(m, 99, {"note": notes[0], "plan": "pro"}, variant="shadow"))  # shadows excluded
    ClickHouseWriter(ch_client).write(events)
    roll_closed(ch_client, min_values=0)  # binned, however few the predictions
    cats = ch_client.query("SELECT feature, category, sum(n) FROM driftline.rollup_features_1h "
                           "WHERE model = {m:String} AND kind = 1 GROUP BY feature, category ORDER BY feature, category",
                           parameters={"m": m}).result_rows
    # 'ok' is a category of note; no message, no fragment of one is
    assert cats == [("note", "ok", 1), ("plan", "free", 16), ("plan", "pro", 16)]
    text = ch_client.query(f"SELECT sum(n), sum(chars), sum(flagged), sumMap(entities), min(len_lo), max(len_hi) "
                           f"FROM ({TEXT_SELECT.format(src='driftline.predictions', where='model = {m:String}')}) "
                           "WHERE feature = 'note'", parameters={"m": m}).result_rows[0]
    lengths = [len(n) for n in notes[:31]]
    assert text[:3] == (31, sum(lengths), 31)
    assert dict(text[3]) == {"PERSON": 31, "PHONE_NUMBER": 60}
    assert (text[4], text[5]) == (min(lengths), max(lengths))


def test_feature_rollup_rows_bounded_by_bins(ch_client: Any) -> None:
    """N models x F features x V values per hour: at most FEATURE_BINS equi-depth rows per model,
    feature and hour whatever V, and at most one per BIN_VALUES values (one roll of the closed hour:
    every row written once), disjoint and in order; a feature of few distinct values keeps each."""
    rollups.ensure(ch_client)
    tag = uuid.uuid4().hex[:8]
    n_models, n_features, per, small = 3, 4, 3000, 40
    # distinct values (a 64-bit hash each) and a feature of five values; one more model of 40 events
    feats = ", ".join(f"'f{j}', 100 + 300 * (cityHash64(number, {j}) / pow(2, 64))" for j in range(n_features))
    ch_client.command(f"""
INSERT INTO driftline.predictions (event_id, timestamp, model, model_version, variant, request_id,
    features_num, prediction, status, error)
SELECT generateUUIDv4(number), toDateTime64('2026-11-03 10:00:00', 6, 'UTC') + number * 0.001,
       concat('bins-{tag}-', toString(if(number < {small}, {n_models}, number % {n_models}))), 'v1', 'primary',
       toString(number), map({feats}, 'few', toFloat64(intDiv(number, {n_models}) % 5)), '0', 'ok', ''
FROM numbers({n_models * per + small})""")
    roll_closed(ch_client, min_values=0)  # the small model too
    rows = ch_client.query(
        "SELECT model, feature, bin, sum(n), min(lo), max(hi) FROM driftline.rollup_features_1h "
        "WHERE startsWith(model, {p:String}) GROUP BY model, feature, hour, model_version, kind, bin, category "
        "ORDER BY model, feature, bin", parameters={"p": f"bins-{tag}-"}).result_rows
    per_feature: dict[tuple[str, str], list[tuple[int, int, float, float]]] = {}
    for model, feature, b, n, lo, hi in rows:
        per_feature.setdefault((model, feature), []).append((b, n, lo, hi))
    assert len(per_feature) == (n_models + 1) * (n_features + 1)
    values = {(m, f): sum(n for _, n, _, _ in bins) for (m, f), bins in per_feature.items()}
    assert sum(values.values()) == (n_models * per + small) * (n_features + 1)  # every value counted once
    for (model, feature), bins in per_feature.items():
        if feature == "few":  # 5 values: one exact bin each (fewer for the small model: 8 values a bin)
            assert all(lo == hi for _, _, lo, hi in bins) or model.endswith(f"-{n_models}")
            continue
        bound = min(FEATURE_BINS, -(-values[model, feature] // BIN_VALUES))
        assert bound // 2 < len(bins) <= bound, (model, feature, len(bins))
        assert all(bins[i][3] < bins[i + 1][2] for i in range(len(bins) - 1))  # disjoint, in order
