"""Versions idle past ``retire_version_after_s`` leave the engine, its saved state and its metrics."""

from __future__ import annotations

import json
import logging
import random
import zlib
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftline.detectors.config import DetectorsConfig, RETIRE_VERSION_AFTER_S
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.journal import merge_model_state
from driftline.detectors.reference import from_events
from driftline.sdk.errors import ConfigError
from driftline.detectors.journal import inflate
from tests.detectors.detector_streams import label, prediction, uid

DAY = 86_400.0
OLD = [f"v{d:02d}" for d in range(30)]  # v00 is served on day 0, v01 on day 1, ... then idle
KEPT = {"live", "v28", "v29"}  # served within the last 3 days when day 31 begins


def _cfg(retire_days: float, source: str = "first_events", **extra: Any) -> DetectorsConfig:
    return DetectorsConfig.from_mapping({**extra,
        "model": "m", "window": {"kind": "time", "duration_s": DAY, "grace_s": 0}, "min_samples": 20,
        "reference": {"source": source, "first_events": 40}, "concept": {"label_horizon_s": DAY},
        "segments": {"tags": ["shop"], "max_segments": 3}, "retire_version_after_s": retire_days * DAY})


def _day(day: int, versions: list[str], start: int, n: int = 60, shift: float = 0.0) -> list[dict[str, Any]]:
    """``n`` predictions per version over the first 90 % of ``day``, each labelled an hour later."""
    rng = random.Random(day)
    evs = []
    i = start
    for k in range(n):
        for version in versions:
            t = day * DAY + 0.9 * DAY * k / n
            f = {"x": rng.gauss(shift, 1), "y": rng.gauss(5, 2), "plan": rng.choice("abc")}
            evs.append(prediction(i, f, int(f["x"] > 0), t=t, version=version, tags={"shop": rng.choice("pq")}))
            evs.append(label(i, uid(i), int(rng.random() < 0.7), t=t + 3600))
            i += 1
    return sorted(evs, key=lambda e: e["timestamp"])


def _fleet() -> list[list[dict[str, Any]]]:
    """Per day: "live" every day, and version vDD on day DD only (30 versions); day 31: live alone."""
    days, i = [], 0
    for day in range(32):
        versions = ["live"] + ([OLD[day]] if day < 30 else [])
        days.append(_day(day, versions, i, shift=0.8 if day >= 20 else 0.0))
        i += 60 * len(versions)
    return days


FLEET = _fleet()


def _run(eng: DetectorEngine, days: list[list[dict[str, Any]]]) -> list[Any]:
    rows = []
    for evs in days:
        eng.observe_many(evs)
        rows += eng.poll(float("-inf"))
    return rows


def _held(eng: DetectorEngine) -> set[str]:
    return eng.monitors["m"].held_versions()


def _doc(blob: bytes) -> dict[str, Any]:
    return json.loads(inflate(blob))


def test_idle_versions_leave_the_engine_and_the_full_and_delta_saved_state(caplog: pytest.LogCaptureFixture) -> None:
    reg = CollectorRegistry()
    eng = DetectorEngine(_cfg(3), registry=reg, feature_detail_top=None)
    keep = DetectorEngine(_cfg(0))  # 0: never
    caplog.set_level(logging.INFO, logger="driftline.detectors.retire")
    _run(keep, FLEET)
    _run(eng, FLEET[:10])
    full = eng.state_for("m")
    eng.mark_saved("m")
    deltas = []
    for evs in FLEET[10:]:
        _run(eng, [evs])
        deltas.append(eng.state_for("m", delta=True))
        eng.mark_saved("m")

    mon, kept_mon = eng.monitors["m"], keep.monitors["m"]
    assert _held(keep) == set(OLD) | {"live"} and len(kept_mon.streams) == 31
    assert _held(eng) == KEPT
    assert set(mon.streams) == set(mon.references) == set(mon.errors) == KEPT
    assert {k.split("|")[0] for k in mon.performance} == KEPT
    assert set(mon.versions.retired) == set(OLD) - KEPT
    retired_lines = [r for r in caplog.records if "retired: no prediction" in r.getMessage()]
    assert len(retired_lines) == 28
    assert reg.get_sample_value("driftline_versions_retired_total", {"model": "m"}) == 28
    exported = {s.labels["version"] for fam in reg.collect() if fam.name == "driftline_drift_statistic"
                for s in fam.samples}
    assert exported and exported <= KEPT  # the retired versions' per-feature series went with them

    # The full save holds the kept versions only, and so do the full + deltas saved across the
    # retirements (a restart from either does not bring them back).
    now_full = _doc(eng.state_for("m"))["monitor"]
    assert set(now_full["streams"]) == set(now_full["references"]) == KEPT
    assert len(eng.state_for("m")) < 0.25 * len(keep.state_for("m"))
    merged = merge_model_state(_doc(full), [_doc(d) for d in deltas])["monitor"]
    assert set(merged["streams"]) == set(merged["references"]) == KEPT
    assert {k.split("|")[0] for k in merged["performance"]} == KEPT
    assert not [k for k in merged["bootstrap"] if k not in KEPT]
    loaded = DetectorEngine(_cfg(3))
    loaded.load_model_state("m", full, deltas)
    assert _held(loaded) == KEPT
    assert json.dumps(_doc(loaded.state_for("m"))["monitor"], sort_keys=True) == json.dumps(
        _doc(eng.state_for("m"))["monitor"], sort_keys=True)


