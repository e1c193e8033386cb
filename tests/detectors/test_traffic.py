"""detectors/traffic.py and the monitor's references from traffic: a reservoir's sample is uniform,
a rolling reference follows a slow drift that a fixed one flags for ever, rolling and sampled
builders survive a save and restore exactly, and a too-small reference is logged once and noted
on the data-drift summary rows."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest
from scipy.stats import chisquare

from driftline.detectors.base import STAT_DRIFTED_SHARE
from driftline.detectors.config import DEFAULT_FIRST_EVENTS, DetectorsConfig, ReferenceSettings
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.reference import reference_size_needed, size_note
from driftline.detectors.traffic import Reservoir, RollingBuilder, SampledBuilder, draw
from driftline.sdk.errors import ConfigError
from tests.detectors.detector_streams import prediction


# -- reservoir -----------------------------------------------------------------------------------
def _positions(capacity: int, n: int, trials: int, sample: Any) -> list[int]:
    hits = [0] * n
    for t in range(trials):
        for i in sample(capacity, n, t):
            hits[i] += 1
    return hits


def _algorithm_r(capacity: int, n: int, seed: int) -> list[int]:
    buffers: dict[str, list[Any]] = {}
    r = Reservoir(buffers, "k", capacity, seed)
    for i in range(n):
        r.add(float(i), i, None)
    items = r.items()
    assert len(items) == capacity and r.seen == n and len(buffers["k"]) < 2 * capacity
    return [f for _, f, _ in items]


def test_a_reservoir_sample_is_uniform_over_positions() -> None:
    # 2,000 seeded samples of 10 of 100 positions: each position is kept 200 times in expectation.
    hits = _positions(10, 100, 2000, _algorithm_r)
    assert sum(hits) == 20_000
    assert chisquare(hits).pvalue > 1e-3
    # The same chi-squared rejects a sampler that favours late items (keeps the last 10 of 100
    # half the time): the check can fail.
    def biased(capacity: int, n: int, t: int) -> list[int]:
        return list(range(n - capacity, n)) if t % 2 else _algorithm_r(capacity, n, t)

    assert chisquare(_positions(10, 100, 2000, biased)).pvalue < 1e-12


def test_reservoir_draws_are_in_range_and_spread() -> None:
    draws = [draw(7, i) for i in range(1, 20_001)]
    assert all(0 <= d < i for i, d in zip(range(1, 20_001), draws))
    # draw(seed, i) < i / 2 for about half of the i
    low = sum(d < i / 2 for i, d in zip(range(1, 20_001), draws))
    assert 9_700 < low < 10_300


def test_a_compacted_reservoir_keeps_its_sample() -> None:
    buffers: dict[str, list[Any]] = {}
    r = Reservoir(buffers, "k", 5, seed=3)
    for i in range(5):
        r.add(float(i), i, None)
    log = buffers["k"]
    for i in range(5, 10_000):
        r.add(float(i), i, None)
    assert buffers["k"] is not log  # compacted at least once: a new list, saved whole once
    before = r.items()
    r.compact()
    assert r.items() == before and len(buffers["k"]) == 5


# -- rolling and sampled builders ------------------------------------------------------------------
def _feed(b: Any, windows: list[int]) -> list[list[dict[str, Any]] | None]:
    """``windows``: events per window; returns what each window close built."""
    out, i = [], 0
    for n in windows:
        for _ in range(n):
            b.add(float(i), {"i": i}, None)
            i += 1
        out.append(b.window_closed())
    return out


def test_rolling_builds_the_last_events_before_the_lag_every_m_windows_and_keeps_a_bound() -> None:
    s = ReferenceSettings(source="rolling", events=300, lag_windows=1, rebuild_windows=2)
    buffers: dict[str, list[Any]] = {}
    b = RollingBuilder(s, "v", buffers)
    built = _feed(b, [100] * 12)
    # First build once 300 events precede the lag window (after window 4), then every 2 windows.
    assert [i for i, e in enumerate(built) if e] == [3, 5, 7, 9, 11]
    # Built after window 11 (events 1100..1199): the 300 events before the lag window.
    assert [e["features"]["i"] for e in built[11]] == list(range(800, 1100))  # type: ignore[index]
    kept = sum(len(v) for v in buffers.values())
    assert kept <= 300 + (1 + 1) * 100  # events + lag window + one chunk


def test_rolling_span_s_keeps_only_recent_seconds() -> None:
    s = ReferenceSettings(source="rolling", events=10_000, span_s=250, lag_windows=0, rebuild_windows=1)
    b = RollingBuilder(s, "v", {})
    built = _feed(b, [100] * 5)  # one event per second
    ages = [e["features"]["i"] for e in built[-1]]  # type: ignore[index]
    assert ages == list(range(250, 500))


def test_sampled_first_is_built_once_from_the_whole_span() -> None:
    s = ReferenceSettings(source="sampled", events=200, span_events=1000)
    b = SampledBuilder(s, "v", {})
    built = _feed(b, [250] * 8)
    assert [i for i, e in enumerate(built) if e] == [3]
    idx = sorted(e["features"]["i"] for e in built[3])  # type: ignore[union-attr]
    assert len(idx) == 200 and max(idx) < 1000 and min(idx) < 100 and max(idx) > 900


def test_sampled_trailing_samples_each_period() -> None:
    s = ReferenceSettings(source="sampled", of="trailing", events=100, rebuild_windows=3)
    buffers: dict[str, list[Any]] = {}
    b = SampledBuilder(s, "v", buffers)
    built = _feed(b, [200] * 9)
    assert [i for i, e in enumerate(built) if e] == [2, 5, 8]
    second = [e["features"]["i"] for e in built[5]]  # type: ignore[union-attr]
    assert len(second) == 100 and all(600 <= i < 1200 for i in second)
    assert buffers == {}  # a finished period's reservoir is dropped


def test_config_defaults_and_misplaced_settings() -> None:
    assert DEFAULT_FIRST_EVENTS == reference_size_needed(1000) == ReferenceSettings().first_events == 10_000
    assert DetectorsConfig().default_for("new").reference.first_events == 10_000
    with pytest.raises(ConfigError, match="span_s is a setting of source: rolling"):
        DetectorsConfig.from_mapping({"model": "m", "reference": {"source": "stored", "span_s": 60}})
    with pytest.raises(ConfigError, match="span_events"):
        DetectorsConfig.from_mapping({"model": "m", "reference": {"source": "sampled", "events": 500,
                                                                  "span_events": 100}})


# -- through the engine ----------------------------------------------------------------------------
W = 250


def _slow_drift(windows: int, seed: int = 3) -> list[dict[str, Any]]:
    """x's mean steps up by 0.05 SD every 4 windows of 250 events (1 SD after 80 windows)."""
    rng = random.Random(seed)
    return [prediction(i, {"x": rng.gauss(0.05 * ((i // W) // 4), 1), "z": rng.gauss(0, 1)}, 1)
            for i in range(W * windows)]


def _engine(ref: dict[str, Any]) -> DetectorEngine:
    return DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"size": W}, "min_samples": 100, "concept": {"enabled": False},
        "reference": ref}))


def _verdicts(rows: list[Any], feature: str = "x") -> list[bool]:
    by_window = {r.window_start: r.drift for r in rows
                 if r.detector == "data_drift" and r.feature == feature and r.statistic == "wasserstein"}
    return [v for _, v in sorted(by_window.items())]


def test_a_rolling_reference_follows_a_slow_drift_that_a_fixed_one_flags_for_ever() -> None:
    events = _slow_drift(80)
    fixed = _engine({"source": "first_events", "first_events": 1000})
    fixed.observe_many(events)
    rolling = _engine({"source": "rolling", "events": 1000, "lag_windows": 1, "rebuild_windows": 2})
    rolling.observe_many(events)
    f, r = _verdicts(fixed.flush()), _verdicts(rolling.flush())
    assert len(f) == 76 and len(r) == 75  # 4 and 5 windows (reference, lag) unjudged
    # The last 40 windows sit 0.5-1 SD above the first 1,000 events and 0-0.15 SD above the
    # rolling reference (measured: 40 and 2 flagged).
    assert sum(f[-40:]) >= 36, f
    assert sum(r[-40:]) <= 10, r


def _rows(eng: DetectorEngine) -> list[str]:
    return [repr(r.as_tuple()) for r in eng.poll(float("-inf"))]


@pytest.mark.parametrize("ref", [
    {"source": "rolling", "events": 600, "lag_windows": 1, "rebuild_windows": 2},
    {"source": "sampled", "of": "trailing", "events": 300, "rebuild_windows": 3},
    {"source": "sampled", "events": 400, "span_events": 900},
], ids=["rolling", "sampled-trailing", "sampled-first"])
def test_state_round_trips_through_a_full_save_and_deltas(ref: dict[str, Any]) -> None:
    events = _slow_drift(24, seed=5)
    straight = _engine(ref)
    want: list[str] = []
    for i in range(0, len(events), 170):
        straight.observe_many(events[i:i + 170])
        want += _rows(straight)
    want += [repr(r.as_tuple()) for r in straight.flush()]
    assert sum("'data_drift'" in r for r in want) >= 20
    first = _engine(ref)
    full = None
    deltas: list[bytes] = []
    got: list[str] = []
    cut = 170 * 20
    for n, i in enumerate(range(0, cut, 170)):
        first.observe_many(events[i:i + 170])
        got += _rows(first)
        if n == 3:  # a full save, then one delta per chunk, as the collector does
            full = first.state_for("m")
        elif full is not None:
            deltas.append(first.state_for("m", delta=True))
        if full is not None:
            first.mark_saved("m")
    second = _engine(ref)
    assert full is not None
    second.load_model_state("m", full, deltas)
    assert second.monitors["m"].traffic["v1"].get_state() == first.monitors["m"].traffic["v1"].get_state()
    assert second.monitors["m"].bootstrap == json.loads(json.dumps(first.monitors["m"].bootstrap))
    for i in range(cut, len(events), 170):
        second.observe_many(events[i:i + 170])
        got += _rows(second)
    got += [repr(r.as_tuple()) for r in second.flush()]
    assert got == want
    # the references changed along the way (and restarted the windows)
    sources = {r.source.split(":")[0] for r in [second.reference("m", "v1")] if r is not None}
    assert sources == {ref["source"]}


def test_a_stored_reference_older_than_a_rolling_one_does_not_replace_it_on_restart() -> None:
    from driftline.detectors.reference import from_events

    stored = from_events(_slow_drift(4, seed=9), "m", "v1")
    ref = {"source": "rolling", "events": 500, "lag_windows": 0, "rebuild_windows": 1}
    eng = DetectorEngine(DetectorsConfig.from_mapping({"model": "m", "window": {"size": W}, "min_samples": 100,
                                                      "concept": {"enabled": False}, "reference": ref}),
                         references={("m", "v1"): stored})
    assert eng.reference("m", "v1") is stored  # used until traffic builds one
    eng.observe_many(_slow_drift(3, seed=2))
    built = eng.reference("m", "v1")
    assert built is not None and built.source == "rolling:500"
    blob = eng.state_for("m")
    eng.load_model_state("m", blob)
    assert eng.reference("m", "v1").source == "rolling:500"  # type: ignore[union-attr]


# -- too small ----------------------------------------------------------------------------------
def test_a_too_small_reference_is_logged_once_per_version_and_noted_on_summary_rows(caplog: Any) -> None:
    assert size_note(800, 1000) == "reference of 800 events; 10,000 recommended for 1,000-event windows"
    rng = random.Random(1)
    events = [prediction(i, {"x": rng.gauss(0, 1), "z": rng.gauss(0, 1)}, 1, version=f"v{1 + i // 3000}")
              for i in range(6000)]
    eng = DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"size": 500}, "min_samples": 100, "concept": {"enabled": False},
        "reference": {"source": "first_events", "first_events": 800},
        "segments": {"tags": []}}))
    with caplog.at_level(logging.WARNING, logger="driftline.detectors.monitor"):
        eng.observe_many(events)
        rows = eng.flush()
    warned = [r.getMessage() for r in caplog.records if "recommended" in r.getMessage()]
    assert warned == [f"model m version {v}: reference of 800 events; 5,000 recommended for 500-event windows "
                      "(first_events:800)" for v in ("v1", "v2")]
    shares = [r for r in rows if r.detector == "data_drift" and r.statistic == STAT_DRIFTED_SHARE]
    assert len(shares) >= 8
    assert all(json.loads(r.details)["reference_note"].startswith("reference of 800 events") and
               json.loads(r.details)["reference_recommended"] == 5000 for r in shares)


