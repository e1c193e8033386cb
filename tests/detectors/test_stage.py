"""The detector stage inside the collector: drift and performance rows from the stream, and
detector state that survives a SIGKILL and a graceful restart exactly (no event counted twice
or missed, no window reset).

The stage at its faults (a crash between a chunk's insert and its state save, the store away)
is in ``test_stage_faults.py``. The end-to-end tests here run ``driftline collector`` processes
on the real broker; one scenario per module feeds four runs:

* ``plain``: no detector configuration at all (defaults), a mean shift and delayed labels;
* ``control``, ``killed``, ``graceful``: the same stream (model names differ) under a
  ``model: "*"`` configuration; ``killed`` is SIGKILLed mid-stream and restarted, ``graceful``
  is stopped with SIGTERM mid-window and restarted. Their ``drift_metrics FINAL`` must equal
  the control run's row for row.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import unique_topics, wait_for
from tests.detectors.stage_kit import FEATURES, T0, _count, _drift_rows, _stream, _ts

pytestmark = pytest.mark.integration

PLAIN_EVENTS, PLAIN_SHIFT = 13_000, 11_000  # the unconfigured model: 10,000 reference events, 3 windows
STAR_CONFIG = "model: '*'\nwindow: {kind: count, size: 250}\nmin_samples: 50\n" \
              "reference: {source: first_events, first_events: 500}\n"


def _renamed(stream: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return [{**e, "model": model} for e in stream]


def test_drift_is_the_verdict_in_every_row_so_stationary_features_never_drift(ch_client: Any) -> None:
    """Six features, two shifted after the reference: ``WHERE drift`` names those two only, although
    the numeric Jensen-Shannon distance of the stationary ones crosses its own 0.1 in some windows
    (their ``exceeded``); through the collector's pipeline and stage into the real store."""
    from prometheus_client import CollectorRegistry

    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline, RawRecord
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.stage import build_stage
    from driftline.sdk.codec import dumps
    from driftline.sdk.contract import BATCH_HEADER
    from driftline.sdk.ids import uuid7

    model, tag = f"verdict-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    rng = random.Random(3)
    shifted, stationary = ("s0", "s1"), ("q0", "q1", "q2", "q3")
    events = []
    for i in range(13_000):
        feats = {f: rng.gauss(1.0 if i >= 1000 else 0.0, 1.0) for f in shifted}
        feats |= {f: rng.gauss(0.0, 1.0) for f in stationary}
        events.append(dumps({"schema_version": 1, "type": "prediction", "event_id": uuid7(), "timestamp": _ts(i),
                             "model": model, "model_version": "1", "request_id": f"r{i}", "features": feats,
                             "prediction": "ok", "latency_ms": 3.0, "status": "ok"}))
    records = [RawRecord(f"{tag}.predictions", "predictions", 0, k, b"\n".join(events[i:i + 50]), [BATCH_HEADER])
               for k, i in enumerate(range(0, len(events), 50))]
    reg = CollectorRegistry()
    stage = build_stage(DetectorsConfig.from_mapping(
        {"model": "*", "window": {"size": 1000}, "reference": {"source": "first_events", "first_events": 1000}}), ch_client, registry=reg)
    dead: list[Any] = []
    pipeline = Pipeline(ClickHouseWriter(ch_client), CollectorMetrics(reg), send_dead_letters=dead.extend,
                        observers=[stage], max_batch_events=1000)
    for i in range(0, len(records), 20):
        pipeline.process(records[i:i + 20])

    def query(sql: str) -> list[tuple[Any, ...]]:
        return ch_client.query(sql, parameters={"m": model}).result_rows

    noisy = query("SELECT feature, count() FROM driftline.drift_metrics FINAL WHERE model = %(m)s "
                  "AND detector = 'data_drift' AND statistic = 'jensen_shannon' AND exceeded GROUP BY feature")
    assert dead == []
    assert {f for f, _ in noisy} & set(stationary), noisy  # the noise the verdict must not repeat
    drifting = query("SELECT DISTINCT feature FROM driftline.drift_metrics WHERE model = %(m)s AND drift")
    assert sorted(f for f, in drifting) == list(shifted)
    # Every statistic row of a (detector, feature, segment, window) carries the same verdict.
    split = query("SELECT detector, feature, segment, window_start FROM driftline.drift_metrics FINAL "
                  "WHERE model = %(m)s GROUP BY ALL HAVING uniqExact(drift) > 1")
    assert split == []
    windows = query("SELECT count(DISTINCT window_start) FROM driftline.drift_metrics WHERE model = %(m)s "
                    "AND detector = 'data_drift'")
    assert windows == [(12,)]


