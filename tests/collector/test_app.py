"""The collector's 1 s timer under faust's own timer loop (``mode.timers.Timer``), driven by an
injected clock: a tick stuck behind a busy storage thread no longer makes the timer overlap
(issue 17: "Timer tick is overlapping" 3-35 times a run)."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import pytest
from mode.timers import Timer
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

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def _run_timer(clock: Clock, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        n = 0
        async for _ in Timer(INTERVAL_S, name="tick", clock=clock, sleep=clock.sleep):
            await body()
            n += 1
            if n == ITERATIONS:
                return

    asyncio.run(main())


def _overlaps(caplog: pytest.LogCaptureFixture) -> int:
    return sum("is overlapping" in r.getMessage() for r in caplog.records)


def test_a_tick_that_waits_for_the_storage_thread_overlaps(caplog: pytest.LogCaptureFixture) -> None:
    """The old body (await the tick on the storage thread): the test's control."""
    clock = Clock()
    executor = ThreadPoolExecutor(max_workers=1)

    def slow_tick() -> None:  # the storage thread was busy: 1.5 timer intervals pass
        clock.t += 1.5 * INTERVAL_S

    async def body() -> None:
        await asyncio.get_running_loop().run_in_executor(executor, slow_tick)

    with caplog.at_level(logging.WARNING, logger="mode.timers"):
        _run_timer(clock, body)
    executor.shutdown()
    assert _overlaps(caplog) >= ITERATIONS - 2


def test_ticks_never_overlap_and_the_skipped_ones_are_counted(caplog: pytest.LogCaptureFixture) -> None:
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

    with caplog.at_level(logging.WARNING, logger="mode.timers"):
        _run_timer(clock, body)
    busy.set()
    ticks.wait(30)
    assert _overlaps(caplog) == 0
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
