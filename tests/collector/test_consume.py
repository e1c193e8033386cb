"""The collector's consumer (``collector/consume.py``) on the real broker: batches, stored before
committed, co-partitioning, and a stop by signal through the real ``driftline collector``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Sequence

import pytest

from driftline.collector.config import CollectorSettings
from driftline.collector.consume import BatchConsumer
from driftline.collector.pipeline import RawRecord
from tests.collector.test_crash import counts, create_topics, produce
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration


class Recorder:
    """Stands in for ``Pipeline``: records what each ``store`` call got and what was observed, as
    the pipeline does it (a batch is observed by the next ``store`` call or ``observe_stored``);
    can fail or be slow."""

    def __init__(self, *, fail: bool = False, hold: threading.Event | None = None) -> None:
        self.batches: list[list[RawRecord]] = []  # stored
        self.observed: list[tuple[str, int, int]] = []
        self.observed_by_store = 0  # batches observed while the next one was stored
        self.stop = threading.Event()
        self.fail = fail
        self.hold = hold
        self.entered = threading.Event()
        self.prepared = 0
        self.holding = False  # as a detector stage holding chunks whose state cannot be loaded
        self.handovers = 0
        self._unobserved: list[RawRecord] = []

    def prepare(self, records: Sequence[RawRecord]) -> list[RawRecord]:
        """As ``Pipeline.prepare``: CPU work ahead, nothing stored or observed."""
        self.prepared += 1
        return list(records)

    def store(self, records: Sequence[RawRecord]) -> None:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(60)
        if self.fail:
            raise ConnectionError("store down")
        if self._unobserved:
            self.observed_by_store += 1
        self.observe_stored()
        self.batches.append(list(records))
        self._unobserved = list(records)

    def observe_stored(self) -> None:
        self.observed += [(r.topic, r.partition, r.offset) for r in self._unobserved]
        self._unobserved = []

    def may_acknowledge(self) -> bool:
        return not self.holding

    def handover(self) -> None:
        self.handovers += 1

    def offsets(self) -> list[tuple[str, int, int]]:
        return sorted((r.topic, r.partition, r.offset) for b in self.batches for r in b)


def _settings(bootstrap: str, topics: Any, group: str, **kw: Any) -> CollectorSettings:
    return replace(CollectorSettings(kafka_bootstrap=bootstrap, topics=topics, group_id=group,
                                     batch_timeout_s=0.2, session_timeout_s=6.0), **kw)


def _fresh(bootstrap: str, n: int, **kw: Any) -> tuple[Any, CollectorSettings]:
    """Fresh topics with ``n`` records of one model on the prediction topic, and a fresh group."""
    topics = unique_topics("cons")
    create_topics(bootstrap, topics)
    produce(bootstrap, topics.predictions, "m", n)
    return topics, _settings(bootstrap, topics, f"g-{uuid.uuid4().hex[:8]}", **kw)


async def _run_until(consumer: BatchConsumer, done: Any, timeout_s: float = 60.0) -> bool:
    task = asyncio.create_task(consumer.run())
    deadline = time.monotonic() + timeout_s
    while not done() and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    consumer.request_stop()
    return await asyncio.wait_for(task, 30)


def test_every_record_once_in_bounded_batches_then_nothing_after_a_restart(kafka_bootstrap: str) -> None:
    topics, settings = _fresh(kafka_bootstrap, 5_000, batch_size=1_500)
    pipe = Recorder()
    with ThreadPoolExecutor(1) as ex:
        ok = asyncio.run(_run_until(BatchConsumer(settings, pipe, ex), lambda: len(pipe.offsets()) >= 5_000))
    assert ok
    seen = pipe.offsets()
    assert len(seen) == len(set(seen)) == 5_000
    assert max(len(b) for b in pipe.batches) <= 1_500
    assert len(pipe.batches) >= 4  # 5,000 records in batches of at most 1,500
    assert {r.role for b in pipe.batches for r in b} == {"predictions"}
    # Everything was committed: the same group starts where it left off and gets nothing.
    again = Recorder()
    with ThreadPoolExecutor(1) as ex:
        produce(kafka_bootstrap, topics.predictions, "m", 10)
        asyncio.run(_run_until(BatchConsumer(settings, again, ex), lambda: len(again.offsets()) >= 10, 40))
    assert len(again.offsets()) == 10
    assert set(again.offsets()).isdisjoint(seen)


def test_a_batch_is_committed_only_once_observed_and_a_backlog_is_observed_while_the_next_is_stored(
        kafka_bootstrap: str) -> None:
    """The detectors save their state for a batch when they observe it; a commit before that would
    lose the batch for them in a crash. With a backlog, batch N is observed by the call that stores
    N+1 (ClickHouse and the detectors work at the same time); the last one on its own."""
    topics, settings = _fresh(kafka_bootstrap, 3_000, batch_size=500)
    pipe = Recorder()
    early: list[tuple[Any, int]] = []  # committed positions not observed at the time of the commit

    def on_batch(consumer: Any, last: dict[Any, int]) -> None:
        seen = set(pipe.observed)
        for tp, offset in last.items():
            early.extend((tp, o) for t, p, o in pipe.offsets() if (t, p) == (tp.topic, tp.partition)
                         and o <= offset and (t, p, o) not in seen)

    with ThreadPoolExecutor(1) as ex:
        consumer = BatchConsumer(settings, pipe, ex, on_batch=on_batch)
        ok = asyncio.run(_run_until(consumer, lambda: len(pipe.observed) >= 3_000))
    assert ok
    assert early == []
    assert sorted(pipe.observed) == pipe.offsets() and len(pipe.observed) == 3_000
    assert pipe.observed_by_store >= 3  # 3,000 records in batches of at most 500, there from the start
    # Everything observed was committed: the same group gets only what is produced now.
    again = Recorder()
    with ThreadPoolExecutor(1) as ex:
        produce(kafka_bootstrap, topics.predictions, "m", 10)
        asyncio.run(_run_until(BatchConsumer(settings, again, ex), lambda: len(again.observed) >= 10, 40))
    assert [o for _, _, o in again.offsets()] == list(range(3_000, 3_010))


def test_nothing_is_committed_while_the_detectors_hold_stored_events(kafka_bootstrap: str) -> None:
    """While the pipeline's observers hold stored chunks (``may_acknowledge`` False) no offset is
    committed, through a stop: the next consumer of the group reads every record again. Once the
    hold ends, the idle consumer commits everything stored meanwhile: a restart reads only what is
    new."""
    topics, settings = _fresh(kafka_bootstrap, 1_000, batch_size=300)
    held = Recorder()
    held.holding = True
    commits: list[dict[Any, int]] = []
    with ThreadPoolExecutor(1) as ex:
        consumer = BatchConsumer(settings, held, ex, on_batch=lambda c, last: commits.append(dict(last)))
        assert asyncio.run(_run_until(consumer, lambda: len(held.observed) >= 1_000))
    assert len(held.observed) == 1_000 and commits == []

    released = Recorder()
    released.holding = True

    async def main() -> None:
        consumer = BatchConsumer(settings, released, ex, on_batch=lambda c, last: commits.append(dict(last)))
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + 60
        while len(released.observed) < 1_000 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert commits == []  # read again, all of them, and still held
        released.holding = False  # the detectors observed what they held (a tick): the idle loop commits
        idle_until = time.monotonic() + 10
        while not commits and time.monotonic() < idle_until:
            await asyncio.sleep(0.05)
        assert commits, "committed by the idle consumer, not only at its stop"
        consumer.request_stop()
        assert await asyncio.wait_for(task, 30) is True

    with ThreadPoolExecutor(1) as ex:
        asyncio.run(main())
    assert sorted(released.observed) == held.offsets() and len(released.observed) == 1_000
    assert [max(c.values()) for c in commits] == [999]
    later = Recorder()
    with ThreadPoolExecutor(1) as ex:
        produce(kafka_bootstrap, topics.predictions, "m", 10)
        asyncio.run(_run_until(BatchConsumer(settings, later, ex), lambda: len(later.observed) >= 10, 40))
    assert [o for _, _, o in later.offsets()] == list(range(1_000, 1_010))


def test_the_next_batch_is_prepared_while_one_is_being_stored(kafka_bootstrap: str) -> None:
    """The next batch is decoded (``Pipeline.prepare``) while the one before is being stored, so
    the store is not idle while a batch is decoded; every record is still stored and observed once."""
    topics, settings = _fresh(kafka_bootstrap, 1_000, batch_size=300)
    hold = threading.Event()
    pipe = Recorder(hold=hold)

    async def main() -> tuple[int, int]:
        consumer = BatchConsumer(settings, pipe, ex)
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + 30
        while pipe.prepared < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        ahead = (pipe.prepared, len(pipe.batches))  # the first store is held: nothing stored yet
        hold.set()
        while len(pipe.observed) < 1_000 and time.monotonic() < deadline + 30:
            await asyncio.sleep(0.05)
        consumer.request_stop()
        assert await asyncio.wait_for(task, 30) is True
        return ahead

    with ThreadPoolExecutor(1) as ex:
        assert asyncio.run(main()) == (2, 0)
    assert sorted(pipe.observed) == pipe.offsets() and len(pipe.observed) == 1_000


def test_falling_idle_after_storing_gives_the_free_heap_back_once(kafka_bootstrap: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy spell leaves malloc's heap at its peak: once every stored batch is observed and nothing
    new arrives, the collector releases it (``memprobe.release_free_heap``), once per idle spell, not
    while batches keep coming."""
    from driftline.collector import consume

    topics, settings = _fresh(kafka_bootstrap, 1_000, batch_size=300)
    pipe = Recorder()
    releases: list[int] = []  # records observed when each release ran
    monkeypatch.setattr(consume, "_release_free_heap", lambda: releases.append(len(pipe.observed)))

    async def main() -> list[int]:
        consumer = BatchConsumer(settings, pipe, ex)
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + 30
        while not releases and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # idle on: no second release
        first = list(releases)
        await asyncio.get_running_loop().run_in_executor(None, produce, kafka_bootstrap, topics.predictions,
                                                         "m", 500)
        while len(releases) < 2 and time.monotonic() < deadline + 30:
            await asyncio.sleep(0.05)
        consumer.request_stop()
        assert await asyncio.wait_for(task, 30) is True
        return first

    with ThreadPoolExecutor(1) as ex:
        first = asyncio.run(main())
    assert first == [1_000]  # after all 1,000 were observed, and once however long the idle
    assert releases == [1_000, 1_500]  # the next busy spell ends the same way