def test_a_large_enough_reference_gets_no_note(caplog: Any) -> None:
    rng = random.Random(2)
    events = [prediction(i, {"x": rng.gauss(0, 1)}, 1) for i in range(2500)]
    eng = DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"size": 100}, "min_samples": 50, "concept": {"enabled": False},
        "reference": {"source": "first_events", "first_events": 1000}}))
    with caplog.at_level(logging.WARNING, logger="driftline.detectors.monitor"):
        eng.observe_many(events)
        rows = eng.flush()
    shares = [r for r in rows if r.detector == "data_drift" and r.statistic == STAT_DRIFTED_SHARE]
    assert len(shares) >= 10 and not any("reference_note" in json.loads(r.details) for r in shares)
    assert not [r for r in caplog.records if "recommended" in r.getMessage()]


def test_time_windows_judge_the_size_by_the_events_of_the_window() -> None:
    rng = random.Random(3)
    # 2 events a second, 300 s windows: 600 events a window, a 2,000-event reference is short.
    events = [prediction(i, {"x": rng.gauss(0, 1)}, 1, t=i / 2) for i in range(2000 + 1800)]
    eng = DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "time", "duration_s": 300}, "min_samples": 50,
        "concept": {"enabled": False}, "reference": {"source": "first_events", "first_events": 2000}}))
    eng.observe_many(events)
    rows = eng.flush()
    notes = {json.loads(r.details).get("reference_note") for r in rows
             if r.detector == "data_drift" and r.statistic == STAT_DRIFTED_SHARE and r.current_size == 600}
    assert notes == {"reference of 2,000 events; 6,000 recommended for 600-event windows"}