def test_ids_timestamps_excluded_and_sparse_features_through_the_stage(ch_client: Any) -> None:
    """Issue 14, points 5 and 6, through Pipeline + DetectorStage into drift_metrics on chDB: a
    counter, a Unix timestamp and a string id are excluded with a note in every window, an
    excluded feature is neither unexpected nor drift, and a 95 %-null feature is not judged on
    its ~50 present values."""
    from prometheus_client import CollectorRegistry

    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline, RawRecord
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.stage import build_stage
    from driftline.sdk.codec import dumps
    from driftline.sdk.contract import BATCH_HEADER
    from driftline.sdk.ids import uuid7

    model = f"ex-{uuid.uuid4().hex[:6]}"
    cfg = DetectorsConfig.from_mapping({"model": model, "window": {"size": 1000}, "min_samples": 100,
                                        "reference": {"source": "first_events", "first_events": 1000},
                                        "data_drift": {"exclude": ["user"]}})
    rng = random.Random(5)
    values = []
    for i in range(5000):
        feats = {"x": rng.gauss(0, 1), "seq": 10_000 + i, "ts": int(T0.timestamp()) + i,
                 "rid": uuid7(), "user": f"u{rng.randrange(40)}",
                 "sparse": rng.gauss(0, 1) if rng.random() < 0.05 else None}
        values.append(dumps({"schema_version": 1, "type": "prediction", "event_id": uuid7(), "timestamp": _ts(i),
                             "model": model, "model_version": "1", "features": feats, "prediction": 0.5}))
    records = [RawRecord(f"{model}.predictions", "predictions", 0, k, b"\n".join(values[j:j + 50]), [BATCH_HEADER])
               for k, j in enumerate(range(0, len(values), 50))]
    reg = CollectorRegistry()
    stage = build_stage(cfg, ch_client, registry=reg)
    pipeline = Pipeline(ClickHouseWriter(ch_client), CollectorMetrics(reg), send_dead_letters=lambda d: None,
                        observers=[stage], max_batch_events=500)
    for j in range(0, len(records), 10):
        pipeline.process(records[j:j + 10])

    rows = ch_client.query(
        "SELECT window_start, detector, feature, statistic, drift, details FROM driftline.drift_metrics FINAL "
        "WHERE model = %(m)s AND segment = ''", parameters={"m": model}).result_rows
    windows = sorted({r[0] for r in rows})
    assert len(windows) == 4, windows
    notes = {(r[0], r[2]): json.loads(r[5])["reason"] for r in rows if r[3] == "excluded"}
    want = {"seq": "looks like an id", "rid": "looks like an id", "ts": "looks like a timestamp",
            "user": "excluded in data_drift.exclude"}
    assert notes == {(w, f): reason for w in windows for f, reason in want.items()}
    assert [r for r in rows if r[2] in want and r[4]] == []
    assert "unexpected_feature" not in {r[3] for r in rows}
    sparse = [r for r in rows if r[2] == "sparse" and r[3] == "out_of_range_rate"]
    assert len(sparse) == 4 and not any(r[4] for r in sparse)
    assert all(json.loads(r[5])["enough_data"] is False for r in sparse)
    assert {r[2] for r in rows if r[1] == "data_drift" and r[3] == "wasserstein"} == {"x"}


# -- end to end: collectors on the real broker ---------------------------------------------------
@dataclass
class Scenario:
    tag: str
    plain_stream: list[dict[str, Any]]
    stream: list[dict[str, Any]]
    models: dict[str, str] = field(default_factory=dict)
    stored_at_disruption: dict[str, int] = field(default_factory=dict)


def _produce(producer: Any, topics: Any, events: list[dict[str, Any]]) -> None:
    for e in events:
        producer.send(topics.for_type(e["type"]), key=e["model"].encode(),
                      value=json.dumps(e, separators=(",", ":")).encode())
    producer.flush(30)


