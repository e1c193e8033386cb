"""Detector state unreadable while inserts work, then the collector SIGKILLed: the events the
detectors held were stored and *not acknowledged*, so the next collector reads them again and its
detectors observe every one of them. Real processes (``driftline collector``), the real broker
and store; the fault is the ``detector_state`` table renamed away (reads fail, inserts work), as
ClickHouse's old ``Code: 62`` did to state reads at 1,000 models (issue 17)."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.collector.test_crash import counts, create_topics, produce
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration

WINDOW = 100
STATE_RETRY_S = 3  # DRIFTLINE_DETECTOR_STATE_RETRY_S: how long a state read is retried before its chunk is held


def _samples(port: int) -> dict[tuple[str, str], float]:
    """(metric, model) -> value of the detector metrics this test reads; {} while it is not up."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("driftline_detector_events_total", "driftline_detector_events_held",
                          "driftline_detector_events_unobserved_total"):
                key = (s.name, s.labels.get("model", ""))
                out[key] = out.get(key, 0.0) + s.value
    return out


def _wait_committed(bootstrap: str, group: str, topics: Any) -> None:
    """Until the group has committed every record of the predictions topic: the collector commits
    only once the detectors' output of what it observed is written (their state saved)."""
    from driftline.collector.topics import BrokerBacklog

    backlog = BrokerBacklog(bootstrap, group, [topics.predictions])
    try:
        wait_for(lambda: backlog.total() == 0, timeout_s=30)
    finally:
        backlog.close()


def test_events_held_by_the_detectors_survive_a_sigkill_and_are_observed_after_the_restart(
        kafka_bootstrap: str, ch_client: Any, collector_factory: Any, tmp_path: Path) -> None:
    topics = unique_topics()
    tag = uuid.uuid4().hex[:6]
    a, b = f"held-a-{tag}", f"held-b-{tag}"
    create_topics(kafka_bootstrap, topics)
    detectors = tmp_path / "detectors.yaml"
    detectors.write_text("---\n".join(
        f"model: {m}\nwindow: {{kind: count, size: {WINDOW}}}\nmin_samples: 50\n"
        f"reference: {{source: first_events, first_events: {WINDOW * 2}}}\n" for m in (a, b)))
    group = f"g-held-{tag}"
    env = {"DRIFTLINE_DETECTORS_CONFIG": str(detectors), "DRIFTLINE_DETECTOR_STATE_RETRY_S": str(STATE_RETRY_S)}
    first = collector_factory(topics, group_id=group, extra_env=env)
    port = int(first.env["DRIFTLINE_METRICS_PORT"])

    produce(kafka_bootstrap, topics.predictions, a, 300)
    wait_for(lambda: _samples(port).get(("driftline_detector_events_total", a)) == 300, timeout_s=90)
    _wait_committed(kafka_bootstrap, group, topics)  # their state saved: not observed again below

    table, away = "driftline.detector_state", f"driftline.detector_state_away_{tag}"
    ch_client.command(f"RENAME TABLE {table} TO {away}")
    try:
        produce(kafka_bootstrap, topics.predictions, b, 400)  # a new model: its saved state cannot be read
        produce(kafka_bootstrap, topics.predictions, a, 100)
        wait_for(lambda: counts(ch_client, a)[0] == 400 and counts(ch_client, b)[0] == 400, timeout_s=90)
        # The first load of b's state gives up after the state's retries: then the chunk is held.
        wait_for(lambda: _samples(port).get(("driftline_detector_events_held", "")) == 500, timeout_s=120)
        seen_first = _samples(port)
        first.kill()
    finally:
        ch_client.command(f"RENAME TABLE {away} TO {table}")
    assert seen_first.get(("driftline_detector_events_total", a)) == 300
    assert not seen_first.get(("driftline_detector_events_total", b))

    second = collector_factory(topics, group_id=group, extra_env=env)
    port2 = int(second.env["DRIFTLINE_METRICS_PORT"])

    def observed() -> dict[tuple[str, str], float]:
        s = _samples(port2)
        return s if s.get(("driftline_detector_events_total", b)) == 400 else {}

    seen = wait_for(observed, timeout_s=120)
    assert seen.get(("driftline_detector_events_total", a)) == 100, "a's first 300 were observed before the kill"
    assert seen.get(("driftline_detector_events_held", "")) == 0
    assert not seen.get(("driftline_detector_events_unobserved_total", ""))
    assert counts(ch_client, a) == (400, 400) and counts(ch_client, b) == (400, 400), "stored once"
    drift = ch_client.query("SELECT model, count() FROM driftline.drift_metrics WHERE model IN (%(a)s, %(b)s) "
                            "GROUP BY model", parameters={"a": a, "b": b}).result_rows
    assert {m for m, n in drift if n} == {a, b}, "both models' windows closed and were written"
    assert "detector failed on a batch" not in first.log() + second.log()


