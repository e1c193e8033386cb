"""Scale-out: collectors in one consumer group split the partitions, survive a SIGKILL, and
store what a single collector stores.

One scenario runs once per module (consumer-group joins on Tansu take ~10 s each, so every test
reads the same run):

* run ``pair``: two ``driftline collector`` processes in one group on topics with 6 partitions;
  twelve models whose names hash onto every partition (key = model name, so a model's events stay
  on one partition and in order); the stream is produced in chunks while both consume, one
  collector is SIGKILLed mid-stream, and the rest of the stream follows.
* run ``solo``: one collector, its own group, its own copy of the topics, the same events with
  the model names suffixed (``-solo``) so that both runs can share the store without the
  writer's replay filter (keyed by model and event id) treating one run as a replay of the other.

The tests then compare the two runs table by table, with the model names mapped back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from driftline.sdk.contract import Topics
from tests.conftest import CollectorProcess, unique_topics, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 6
MODELS_PER_PARTITION = 2
PREDICTIONS_PER_MODEL = 600
LABEL_EVERY = 4  # one label per this many predictions
SOLO = "-solo"
WINDOW = 100


def _partition_of(key: str, partitions: int) -> int:
    # kafka-python's default partitioner (murmur2 of the key), the one the SDK's producer uses.
    from kafka.partitioner.default import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _model_names(tag: str) -> list[str]:
    """Model names that put MODELS_PER_PARTITION models on every partition."""
    names: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(v) < MODELS_PER_PARTITION for v in names.values()):
        name = f"so-{tag}-m{i}"
        bucket = names[_partition_of(name, PARTITIONS)]
        if len(bucket) < MODELS_PER_PARTITION:
            bucket.append(name)
        i += 1
    return sorted(n for v in names.values() for n in v)


def _events(models: list[str]) -> list[dict[str, Any]]:
    """The stream: per model, predictions in time order, a label after every LABEL_EVERY-th one,
    models interleaved. Half the models drift after 60% of their traffic."""
    from driftline.sdk.ids import uuid7
    from driftline.sdk.contract.schema import validate_event

    rng = random.Random(8)
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    per_model: list[list[dict[str, Any]]] = []
    for m_index, model in enumerate(models):
        events = []
        drifts = m_index % 2 == 0
        for i in range(PREDICTIONS_PER_MODEL):
            ts = (start + dt.timedelta(milliseconds=250 * i + m_index)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            shift = 2.0 if drifts and i >= PREDICTIONS_PER_MODEL * 0.6 else 0.0
            x = rng.gauss(shift, 1.0)
            plan = rng.choice(["free", "pro", "team"] if not shift else ["pro", "team", "team"])
            score = round(1 / (1 + 2.718281828 ** -x), 6)
            pid = uuid7()
            events.append({
                "schema_version": 1, "type": "prediction", "event_id": pid, "timestamp": ts,
                "model": model, "model_version": "1", "variant": "primary", "request_id": f"r{i}",
                "features": {"x": x, "age": rng.randint(18, 90), "plan": plan, "vip": i % 7 == 0},
                "prediction": {"yes": score, "no": round(1 - score, 6)},
                "latency_ms": round(rng.uniform(1, 30), 3), "status": "ok", "error": None,
                "tags": {"region": rng.choice(["eu", "us"])},
            })
            if i % LABEL_EVERY == 0:
                events.append({
                    "schema_version": 1, "type": "label", "event_id": uuid7(), "timestamp": ts,
                    "model": model, "model_version": "1", "prediction_id": pid,
                    "label": "yes" if rng.random() < score else "no", "tags": {},
                })
        per_model.append(events)
    stream: list[dict[str, Any]] = []
    for i in range(max(len(e) for e in per_model)):
        for events in per_model:
            if i < len(events):
                stream.append(validate_event(events[i]))
    return stream


def _detectors_yaml(models: list[str]) -> str:
    # One YAML document per model (the per-model files of detectors/config.py, concatenated).
    docs = [
        f"model: {m}\nwindow: {{kind: count, size: {WINDOW}}}\nmin_samples: 50\n"
        f"reference: {{source: first_events, first_events: {WINDOW * 2}}}\n"
        for m in models
    ]
    return "---\n".join(docs)


def _metrics(port: int) -> dict[str, Any]:
    """Consumed records per topic and the partitions this collector took batches from."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {"consumed": 0, "partitions": set()}
    consumed = 0.0
    partitions: set[tuple[str, int]] = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "driftline_collector_events_consumed_total":
                consumed += s.value
            elif s.name == "driftline_collector_consumer_lag_events":
                partitions.add((s.labels["topic"], int(s.labels["partition"])))
    return {"consumed": int(consumed), "partitions": partitions}