def test_a_batch_that_was_not_stored_is_not_committed(kafka_bootstrap: str) -> None:
    topics, settings = _fresh(kafka_bootstrap, 300)
    failing = Recorder(fail=True)
    with ThreadPoolExecutor(1) as ex:
        ok = asyncio.run(_run_until(BatchConsumer(settings, failing, ex), lambda: False, 60))
    assert failing.entered.is_set() and ok is False  # it stopped on the first failed batch
    later = Recorder()
    with ThreadPoolExecutor(1) as ex:
        asyncio.run(_run_until(BatchConsumer(settings, later, ex), lambda: len(later.offsets()) >= 300))
    assert [o for _, _, o in later.offsets()] == list(range(300))  # all of them, from the first


def test_a_stop_during_a_slow_store_finishes_and_commits_that_batch(kafka_bootstrap: str) -> None:
    topics, settings = _fresh(kafka_bootstrap, 200)
    hold = threading.Event()
    slow = Recorder(hold=hold)

    async def main() -> bool:
        consumer = BatchConsumer(settings, slow, ex)
        task = asyncio.create_task(consumer.run())
        while not slow.entered.is_set():
            await asyncio.sleep(0.05)
        consumer.request_stop()  # while the batch is being stored
        await asyncio.sleep(0.5)
        assert not task.done()  # it waits for the batch in flight
        hold.set()
        return await asyncio.wait_for(task, 30)

    with ThreadPoolExecutor(1) as ex:
        assert asyncio.run(main()) is True
    assert slow.stop.is_set()  # the pipeline was told: a batch stuck retrying would give up
    stored = slow.offsets()
    assert stored
    after = Recorder()
    with ThreadPoolExecutor(1) as ex:
        asyncio.run(_run_until(BatchConsumer(settings, after, ex), lambda: len(stored) + len(after.offsets()) >= 200))
    assert set(after.offsets()).isdisjoint(stored)  # the stored batch was committed
    assert len(stored) + len(after.offsets()) == 200