def _live(rows: list[Any]) -> dict[tuple[Any, ...], Any]:
    return {(r.segment, r.detector, r.feature, r.window_start, r.statistic): r for r in rows
            if r.model_version == "live"}


def test_the_active_versions_results_do_not_depend_on_retiring_the_others() -> None:
    fixed = {"data_drift": {"calibration": "fixed"}}
    with_retire, without = DetectorEngine(_cfg(3, **fixed)), DetectorEngine(_cfg(0, **fixed))
    rows = _live(_run(with_retire, FLEET) + with_retire.flush())
    assert any(r.drift for r in rows.values())
    assert [r.as_tuple() for r in rows.values()] == [
        r.as_tuple() for r in _live(_run(without, FLEET) + without.flush()).values()]


def test_under_the_alarm_budget_retired_versions_give_back_their_share_of_it() -> None:
    """The budget is split over the tests of every version held, idle or not: retiring idle ones
    leaves the active version's statistics and p-values as they were, and its level no tighter."""
    a, b = _live(_run(DetectorEngine(_cfg(3)), FLEET)), _live(_run(DetectorEngine(_cfg(0)), FLEET))
    common = set(a) & set(b)
    assert set(b) <= set(a) and len(common) > 1000  # more impact rows: more verdicts, below
    for k in common:
        ra, rb = a[k], b[k]
        assert (ra.p_value, ra.feature) == (rb.p_value, rb.feature)
        if k[4] != "drifted_share":
            assert ra.value == rb.value or ra.value != ra.value
        assert ra.drift or not rb.drift
        if ra.p_value is not None and ra.threshold is not None:
            assert ra.threshold >= rb.threshold
    assert sum(a[k].drift for k in common) > sum(b[k].drift for k in common)


def test_a_restart_keeps_retired_versions_out_and_a_retired_version_with_new_events_starts_afresh(
        caplog: pytest.LogCaptureFixture) -> None:
    refs = {}
    for version in OLD + ["live"]:
        sample = [e for e in _day(0, [version], 0, n=200) if e["type"] == "prediction"]
        refs[("m", version)] = from_events(sample, "m", version)
    eng = DetectorEngine(_cfg(3, source="stored"), references=refs)
    _run(eng, FLEET)
    assert _held(eng) == KEPT
    saved = eng.state_for("m")

    again = DetectorEngine(_cfg(3, source="stored"), references=refs)  # as the collector starts: every stored one
    again.load_model_state("m", saved)
    assert _held(again) == KEPT and again.reference("m", "v05") is None

    back = _day(32, ["v05"], 10**6, shift=2.0) + _day(33, ["live"], 2 * 10**6)
    with caplog.at_level(logging.INFO, logger="driftline.detectors.monitor"):
        rows = _run(again, [back])
    assert any("version v05 gets events again after it was retired" in r.getMessage() for r in caplog.records)
    assert again.reference("m", "v05") is refs[("m", "v05")]
    v05 = [r for r in rows if r.model_version == "v05" and r.detector == "data_drift" and r.feature == "x"]
    assert v05 and any(r.drift for r in v05)  # its drift is checked again, against its stored reference


def test_the_setting_defaults_to_a_week_and_zero_or_null_means_never() -> None:
    assert DetectorsConfig().default_for("m").retire_version_after_s == RETIRE_VERSION_AFTER_S == 7 * DAY
    for never in (0, None):
        cfg = DetectorsConfig.from_mapping({"model": "m", "retire_version_after_s": never})
        assert not cfg.models[0].retire_version_after_s
    with pytest.raises(ConfigError, match="retire_version_after_s"):
        DetectorsConfig.from_mapping({"model": "m", "retire_version_after_s": -1})


def test_with_count_windows_a_retired_versions_last_label_window_is_written_not_lost() -> None:
    cfg = DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": 50}, "min_samples": 10,
        "reference": {"source": "first_events", "first_events": 20}, "concept": {"label_horizon_s": 3600},
        "retire_version_after_s": 7200})
    rng = random.Random(3)
    evs = []
    for i in range(40):  # 40 joins: under the 50 a label window closes on
        evs += [prediction(i, {"x": rng.gauss(0, 1)}, i % 2, t=i, version="old"), label(i, uid(i), 1, t=i + 1)]
    for i in range(40, 300):
        t = 100 + 60 * i
        evs += [prediction(i, {"x": rng.gauss(0, 1)}, i % 2, t=t, version="live"), label(i, uid(i), 1, t=t + 1)]
    eng = DetectorEngine(cfg)
    rows = _run(eng, [evs])
    assert _held(eng) == {"live"}
    old = [r for r in rows if r.model_version == "old" and r.detector == "performance"]
    assert old and {r.current_size for r in old if r.segment == ""} == {40}


def test_a_state_saved_before_retirement_existed_loads_with_deltas_saved_after() -> None:
    eng = DetectorEngine(_cfg(3))
    _run(eng, FLEET[:2])
    doc = _doc(eng.state_for("m"))
    del doc["monitor"]["versions"]  # as an older build saved it
    old_full = zlib.compress(json.dumps(doc).encode())
    eng.mark_saved("m")
    _run(eng, FLEET[2:6])
    delta = eng.state_for("m", delta=True)
    loaded = DetectorEngine(_cfg(3))
    loaded.load_model_state("m", old_full, [delta])
    assert loaded.monitors["m"].versions.last_seen == eng.monitors["m"].versions.last_seen
    assert _held(loaded) == _held(eng) == {"live", "v02", "v03", "v04", "v05"}