@dataclass
class Scenario:
    models: list[str]
    stream: list[dict[str, Any]]
    pair_topics: Topics
    solo_topics: Topics
    before_kill: list[dict[str, Any]] = field(default_factory=list)
    survivor_after: dict[str, Any] = field(default_factory=dict)
    killed_consumed: int = 0
    produced_after_kill: int = 0
    logs: dict[str, str] = field(default_factory=dict)


class _Collector(CollectorProcess):
    """``driftline collector`` started in a scratch directory, so that nothing it might write into its
    working directory lands in the repository."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        super().__init__(env, log_path)
        self.cwd = cwd

    def start(self) -> _Collector:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "driftline.cli", "collector"], env=self.env,
                                     cwd=self.cwd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        return self


def _start(name: str, env: dict[str, str], tmp: Path) -> tuple[CollectorProcess, int]:
    from driftline.collector.embedded.broker import free_port

    port = free_port()
    proc = _Collector({**env, "DRIFTLINE_METRICS_PORT": str(port)}, tmp / f"{name}.log", tmp).start()
    return proc, port


@pytest.fixture(scope="module")
def scenario(kafka_bootstrap: str, clickhouse_url: str, ch_client: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from kafka import KafkaProducer

    from driftline.collector.topics import ensure_topics

    tmp = tmp_path_factory.mktemp("scale_out")
    tag = uuid.uuid4().hex[:6]
    models = _model_names(tag)
    stream = _events(models)
    sc = Scenario(models, stream, unique_topics("pair"), unique_topics("solo"))
    for t in (sc.pair_topics, sc.solo_topics):
        ensure_topics(kafka_bootstrap, [t.predictions, t.labels, t.outcomes, t.deadletter], partitions=PARTITIONS)
    detectors = tmp / "detectors.yaml"
    detectors.write_text(_detectors_yaml(models + [m + SOLO for m in models]))

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), acks="all", linger_ms=5)
    position = 0

    def produce(n: int) -> int:
        """Send the next n events of the stream to both runs' topics (same order)."""
        nonlocal position
        chunk = stream[position:position + n]
        for e in chunk:
            for topics, suffix in ((sc.pair_topics, ""), (sc.solo_topics, SOLO)):
                event = {**e, "model": e["model"] + suffix}
                producer.send(topics.for_type(e["type"]), key=event["model"].encode(),
                              value=json.dumps(event, separators=(",", ":")).encode())
        producer.flush(30)
        position += len(chunk)
        return len(chunk)

    def env(topics: Topics, group: str) -> dict[str, str]:
        return {**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "DRIFTLINE_CLICKHOUSE_URL": clickhouse_url,
                "DRIFTLINE_TOPIC_PREFIX": topics.predictions.rsplit(".", 1)[0],
                "DRIFTLINE_GROUP_ID": group, "DRIFTLINE_PARTITIONS": str(PARTITIONS),
                "DRIFTLINE_COLLECTOR_BATCH_SIZE": "200", "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "0.2",
                "DRIFTLINE_DETECTORS_CONFIG": str(detectors)}

    pair_env = env(sc.pair_topics, f"pair-{tag}")
    procs: dict[str, tuple[CollectorProcess, int]] = {}
    try:
        produce(len(stream) // 5)
        procs["a"] = _start("a", pair_env, tmp)
        procs["b"] = _start("b", pair_env, tmp)
        procs["solo"] = _start("solo", env(sc.solo_topics, f"solo-{tag}"), tmp)

        # Keep the stream flowing until both members of the group have consumed from it.
        def both_consuming() -> bool:
            if position < len(stream) * 0.6:
                produce(len(stream) // 100)
            a, b = _metrics(procs["a"][1]), _metrics(procs["b"][1])
            return a["consumed"] > 0 and b["consumed"] > 0

        wait_for(both_consuming, timeout_s=60, interval_s=0.5)
        # A little more traffic with the group settled, until each member has taken batches from
        # prediction partitions of its own (a member that joined late first catches up on labels)
        # and together they have taken from every partition.
        produce(len(stream) // 20)

        def both_have_predictions() -> bool:
            snap = [_metrics(procs["a"][1]), _metrics(procs["b"][1])]
            topic = sc.pair_topics.predictions
            taken = [{p for t, p in m["partitions"] if t == topic} for m in snap]
            if all(taken) and set.union(*taken) == set(range(PARTITIONS)):
                sc.before_kill = snap
                return True
            if position < len(stream) * 0.7:
                produce(len(stream) // 100)
            return False

        wait_for(both_have_predictions, timeout_s=60, interval_s=0.5)

        # Mid-stream: a chunk is in flight when one member dies without a chance to commit.
        produce(len(stream) // 20)
        wait_for(lambda: _metrics(procs["a"][1])["consumed"] > sc.before_kill[0]["consumed"], timeout_s=20,
                 interval_s=0.05)
        sc.killed_consumed = _metrics(procs["a"][1])["consumed"]
        procs["a"][0].kill()

        # The rest of the stream arrives after the kill, in a few bursts.
        while position < len(stream):
            sc.produced_after_kill += produce(len(stream) // 10)
            time.sleep(0.3)
        producer.close()

        expected = {"predictions": len(models) * PREDICTIONS_PER_MODEL,
                    "labels": len(models) * ((PREDICTIONS_PER_MODEL + LABEL_EVERY - 1) // LABEL_EVERY)}

        def all_stored() -> dict[str, int] | None:
            counts = {}
            for table in expected:
                for run, names in (("pair", models), ("solo", [m + SOLO for m in models])):
                    counts[f"{run}.{table}"] = int(ch_client.query(
                        f"SELECT count() FROM driftline.{table} WHERE model IN %(m)s",
                        parameters={"m": names}).result_rows[0][0])
            done = all(counts[f"{run}.{t}"] >= n for t, n in expected.items() for run in ("pair", "solo"))
            return None if not done else counts

        try:
            wait_for(all_stored, timeout_s=90, interval_s=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; collector logs: " + "; ".join(
                f"{n}: {p.log()[-1500:]}" for n, (p, _) in procs.items())) from None
        # Let the survivor finish the batch it is on and commit, then read its view.
        time.sleep(1.5)
        sc.survivor_after = _metrics(procs["b"][1])
        yield sc
    finally:
        for name, (proc, _) in procs.items():
            proc.stop()
            sc.logs[name] = proc.log()


def _rows(ch_client: Any, table: str, models: list[str], suffix: str) -> list[tuple[Any, ...]]:
    names = [m + suffix for m in models]
    cols = {"predictions": "toString(event_id), timestamp, model, model_version, variant, request_id, "
                           "features_num, features_str, features_bool, features_null, prediction, "
                           "prediction_num, prediction_label, prediction_scores, latency_ms, status, error, tags",
            "labels": "toString(event_id), timestamp, model, model_version, toString(prediction_id), label, "
                      "label_num, label_str, tags"}[table]
    rows = ch_client.query(f"SELECT {cols} FROM driftline.{table} WHERE model IN %(m)s",
                           parameters={"m": names}).result_rows
    # Map the solo run's model names back so the two runs compare row for row.
    return sorted(tuple(v[: -len(suffix)] if suffix and i == 2 else v for i, v in enumerate(r))
                  for r in rows)


def test_every_partition_has_models_and_both_members_consumed(scenario: Scenario) -> None:
    assert {_partition_of(m, PARTITIONS) for m in scenario.models} == set(range(PARTITIONS))
    a, b = scenario.before_kill
    assert a["consumed"] > 0 and b["consumed"] > 0, scenario.before_kill
    # Each member took batches from partitions of the prediction topic; together they cover
    # every partition, and neither had them all (the work was split).
    topic = scenario.pair_topics.predictions
    pa = {p for t, p in a["partitions"] if t == topic}
    pb = {p for t, p in b["partitions"] if t == topic}
    assert pa and pb, scenario.before_kill
    assert pa | pb == set(range(PARTITIONS)), (pa, pb)
    assert pa != set(range(PARTITIONS)) or pb != set(range(PARTITIONS)), (pa, pb)


def test_survivor_takes_over_and_every_event_is_stored_once(scenario: Scenario, ch_client: Any) -> None:
    assert scenario.produced_after_kill > 0
    # The survivor ended up reading every partition, the dead member's included.
    topic = scenario.pair_topics.predictions
    survivor = {p for t, p in scenario.survivor_after["partitions"] if t == topic}
    assert survivor == set(range(PARTITIONS)), survivor
    sent = {"prediction": set(), "label": set()}
    for e in scenario.stream:
        sent[e["type"]].add(e["event_id"])
    for table, kind in (("predictions", "prediction"), ("labels", "label")):
        total, distinct = ch_client.query(
            f"SELECT count(), uniqExact(event_id) FROM driftline.{table} WHERE model IN %(m)s",
            parameters={"m": scenario.models}).result_rows[0]
        assert total == distinct == len(sent[kind]), (table, total, distinct, len(sent[kind]))
        stored = {r[0] for r in ch_client.query(
            f"SELECT toString(event_id) FROM driftline.{table} WHERE model IN %(m)s",
            parameters={"m": scenario.models}).result_rows}
        assert stored == sent[kind]


@pytest.mark.parametrize("table", ["predictions", "labels"])
def test_pair_stores_the_same_rows_as_a_single_collector(scenario: Scenario, ch_client: Any, table: str) -> None:
    pair = _rows(ch_client, table, scenario.models, "")
    solo = _rows(ch_client, table, scenario.models, SOLO)
    assert len(pair) == len(solo) > 0
    assert pair == solo


def test_pair_computes_the_same_drift_results_as_a_single_collector(scenario: Scenario, ch_client: Any) -> None:
    def drift(suffix: str) -> list[tuple[Any, ...]]:
        names = [m + suffix for m in scenario.models]
        rows = ch_client.query(
            "SELECT model, model_version, detector, feature, segment, window_start, window_end, statistic, "
            "value, p_value, threshold, drift, reference_size, current_size, details "
            "FROM driftline.drift_metrics FINAL WHERE model IN %(m)s", parameters={"m": names}).result_rows
        return sorted((r[0][: len(r[0]) - len(suffix)], *r[1:]) for r in rows)

    pair, solo = drift(""), drift(SOLO)
    # Without rows the comparison proves nothing: every model must have closed windows.
    assert {r[0] for r in solo} == set(scenario.models), (
        f"single collector wrote drift rows for {len({r[0] for r in solo})} of {len(scenario.models)} models "
        "(is the detector engine wired into the collector? see cli/collector.py)")
    assert any(r[11] for r in solo), "no drift flagged although half the models shift"
    only_pair = sorted(set(pair) - set(solo))[:5]
    only_solo = sorted(set(solo) - set(pair))[:5]
    assert pair == solo, f"rows only in the two-collector run: {only_pair}; only in the single run: {only_solo}"


def test_rollups_count_every_stored_prediction(scenario: Scenario, ch_client: Any) -> None:
    # The dashboard reads the rollups: every stored row is counted there once, for both runs,
    # whatever the collectors went through (a member killed mid-insert, a replayed batch).
    names = scenario.models + [m + SOLO for m in scenario.models]
    raw = dict(ch_client.query("SELECT model, count() FROM driftline.predictions WHERE model IN %(m)s "
                               "GROUP BY model", parameters={"m": names}).result_rows)
    for table in ("rollup_predictions_1m", "rollup_predictions_1h"):
        rolled = dict(ch_client.query(f"SELECT model, sum(n) FROM driftline.{table} WHERE model IN %(m)s "
                                      "GROUP BY model", parameters={"m": names}).result_rows)
        assert len(raw) == len(names) and rolled == raw, (
            table, {m: (raw.get(m), rolled.get(m)) for m in names if raw.get(m) != rolled.get(m)})
