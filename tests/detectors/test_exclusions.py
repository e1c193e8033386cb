"""Features drift does not judge (detectors/exclusions.py), through the detectors: id-like and
time-like features recognised from the reference, ``data_drift.exclude`` honoured by quality and
the multivariate detector, and sparse features judged on enough present values."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

import pytest

from driftline.detectors.config import DetectorsConfig, QualitySettings
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.exclusions import recognise
from driftline.detectors.histogram import profile_numeric
from driftline.detectors.quality import QualityDetector
from driftline.detectors.reference import from_dataframe, from_events
from tests.detectors.detector_streams import prediction

N = 1000
T0 = 1_767_225_600  # 2026-01-01 in Unix seconds


# -- recognition from reference values -------------------------------------------------------------
def _positives(rng: random.Random) -> dict[str, tuple[list[Any], str]]:
    return {
        "unix seconds": ([T0 + 3 * i for i in range(N)], "timestamp"),
        "unix seconds as floats, shuffled": ([T0 + rng.random() * 86_400 * 30 for _ in range(N)], "timestamp"),
        "unix milliseconds": ([T0 * 1000 + 17 * i for i in range(N)], "timestamp"),
        "unix nanoseconds": ([T0 * 10**9 + 10**6 * i for i in range(N)], "timestamp"),
        "ISO-8601 strings": ([(dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i)).isoformat() + "Z"
                              for i in range(N)], "timestamp"),
        "dates": ([str(dt.date(2026, 1, 1) + dt.timedelta(days=i // 100)) for i in range(N)], "timestamp"),
        "increasing counter": (list(range(5000, 5000 + N)), "id"),
        "counter seen every ~20th value": ([i for i in range(40 * N) if rng.random() < 0.05][:N], "id"),
        "auto-increment key, shuffled": (rng.sample(range(1, N + 1), N), "id"),
        "UUID strings": ([str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N)], "id"),
        "request ids": ([f"req-{rng.getrandbits(48):012x}" for _ in range(N)], "id"),
    }


def _negatives(rng: random.Random) -> dict[str, list[Any]]:
    return {
        "Gaussian": [rng.gauss(0, 1) for _ in range(N)],
        "high-cardinality float (every value distinct)": [rng.gauss(1e6, 1e5) for _ in range(N)],
        "log-normal": [rng.lognormvariate(10, 2) for _ in range(N)],
        "Gaussian, file sorted by it": sorted(rng.gauss(0, 1) for _ in range(N)),
        "whole-number income": [int(rng.gauss(60_000, 20_000)) for _ in range(N)],
        "whole-number income, file sorted by it": sorted(int(rng.gauss(60_000, 20_000)) for _ in range(N)),
        "Poisson counts": [int(rng.expovariate(0.2)) for _ in range(N)],
        "0/1": [int(rng.random() < 0.3) for _ in range(N)],
        "50+ categories, long tail": [f"c{int(rng.paretovariate(1.2)) % 60}" for _ in range(N)],
        "bools": [rng.random() < 0.5 for _ in range(N)],
        "free text": [f"the quick brown fox {rng.random()}" for _ in range(N)],
        "counter, too few values": list(range(50)),
    }


def test_ids_and_timestamps_are_recognised() -> None:
    for name, (values, want) in _positives(random.Random(1)).items():
        assert recognise(values) == want, name


def test_normal_features_are_not_ids_or_timestamps() -> None:
    for name, values in _negatives(random.Random(2)).items():
        assert recognise(values) == "", name


def test_recognition_is_kept_in_the_profile_from_events_and_from_dataframe() -> None:
    import pandas as pd

    rng = random.Random(3)
    rows = [{"seq": i, "ts": T0 + i, "uid": str(uuid.uuid4()), "x": rng.gauss(0, 1)} for i in range(N)]
    ref = from_events([{"features": r, "prediction": 0} for r in rows], "m", "v1")
    looks = {k: p.looks_like for k, p in ref.features.items()}
    assert looks == {"seq": "id", "ts": "timestamp", "uid": "id", "x": ""}
    again = from_dataframe(pd.DataFrame(rows), "m", "v1")
    assert {k: p.looks_like for k, p in again.features.items()} == looks
    # It survives the store's JSON; references stored before it existed load as "not recognised".
    from driftline.detectors.reference import Reference
    assert Reference.from_json(ref.to_json()).features["ts"].looks_like == "timestamp"
    old = json.loads(ref.to_json())
    for p in old["features"]:
        del p["looks_like"]
    assert Reference.from_json(json.dumps(old)).features["ts"].looks_like == ""


# -- through the engine ----------------------------------------------------------------------------
def _features(i: int, rng: random.Random) -> dict[str, Any]:
    return {"x": rng.gauss(0, 1), "plan": rng.choice("abc"), "seq": i, "ts": T0 + 2 * i,
            "uid": f"{rng.getrandbits(64):016x}", "user": f"u{rng.randrange(50)}"}


def _run(data_drift: dict[str, Any], *, windows: int = 6, multivariate: bool = False) -> list[Any]:
    doc = {"model": "m", "window": {"kind": "count", "size": N}, "min_samples": 100,
           "concept": {"enabled": False}, "data_drift": data_drift,
           "multivariate": {"enabled": multivariate, "backend": "domain_classifier", "sample_size": 300}}
    eng = DetectorEngine(DetectorsConfig.from_mapping(doc))
    rng = random.Random(7)
    eng.set_reference(from_events([{"features": _features(i, rng), "prediction": 0} for i in range(2000)],
                                  "m", "v1"))
    for i in range(2000, 2000 + windows * N):
        eng.observe_prediction(prediction(i, _features(i, rng), 0))
    return eng.poll()


def test_ids_and_timestamps_are_excluded_with_a_visible_note() -> None:
    rows = _run({})
    windows = sorted({r.window_start for r in rows})
    assert len(windows) == 6
    excluded = [r for r in rows if r.statistic == "excluded" and r.segment == ""]
    for w in windows:
        notes = {r.feature: json.loads(r.details)["reason"] for r in excluded if r.window_start == w}
        assert notes == {"seq": "looks like an id", "uid": "looks like an id", "ts": "looks like a timestamp"}
    assert all(r.detector == "data_drift" and not r.drift for r in excluded)
    judged = {r.feature for r in rows if r.detector == "data_drift" and r.statistic != "excluded"}
    assert judged == {"x", "plan", "user", "*"}
    # Nothing about the excluded features claims drift, in any detector.
    assert [r for r in rows if r.feature in ("seq", "ts", "uid") and r.drift] == []
    # Quality still watches them for the pipeline (missing, wrong type), not against the reference.
    quality = {r.statistic for r in rows if r.detector == "quality" and r.feature == "seq"}
    assert quality == {"missing_rate", "type_violation_rate"}


def test_keep_and_include_force_a_recognised_feature_back_in() -> None:
    for settings in ({"keep": ["seq"]}, {"auto_exclude": False}, {"include": ["x", "seq"]}):
        rows = _run(settings, windows=2)
        seq = [r for r in rows if r.detector == "data_drift" and r.feature == "seq"]
        assert seq and "excluded" not in {r.statistic for r in seq}, settings
        # ... and then it drifts in every window: the reason it is excluded by default.
        assert all(r.drift for r in seq if json.loads(r.details)["verdict"]), settings


def test_exclude_is_honoured_by_quality() -> None:
    rows = _run({"exclude": ["user"]})
    user = [r for r in rows if r.feature == "user" and r.segment == ""]
    assert user and not any(r.drift for r in user)
    assert "unexpected_feature" not in {r.statistic for r in user}
    assert {r.statistic for r in user if r.detector == "quality"} == {"missing_rate", "type_violation_rate"}
    reasons = {json.loads(r.details)["reason"] for r in user if r.statistic == "excluded"}
    assert reasons == {"excluded in data_drift.exclude"}
    # A feature outside `include` is not "unexpected" either; it is excluded with its reason.
    only_x = _run({"include": ["x"]}, windows=2)
    assert "unexpected_feature" not in {r.statistic for r in only_x}
    assert {json.loads(r.details)["reason"] for r in only_x if r.feature == "plan" and r.statistic == "excluded"} \
        == {"not in data_drift.include"}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_multivariate_detector_honours_exclude() -> None:
    def aucs(data_drift: dict[str, Any]) -> list[float]:
        rows = _run(data_drift, windows=2, multivariate=True)
        return [r.value for r in rows if r.detector == "multivariate.domain_classifier"]

    # With every feature in, the counter alone separates reference from window: AUC ~ 1.
    assert min(aucs({"auto_exclude": False})) > 0.95
    # Excluded by name, or recognised as ids and timestamps: the stationary rest is not drift.
    for settings in ({"auto_exclude": False, "exclude": ["seq", "ts", "uid"]}, {}):
        got = aucs(settings)
        assert len(got) == 2 and max(got) < 0.6, (settings, got)


# -- sparse features: rates over present values need enough of them -----------------------------
def _sparse_windows(*, null_share: float, ref_events: int, windows: int, settings: QualitySettings,
                    shift: float = 0.0, seed: int = 11) -> tuple[int, int]:
    """(windows whose out-of-range rate claims drift, windows with a row) of a feature missing in
    ``null_share`` of the events, through a QualityDetector, fixed seed."""
    rng = random.Random(seed)

    def value(delta: float) -> float | None:
        return None if rng.random() < null_share else rng.gauss(delta, 1.0)

    ref = [value(0.0) for _ in range(ref_events)]
    present = [v for v in ref if v is not None]
    profile = profile_numeric("s", present, bins=20, missing=ref_events - len(present))
    det = QualityDetector({"s": profile}, settings, min_samples=100)
    flagged = seen = 0
    for _ in range(windows):
        det.update_many([{"s": value(shift)} for _ in range(N)])
        rows = [r for r in det.close_window() if r.statistic == "out_of_range_rate"]
        seen += bool(rows)
        flagged += any(r.drift for r in rows)
    return flagged, seen


def test_mostly_null_feature_is_not_judged_on_a_handful_of_values() -> None:
    # 95 % null, 1,000-event reference and windows: ~50 present values each. Counted over 300
    # stationary windows: judged on those ~50 values (min_present 1, the old behaviour), a third
    # or more of the windows claim drift; with the default floor, none does.
    old, seen = _sparse_windows(null_share=0.95, ref_events=N, windows=300, settings=QualitySettings(min_present=1))
    assert seen == 300 and old >= 60
    new, seen = _sparse_windows(null_share=0.95, ref_events=N, windows=300, settings=QualitySettings())
    assert seen == 300 and new == 0


def test_sparse_feature_with_enough_present_values_is_still_judged() -> None:
    # 80 % null: 200 present values a window against 1,000 in a 5,000-event reference.
    quiet, seen = _sparse_windows(null_share=0.8, ref_events=5 * N, windows=100, settings=QualitySettings())
    assert seen == 100 and quiet <= 1
    loud, _ = _sparse_windows(null_share=0.8, ref_events=5 * N, windows=20, settings=QualitySettings(), shift=5.0)
    assert loud == 20


def test_not_enough_data_is_said_in_the_row() -> None:
    profile = profile_numeric("s", [float(i) for i in range(50)], bins=5)
    det = QualityDetector({"s": profile}, QualitySettings(), min_samples=10)
    for i in range(200):
        det.update({"s": 1000.0 if i < 60 else None})
    (row,) = [r for r in det.close_window() if r.statistic == "out_of_range_rate"]
    # The rate is not judged on too few values: the row's own crossing is false. (Its ``drift`` is
    # the feature's verdict, which the missing rate, 70 % against none in the reference, sets.)
    assert row.value == 1.0 and row.exceeded is False
    details = dict(row.details)
    assert details["enough_data"] is False and details["reference_present"] == 50 and details["min_present"] == 100