@pytest.fixture(scope="module")
def scenario(kafka_bootstrap: str, clickhouse_url: str, ch_client: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from kafka import KafkaProducer

    from driftline.collector.embedded.broker import free_port
    from driftline.collector.topics import ensure_topics
    from tests.conftest import CollectorProcess

    tmp = tmp_path_factory.mktemp("detect_stage")
    tag = uuid.uuid4().hex[:6]
    # plain: the default reference is the first DEFAULT_FIRST_EVENTS (10,000) events.
    sc = Scenario(tag, _stream(f"plain-{tag}", PLAIN_EVENTS, shift_at=PLAIN_SHIFT, label_lag=400, labelled=3600),
                  _stream("x", 3000, shift_at=1800, label_lag=40, seed=2))
    config = tmp / "detectors.yaml"
    config.write_text(STAR_CONFIG)
    runs = {name: (unique_topics(name), f"{name}-{tag}") for name in ("plain", "control", "killed", "graceful")}
    sc.models = {name: model for name, (_, model) in runs.items()}
    for topics, _ in runs.values():
        ensure_topics(kafka_bootstrap, [topics.predictions, topics.labels, topics.outcomes, topics.deadletter],
                      partitions=1)
    procs: list[CollectorProcess] = []

    def start(name: str) -> CollectorProcess:
        import os

        topics = runs[name][0]
        env = {**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap, "DRIFTLINE_CLICKHOUSE_URL": clickhouse_url,
               "DRIFTLINE_TOPIC_PREFIX": topics.predictions.rsplit(".", 1)[0], "DRIFTLINE_GROUP_ID": f"g-{name}-{tag}",
               "DRIFTLINE_METRICS_PORT": str(free_port()), "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "0.2",
               "DRIFTLINE_COLLECTOR_BATCH_SIZE": "100", "DRIFTLINE_PARTITIONS": "1",
               "DRIFTLINE_DATA_DIR": str(tmp / f"data-{name}")}
        if name in ("killed", "graceful"):  # saved only at the first chunk and when idle or stopping: the
            env["DRIFTLINE_DETECTOR_SAVE_INTERVAL_S"] = "3600"  # disruption finds observed events unsaved
        if name != "plain":
            env["DRIFTLINE_DETECTORS_CONFIG"] = str(config)
        else:  # no disruption to time: its 13,000 events in chunks of 1,000, not 100
            env["DRIFTLINE_COLLECTOR_BATCH_SIZE"] = "1000"
        proc = CollectorProcess(env, tmp / f"{name}-{len(procs)}.log").start()
        procs.append(proc)
        return proc

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), acks="all", linger_ms=5)
    streams = {name: _renamed(sc.stream, model) for name, model in sc.models.items() if name != "plain"}
    streams["plain"] = sc.plain_stream
    cut = int(len(sc.stream) * 0.55)
    try:
        live = {name: start(name) for name in runs}
        for name in ("control", "killed", "graceful"):
            _produce(producer, runs[name][0], streams[name][:cut])
        # Disrupt while the collectors are working through the first part.
        wait_for(lambda: _count(ch_client, "predictions", sc.models["killed"]) >= 900, timeout_s=90, interval_s=0.02)
        live["killed"].kill()
        sc.stored_at_disruption["killed"] = _count(ch_client, "predictions", sc.models["killed"])
        wait_for(lambda: _count(ch_client, "predictions", sc.models["graceful"]) >= 1100, timeout_s=90,
                 interval_s=0.02)
        assert live["graceful"].stop() == 0, live["graceful"].log()[-2000:]
        sc.stored_at_disruption["graceful"] = _count(ch_client, "predictions", sc.models["graceful"])
        for name in ("control", "killed", "graceful"):
            _produce(producer, runs[name][0], streams[name][cut:])
        start("killed")
        start("graceful")
        # Produced after the disruptions: its 13,000 events would slow the runs timed above.
        _produce(producer, runs["plain"][0], streams["plain"])
        n_pred = sum(e["type"] == "prediction" for e in sc.stream)
        n_label = len(sc.stream) - n_pred
        stored = {}

        def all_done() -> bool:
            for name in ("control", "killed", "graceful"):
                stored[name] = (_count(ch_client, "predictions", sc.models[name]),
                                _count(ch_client, "labels", sc.models[name]))
            stored["plain"] = (_count(ch_client, "predictions", sc.models["plain"]),)
            return (all(stored[n] == (n_pred, n_label) for n in ("control", "killed", "graceful"))
                    and stored["plain"] == (PLAIN_EVENTS,))

        try:
            wait_for(all_done, timeout_s=150, interval_s=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc} {stored}; logs: " + " | ".join(p.log()[-800:] for p in procs)) from None
        # The state is saved after the rows of the chunk that closed them: wait until the
        # detector state of every run has caught up with its last event.
        time.sleep(2.0)
        yield sc
    finally:
        producer.close()
        for p in procs:
            p.stop()