def test_a_state_saved_under_another_source_starts_the_builder_afresh() -> None:
    events = _slow_drift(6, seed=4)
    rolling = _engine({"source": "rolling", "events": 2000, "lag_windows": 1})
    rolling.observe_many(events)
    assert any("\x1f" in k for k in rolling.monitors["m"].bootstrap)
    blob = rolling.state_for("m")
    sampled = _engine({"source": "sampled", "events": 300, "span_events": 600})
    sampled.load_model_state("m", blob)
    mon = sampled.monitors["m"]
    assert mon.traffic == {} and mon.bootstrap == {}
    sampled.observe_many(_slow_drift(4, seed=6))
    assert sampled.reference("m", "v1").source == "sampled:300"  # type: ignore[union-attr]


def test_windows_against_a_provisional_reference_are_marked_and_never_drift(caplog: Any) -> None:
    rng = random.Random(8)
    # x shifts by 1 SD at event 1000, while the provisional reference (first 500 events) is in use.
    events = [prediction(i, {"x": rng.gauss(1.0 if i >= 1000 else 0.0, 1), "z": rng.gauss(0, 1)}, 1)
              for i in range(3000)]
    eng = _engine({"source": "first_events", "first_events": 2000, "provisional_events": 500})
    with caplog.at_level(logging.WARNING, logger="driftline.detectors.monitor"):
        eng.observe_many(events)
        rows = eng.flush()
    x = [r for r in rows if r.detector == "data_drift" and r.feature == "x" and r.statistic == "wasserstein"]
    provisional = [r for r in x if json.loads(r.details).get("provisional")]
    final = [r for r in x if not json.loads(r.details).get("provisional")]
    assert len(provisional) >= 5 and {r.reference_size for r in provisional} == {500}
    assert sum(r.exceeded for r in provisional) >= 3 and not any(r.drift for r in provisional)
    assert not any(r.drift for r in rows if "provisional" in json.loads(r.details))
    assert len(final) == 4 and {r.reference_size for r in final} == {2000}
    assert eng.reference("m", "v1").source == "first_events:2000"  # type: ignore[union-attr]
    # Only the full reference is logged as small (2,000 < 10 x 250); the provisional one says so on its rows.
    assert [r.getMessage() for r in caplog.records if "recommended" in r.getMessage()] == [
        "model m version v1: reference of 2,000 events; 2,500 recommended for 250-event windows (first_events:2000)"]
    with pytest.raises(ConfigError, match="provisional_events"):
        DetectorsConfig.from_mapping({"model": "m", "reference": {"source": "first_events", "first_events": 500,
                                                                  "provisional_events": 500}})
