"""A reference stored while the collector runs (``driftline reference set``) is used without a
restart: the detector stage polls when each reference was saved and installs the new ones.

Through the collector's Pipeline and the detector stage on the real store (chDB), with the
reference written by the ``driftline reference set`` command itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import uuid
from typing import Any

import pandas as pd
import pytest

from tests.detectors.stage_kit import stage_pipeline

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)


def _reference_set(chstore: Any, *argv: str) -> str:
    from driftline.detectors import cli

    parser = argparse.ArgumentParser(prog="driftline")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["reference", "set", *argv, "--clickhouse-url", f"http://{chstore.host}:{chstore.port}"])
    out = io.StringIO()
    assert args.func(args, out) == 0, out.getvalue()
    return out.getvalue()


def _feed(pipeline: Any, model: str, start: int, n: int, shift: float, offset: list[int]) -> None:
    from driftline.collector.pipeline import RawRecord
    from driftline.sdk.codec import dumps
    from driftline.sdk.contract import BATCH_HEADER
    from driftline.sdk.ids import uuid7

    rng = random.Random(start)
    values = [dumps({"schema_version": 1, "type": "prediction", "event_id": uuid7(),
                     "timestamp": (T0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                     "model": model, "model_version": "1",
                     "features": {"x": rng.gauss(shift, 1.0), "y": rng.gauss(10, 2)}, "prediction": 0.5})
              for i in range(start, start + n)]
    records = []
    for j in range(0, n, 50):
        records.append(RawRecord(f"{model}.predictions", "predictions", 0, offset[0], b"\n".join(values[j:j + 50]),
                                 [BATCH_HEADER]))
        offset[0] += 1
    for j in range(0, len(records), 10):
        pipeline.process(records[j:j + 10])


def _x_drift(ch_client: Any, model: str) -> list[tuple[Any, ...]]:
    return ch_client.query(
        "SELECT window_start, max(drift) FROM driftline.drift_metrics FINAL WHERE model = %(m)s AND feature = 'x' "
        "AND segment = '' GROUP BY window_start ORDER BY window_start", parameters={"m": model}).result_rows


def test_a_reference_set_while_the_collector_runs_is_used_without_a_restart(chstore: Any, ch_client: Any,
                                                                             tmp_path: Any,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    from driftline.detectors.config import DetectorsConfig

    model = f"live-{uuid.uuid4().hex[:6]}"
    cfg = DetectorsConfig.from_mapping({"model": model, "window": {"kind": "count", "size": 500}, "min_samples": 100,
                                        "reference": {"source": "stored"}})
    pipeline, stage = stage_pipeline(cfg, ch_client, max_batch_events=500)
    installs: list[tuple[str, str]] = []
    set_reference = stage.engine.set_reference
    stage.engine.set_reference = lambda ref: (installs.append((ref.model, ref.model_version)), set_reference(ref))
    offset = [0]

    _feed(pipeline, model, 0, 1000, 0.0, offset)  # two windows with no reference stored
    stage.tick(0.0)
    assert _x_drift(ch_client, model) == [] and stage.engine.monitors[model].reference_missing

    rng = random.Random(9)
    pd.DataFrame({"x": [rng.gauss(0, 1) for _ in range(5000)], "y": [rng.gauss(10, 2) for _ in range(5000)]}) \
        .to_parquet(tmp_path / "train.parquet")
    _reference_set(chstore, "--model", model, "--version", "1", "--file", str(tmp_path / "train.parquet"))
    caplog.set_level("WARNING", logger="driftline.detectors")
    stage.tick(10.0)  # the next poll (the first ran at 0.0)
    assert installs == [(model, "1")] and not stage.engine.monitors[model].reference_missing
    # the answer to the earlier "no usable reference" warning, at the level the collector logs
    assert f"reference of model {model} version 1 (file:train.parquet, 5000 rows) installed" in caplog.text
    stage.tick(20.0)  # nothing saved since: nothing installed again
    assert installs == [(model, "1")]

    _feed(pipeline, model, 1000, 1000, 0.0, offset)  # judged against the file: stationary
    _feed(pipeline, model, 2000, 1000, 1.5, offset)  # x moves by 1.5 sd
    rows = _x_drift(ch_client, model)
    assert [drift for _, drift in rows] == [0, 0, 1, 1], rows

    # replaced by a reference of the shifted inputs: installed at the next poll (not before it)
    pd.DataFrame({"x": [rng.gauss(1.5, 1) for _ in range(5000)], "y": [rng.gauss(10, 2) for _ in range(5000)]}) \
        .to_parquet(tmp_path / "shifted.parquet")
    _reference_set(chstore, "--model", model, "--version", "1", "--file", str(tmp_path / "shifted.parquet"))
    stage.tick(25.0)
    assert installs == [(model, "1")]  # 5 s after the last poll: the 10 s interval has not passed
    stage.tick(31.0)
    assert installs == [(model, "1"), (model, "1")]
    _feed(pipeline, model, 3000, 1000, 1.5, offset)
    assert [drift for _, drift in _x_drift(ch_client, model)] == [0, 0, 1, 1, 0, 0]


def test_a_failed_poll_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    from driftline.detectors.stage import ReferenceWatch

    class Store:
        fail = True
        loads: list[tuple[str, str]] = []

        def index(self) -> dict[tuple[str, str], int]:
            if self.fail:
                raise ConnectionError("store down")
            return {("m", "1"): 2}

        def load(self, model: str, version: str) -> Any:
            self.loads.append((model, version))
            return None  # deleted between the two queries: nothing to install

    class Engine:
        def set_reference(self, ref: Any) -> None:
            raise AssertionError("nothing to install")

    store = Store()
    watch = ReferenceWatch(store, Engine(), interval_s=10.0)  # type: ignore[arg-type]
    watch.poll(0.0)
    assert "could not read the stored references; retrying in 10s" in caplog.text and store.loads == []
    store.fail = False
    watch.poll(5.0)
    assert store.loads == []  # not before the interval
    watch.poll(10.0)
    assert store.loads == [("m", "1")] and watch.saved == {("m", "1"): 2}
