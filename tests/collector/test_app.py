"""The collector's 1 s tick never waits for the storage thread (issue 17: faust's timer logged "Timer
tick is overlapping" 3-35 times a run while its body awaited a tick stuck behind a batch being
stored): ``TickScheduler.submit`` returns at once, runs one tick at a time and counts the skipped ones."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from driftline.collector.app import TickScheduler
from driftline.collector.metrics import CollectorMetrics

INTERVAL_S = 1.0
ITERATIONS = 8


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _run_timer(clock: Clock, body: Callable[[], Awaitable[None]]) -> None:
    """ITERATIONS timer intervals, as the consumer's tick loop runs them."""
    async def main() -> None:
        for _ in range(ITERATIONS):
            await body()
            clock.t += INTERVAL_S

    asyncio.run(main())


def test_ticks_never_overlap_and_the_skipped_ones_are_counted() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    executor = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()
    ran: list[float] = []

    def tick(now_s: float) -> None:  # the storage thread stays busy until the timer is done
        busy.wait(30)
        ran.append(now_s)

    ticks = TickScheduler(executor, tick, metrics.ticks_skipped)

    async def body() -> None:
        ticks.submit(clock())

    _run_timer(clock, body)
    # Every body returned while the storage thread was still held (no tick could have finished).
    assert ran == []
    busy.set()
    ticks.wait(30)
    assert len(ran) == 1  # the first tick ran once the thread was free; the others were skipped
    assert registry.get_sample_value("driftline_collector_ticks_skipped_total") == ITERATIONS - 1
    # Free again: the next tick is queued and runs.
    assert ticks.submit(clock()) is True
    ticks.wait(30)
    assert len(ran) == 2
    executor.shutdown()


def test_a_failing_tick_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    calls: list[Any] = []

    def tick(now_s: float) -> None:
        calls.append(now_s)
        if len(calls) == 1:
            raise RuntimeError("boom")

    ticks = TickScheduler(executor, tick, skipped=None)
    with caplog.at_level(logging.ERROR, logger="driftline.collector"):
        ticks.submit(1.0)
        ticks.wait(30)
        ticks.submit(2.0)
        ticks.wait(30)
    executor.shutdown()
    assert calls == [1.0, 2.0]
    assert sum("collector tick failed" in r.getMessage() for r in caplog.records) == 1