def test_two_members_hold_the_same_partitions_of_every_event_topic(kafka_bootstrap: str) -> None:
    """Range assignment: partition N of predictions, labels and outcomes goes to one member, so one
    collector holds a model's predictions and its labels."""
    topics = unique_topics("cons")
    create_topics(kafka_bootstrap, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = _settings(kafka_bootstrap, topics, group)

    async def main() -> list[Any]:
        members = [BatchConsumer(settings, Recorder(), ex) for _ in range(2)]
        tasks = [asyncio.create_task(m.run()) for m in members]

        def split() -> bool:
            sets = [m.consumer.assignment() if m.consumer is not None else set() for m in members]
            return all(sets) and len(sets[0] | sets[1]) == 3 * settings.partitions

        deadline = time.monotonic() + 60
        while not split() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assignments = [set(m.consumer.assignment()) for m in members]
        for m in members:
            m.request_stop()
        await asyncio.gather(*tasks)
        return assignments

    with ThreadPoolExecutor(2) as ex:
        assignments = asyncio.run(main())
    assert all(assignments)
    assert assignments[0].isdisjoint(assignments[1])
    for held in assignments:
        by_topic = {t: {tp.partition for tp in held if tp.topic == t} for t in topics.event_topics()}
        assert len({frozenset(p) for p in by_topic.values()}) == 1, by_topic  # the same partitions of each
        assert by_topic[topics.predictions]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_driftline_collector_stops_on_a_signal_and_nothing_committed_is_missing(
        sig: int, kafka_bootstrap: str, clickhouse_url: str, ch_client: Any, tmp_path: Any) -> None:
    """The real process, started as a shell's background job would be (SIGINT ignored), stopped by
    ``sig`` mid-stream: it exits 0, every record its group committed is stored, and a restart stores
    the rest, each event once."""
    from driftline.collector.embedded.broker import free_port
    from driftline.collector.embedded.broker_retention import committed_and_end

    n = 20_000
    topics = unique_topics("sig")
    model = f"sig-{uuid.uuid4().hex[:6]}"
    create_topics(kafka_bootstrap, topics)
    produce(kafka_bootstrap, topics.predictions, model, n)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap, "DRIFTLINE_CLICKHOUSE_URL": clickhouse_url,
           "DRIFTLINE_TOPIC_PREFIX": topics.predictions.rsplit(".", 1)[0], "DRIFTLINE_GROUP_ID": group,
           "DRIFTLINE_METRICS_PORT": str(free_port()), "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "0.2",
           "DRIFTLINE_COLLECTOR_BATCH_SIZE": "1000", "DRIFTLINE_DATA_DIR": str(tmp_path / "data")}

    def start() -> subprocess.Popen[bytes]:
        log = open(tmp_path / "collector.log", "ab")  # noqa: SIM115 - owned by the child
        return subprocess.Popen([sys.executable, "-m", "driftline.cli", "collector"], env=env, cwd=tmp_path,
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))

    proc = start()
    try:
        wait_for(lambda: counts(ch_client, model)[0] >= 2_000, timeout_s=120, interval_s=0.05)
        proc.send_signal(sig)
        assert proc.wait(60) == 0, (tmp_path / "collector.log").read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = counts(ch_client, model)[0]
    committed = sum(c for c, _ in committed_and_end(kafka_bootstrap, group, [topics.predictions]).values())
    assert 0 < committed <= stored  # one event per record: what was committed was stored
    assert stored < n, "it finished before the signal; the test proves nothing"
    proc = start()
    try:
        wait_for(lambda: counts(ch_client, model)[0] >= n, timeout_s=180)
        time.sleep(2)
        assert counts(ch_client, model) == (n, n)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