def test_mean_shift_in_one_feature_of_an_unconfigured_model_is_flagged_after_not_before(
        scenario: Scenario, ch_client: Any) -> None:
    rows = ch_client.query(
        "SELECT window_start, window_end, feature, drift, reference_size, current_size "
        "FROM driftline.drift_metrics FINAL WHERE model = %(m)s AND detector = 'data_drift' "
        "AND statistic = 'wasserstein' ORDER BY window_start, feature",
        parameters={"m": scenario.models["plain"]}).result_rows
    change = T0 + dt.timedelta(seconds=PLAIN_SHIFT)
    windows = sorted({r[0] for r in rows})
    # Defaults: the first 10,000 events are the reference, then windows of 1000 predictions.
    assert len(windows) == 3, windows
    assert {r[4] for r in rows} == {10_000} and {r[5] for r in rows} == {1000}
    before = [r for r in rows if r[1].replace(tzinfo=dt.timezone.utc) < change]
    after = [r for r in rows if r[0].replace(tzinfo=dt.timezone.utc) >= change]
    assert before and after
    assert not [r for r in before if r[3]], before
    assert {r[2] for r in after if r[3]} == {"x"}
    assert all(r[3] for r in after if r[2] == "x")
    # every numeric feature has a verdict ("plan" is categorical: Jensen-Shannon, not Wasserstein)
    assert {r[2] for r in rows} == {f"f{k}" for k in range(FEATURES - 2)} | {"x"}


def test_delayed_labels_produce_performance_rows(scenario: Scenario, ch_client: Any) -> None:
    rows = ch_client.query(
        "SELECT window_start, window_end, statistic, value, current_size FROM driftline.drift_metrics FINAL "
        "WHERE model = %(m)s AND detector = 'performance' AND segment = '' ORDER BY window_start, statistic",
        parameters={"m": scenario.models["plain"]}).result_rows
    # 1800 labels (every other one of the first 3600 predictions, 400 predictions late): one window per 1000 joins.
    assert [r[2] for r in rows] == ["accuracy", "f1", "roc_auc"], rows
    assert {r[4] for r in rows} == {1000}
    start, end = rows[0][0].replace(tzinfo=dt.timezone.utc), rows[0][1].replace(tzinfo=dt.timezone.utc)
    # The window covers the labelled predictions 0, 2, ..., 1998 (prediction time).
    assert (start, end) == (T0, T0 + dt.timedelta(seconds=1998))
    acc = {r[2]: r[3] for r in rows}
    assert 0.6 < acc["accuracy"] < 0.9 and 0.6 < acc["roc_auc"] < 0.95
    adwin = ch_client.query("SELECT count() FROM driftline.drift_metrics FINAL WHERE model = %(m)s "
                            "AND detector = 'concept.adwin'", parameters={"m": scenario.models["plain"]}).result_rows
    assert adwin[0][0] == 1


@pytest.mark.parametrize("run", ["killed", "graceful"])
def test_restart_gives_the_same_drift_metrics_as_an_uninterrupted_run(scenario: Scenario, ch_client: Any,
                                                                    run: str) -> None:
    n_pred = sum(e["type"] == "prediction" for e in scenario.stream)
    assert 0 < scenario.stored_at_disruption[run] < n_pred, scenario.stored_at_disruption
    want = _drift_rows(ch_client, scenario.models["control"])
    got = _drift_rows(ch_client, scenario.models[run])
    # 500 reference events, then windows of 250 predictions; labels in windows of 250 joins.
    windows = {r[4] for r in want if r[1] == "data_drift"}
    assert len(windows) == (n_pred - 500) // 250
    assert {"data_drift", "quality", "prediction_drift", "performance", "concept.adwin"} <= {r[1] for r in want}
    assert any(r[10] for r in want if r[1] == "data_drift" and r[2] == "x")
    only_run = sorted(set(got) - set(want))[:3]
    only_control = sorted(set(want) - set(got))[:3]
    assert got == want, f"only after the {run} restart: {only_run}; only uninterrupted: {only_control}"


