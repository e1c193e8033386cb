"""One consumer of ``bench_consume.py``, in a process of its own: reads N records from a topic and
prints its CPU per record (from its first batch to its last; start-up and the group join excluded).

    python bench/consume_peer.py driftline|aiokafka|faust BOOTSTRAP TOPIC N

``faust`` runs in its own venv (faust-streaming, made by bench_consume.py): an agent with faust's
``take_events``, as the collector consumed until 3 Dec 2026.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    def __init__(self, n: int, impl: str) -> None:
        self.n, self.impl, self.seen, self.first, self.c0, self.t0 = n, impl, 0, 0, 0.0, 0.0

    def add(self, k: int) -> bool:
        if self.seen == 0:
            self.c0, self.t0, self.first = cpu_s(), time.perf_counter(), k
        self.seen += k
        if self.seen < self.n:
            return False
        counted = self.n - self.first
        print(json.dumps({"impl": self.impl, "records": counted,
                          "cpu_us_per_record": 1e6 * (cpu_s() - self.c0) / counted,
                          "wall_s": time.perf_counter() - self.t0}), flush=True)
        return True


async def run_aiokafka(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{topic}", auto_offset_reset="earliest",
                         enable_auto_commit=False, max_partition_fetch_bytes=1 << 20)
    await c.start()
    meter = Meter(n, "aiokafka getmany")
    try:
        while True:
            got = await c.getmany(timeout_ms=1000, max_records=25_000)
            k = sum(len(v) for v in got.values())
            if k:
                await c.commit()
                if meter.add(k):
                    return
    finally:
        await c.stop()


def run_driftline(bootstrap: str, topic: str, n: int) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from driftline.collector.config import CollectorSettings
    from driftline.collector.consume import BatchConsumer
    from driftline.sdk.contract import Topics

    meter = Meter(n, "driftline BatchConsumer")
    prefix = topic.rsplit(".", 1)[0]

    class Sink:  # the pipeline's place: counts what it is handed
        stop = threading.Event()

        def process(self, records: Any) -> None:
            if meter.add(len(records)):
                os._exit(0)

    settings = CollectorSettings(kafka_bootstrap=bootstrap, topics=Topics.with_prefix(prefix),
                                 group_id=f"dl-{topic}", batch_timeout_s=0.5)
    with ThreadPoolExecutor(1) as ex:
        asyncio.run(BatchConsumer(settings, Sink(), ex).run())  # type: ignore[arg-type]


def run_faust(bootstrap: str, topic: str, n: int) -> None:
    import faust

    app = faust.App(f"faust-{topic}", broker=f"kafka://{bootstrap}", value_serializer="raw", key_serializer="raw",
                    store="memory://", web_enabled=False, topic_partitions=4, topic_allow_declare=False,
                    consumer_auto_offset_reset="earliest", stream_buffer_maxsize=1000,
                    consumer_max_fetch_size=1 << 20, table_standby_replicas=1, datadir=f"/tmp/bench-faust-{topic}",
                    broker_session_timeout=10, broker_rebalance_timeout=10, broker_heartbeat_interval=1.0)
    source = app.topic(topic, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw",
                       partitions=4)
    meter = Meter(n, "faust-streaming agent (take_events)")

    @app.agent(source)
    async def consume(stream: Any) -> None:
        async for events in stream.take_events(25_000, within=0.5):
            if meter.add(len(events)):
                os._exit(0)

    faust.Worker(app, loglevel="WARNING", quiet=True, override_logging=False).execute_from_commandline()


if __name__ == "__main__":
    impl, bootstrap, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if impl == "aiokafka":
        asyncio.run(run_aiokafka(bootstrap, topic, count))
    elif impl == "driftline":
        run_driftline(bootstrap, topic, count)
    else:
        run_faust(bootstrap, topic, count)
