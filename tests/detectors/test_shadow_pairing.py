"""Shadow pairing in the detector engine: named shadows, rows of a batch, several shadows at once."""

from __future__ import annotations

from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.sdk.contract.variants import ROW_TAG
from tests.detectors.detector_streams import prediction

CFG = {"model": "m", "window": {"size": 400}, "min_samples": 100, "concept": {"enabled": False}}


def _agreement(eng: DetectorEngine) -> dict[str, float]:
    rows = [r for r in eng.flush() if r.detector == "shadow" and r.segment == ""]
    return {r.feature: r.value for r in rows if r.statistic == "agreement_rate"}


def test_named_shadows_pair_per_row_each_with_its_own_version() -> None:
    eng = DetectorEngine(DetectorsConfig.from_mapping(CFG))
    for i in range(200):  # 200 requests of two rows: the rows' classes differ, so a per-request pairing mixes them
        for row, cls in ((0, 1), (1, 2)):
            tags = {ROW_TAG: str(row)}
            eng.observe_prediction(prediction(2 * i + row, {"x": 1.0}, cls, request_id=f"r{i}", tags=tags))
            eng.observe_prediction(prediction(2 * i + row, {"x": 1.0}, cls, variant="shadow:candidate",
                                              version="v2", request_id=f"r{i}", tags=tags))
            # a second shadow that always answers 1: right on row 0, wrong on row 1
            eng.observe_prediction(prediction(2 * i + row, {"x": 1.0}, 1, variant="shadow:other", version="v3",
                                              request_id=f"r{i}", tags=tags))
    assert _agreement(eng) == {"v1->v2": 1.0, "v1->v3": 0.5}


def test_a_shadow_before_its_primary_waits_for_it() -> None:
    eng = DetectorEngine(DetectorsConfig.from_mapping(CFG))
    for i in range(300):
        eng.observe_prediction(prediction(i, {"x": 1.0}, "cat", variant="shadow:candidate", version="v2",
                                          request_id=f"r{i}"))
        eng.observe_prediction(prediction(i, {"x": 1.0}, "cat" if i % 4 else "dog", request_id=f"r{i}"))
    assert _agreement(eng) == {"v1->v2": 0.75}