def test_graceful_stop_saved_the_open_window_without_closing_it(scenario: Scenario, ch_client: Any) -> None:
    # Windows continue across the restart: every window of the restarted run is full.
    rows = ch_client.query(
        "SELECT DISTINCT window_start, current_size FROM driftline.drift_metrics FINAL WHERE model = %(m)s "
        "AND detector = 'data_drift' AND feature = 'x' AND statistic = 'wasserstein'",
        parameters={"m": scenario.models["graceful"]}).result_rows
    assert rows and {r[1] for r in rows} == {250}, rows
    state = ch_client.query("SELECT count() FROM driftline.detector_state WHERE model = %(m)s",
                            parameters={"m": scenario.models["graceful"]}).result_rows[0][0]
    assert state > 0


def test_config_loads_multi_document_files_and_directories(tmp_path: Path) -> None:
    from driftline.detectors.config import DEFAULT_FIRST_EVENTS, load_config
    from driftline.sdk.errors import ConfigError

    (tmp_path / "a.yaml").write_text("model: a\nwindow: {size: 10}\n---\nmodel: '*'\nmin_samples: 7\n")
    (tmp_path / "b.yml").write_text("model: b\n")
    cfg = load_config(tmp_path)
    assert [m.model for m in cfg.models] == ["a", "*", "b"]
    assert cfg.default_for("a").window.size == 10
    assert cfg.default_for("zzz").min_samples == 7 and cfg.default_for("zzz").model == "zzz"
    bare = load_config(tmp_path / "b.yml").default_for("new")
    assert (bare.reference.source, bare.reference.first_events) == ("first_events", DEFAULT_FIRST_EVENTS)
    (tmp_path / "bad.yaml").write_text("model: c\n---\nmodel: d\nwindow: {sise: 3}\n")
    with pytest.raises(ConfigError, match="d.window.sise"):
        load_config(tmp_path / "bad.yaml")


def test_a_chunk_of_1000_new_models_loads_them_all_with_bounded_queries(ch_client: Any) -> None:
    """Issue 17: ~186 new model names in one chunk made the state load's bind parameters pass
    clickhouse-connect's 4 KB URL budget and stalled the stage. Now the load names models in
    batches, and every model of the chunk gets detectors and (in a second process) its state."""
    from prometheus_client import CollectorRegistry

    from driftline.collector.pipeline import Position
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.engine import DetectorEngine
    from driftline.detectors.sink import MODELS_PER_QUERY_CHARS
    from driftline.detectors.stage import DetectorStage
    from driftline.detectors.state import ModelStates
    from driftline.sdk.ids import uuid7

    class Recording:  # the real client; remembers the largest bind-parameter list it was given
        def __init__(self, client: Any) -> None:
            self.client, self.largest = client, 0

        def query(self, sql: str, parameters: Any = None, **kwargs: Any) -> Any:
            for v in (parameters or {}).values():
                if isinstance(v, list):
                    self.largest = max(self.largest, sum(len(x) + 4 for x in v))
            return self.client.query(sql, parameters=parameters, **kwargs)

        def insert(self, *args: Any, **kwargs: Any) -> Any:
            return self.client.insert(*args, **kwargs)

    tag = uuid.uuid4().hex[:6]
    models = [f"fleet-{tag}-model-{i:04d}" for i in range(1000)]
    events = [{"schema_version": 1, "type": "prediction", "event_id": uuid7(), "timestamp": _ts(i), "model": m,
               "model_version": "1", "features": {"x": float(i)}, "prediction": 1.0}
              for i, m in enumerate(models)]
    positions = [Position(f"{tag}.predictions", 0, i, 0) for i in range(len(events))]
    cfg = DetectorsConfig()
    loads = []
    for _ in range(2):  # a first process, then a second one that reads what the first saved
        reg = CollectorRegistry()
        client = Recording(ch_client)
        engine = DetectorEngine(cfg, registry=reg)
        # retry_s=0: a failed load raises at once instead of retrying for 30 s (the old stall)
        stage = DetectorStage(ModelStates(engine, client, registry=reg, retry_s=0), registry=reg)
        stage.observe(events, positions, frozenset())
        assert set(engine.monitors) == set(models)
        assert all(stage.states.loaded(m) for m in models)
        assert 0 < client.largest <= MODELS_PER_QUERY_CHARS
        loads.append(reg.get_sample_value("driftline_detector_state_loads_total"))
    assert loads == [0.0, 1000.0]