def _one_per_partition(tag: str, partitions: int) -> list[str]:
    """Model names whose keys the producer's partitioner puts on every partition, one each."""
    from kafka.partitioner.default import murmur2

    names: dict[int, str] = {}
    i = 0
    while len(names) < partitions:
        name = f"held-r{i}-{tag}"
        names.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % partitions, name)
        i += 1
    return [names[p] for p in range(partitions)]


def test_a_rebalance_while_events_are_held_hands_them_to_the_next_owner_and_each_is_observed_once(
        kafka_bootstrap: str, ch_client: Any, collector_factory: Any) -> None:
    """A second collector joins the group while the first holds stored events (state unreadable):
    the first lets every held chunk go (nothing of them was committed), each partition's owner
    reads its records again, and once the state is back every held event is observed exactly
    once across the two processes."""
    from driftline.collector.config import CollectorSettings

    topics = unique_topics()
    tag = uuid.uuid4().hex[:6]
    create_topics(kafka_bootstrap, topics)
    a = f"held-a-{tag}"
    models = _one_per_partition(tag, CollectorSettings().partitions)  # both collectors get held events
    group = f"g-held-r-{tag}"
    env = {"DRIFTLINE_DETECTOR_STATE_RETRY_S": str(STATE_RETRY_S)}
    first = collector_factory(topics, group_id=group, extra_env=env)
    port1 = int(first.env["DRIFTLINE_METRICS_PORT"])
    produce(kafka_bootstrap, topics.predictions, a, 200)
    wait_for(lambda: _samples(port1).get(("driftline_detector_events_total", a)) == 200, timeout_s=90)
    # ... and committed, so their state is saved: events observed whose output is not saved yet are
    # observed again by a partition's next owner, and counted by both processes (only one is kept)
    _wait_committed(kafka_bootstrap, group, topics)

    table, away = "driftline.detector_state", f"driftline.detector_state_away_{tag}"
    # A stand-in without the state's columns, not just the table renamed away: the second
    # collector's start-up migrate would create an empty, readable table in its place.
    ch_client.command(f"RENAME TABLE {table} TO {away}")
    ch_client.command(f"CREATE TABLE {table} (model String) ENGINE = Memory")
    try:
        for m in models:
            produce(kafka_bootstrap, topics.predictions, m, 100)
        wait_for(lambda: _samples(port1).get(("driftline_detector_events_held", "")) == 400, timeout_s=90)
        second = collector_factory(topics, group_id=group, extra_env=env)
        port2 = int(second.env["DRIFTLINE_METRICS_PORT"])

        def split() -> bool:
            h1 = _samples(port1).get(("driftline_detector_events_held", ""), 0)
            h2 = _samples(port2).get(("driftline_detector_events_held", ""), 0)
            return h1 > 0 and h2 > 0 and h1 + h2 == 400

        # the first gave its held chunks up at the revoke; each now holds its own partitions' again
        wait_for(split, timeout_s=90)
    finally:
        ch_client.command(f"DROP TABLE IF EXISTS {table}")
        ch_client.command(f"RENAME TABLE {away} TO {table}")
    expected = {a: 200, **{m: 100 for m in models}}

    def totals() -> dict[str, float]:
        s1, s2 = _samples(port1), _samples(port2)
        if s1.get(("driftline_detector_events_held", ""), 1) or s2.get(("driftline_detector_events_held", ""), 1):
            return {}
        out = {m: s1.get(("driftline_detector_events_total", m), 0) + s2.get(("driftline_detector_events_total", m), 0)
               for m in expected}
        return out if all(out[m] >= n for m, n in expected.items()) else {}

    seen = wait_for(totals, timeout_s=120)
    assert seen == expected, ("every held event observed exactly once across the two collectors",
                              _samples(port1), _samples(port2))
    for port in (port1, port2):
        assert not _samples(port).get(("driftline_detector_events_unobserved_total", ""))
    for m, n in expected.items():
        assert counts(ch_client, m) == (n, n), f"{m} stored once"
    assert "detector failed on a batch" not in first.log() + second.log()
