"""``EventWorker``: the sidecar's events built and exported in a child process, not beside the proxy.

Why a process: an exporter thread in the proxy's interpreter shares its GIL, so the event loop waits
whenever the thread encodes a batch -- and waits for a whole scheduler slice when the thread holding
the GIL is descheduled on a busy machine. ``bench/bench_sidecar.py`` measured events on adding 223 %
to the sidecar's own p99 that way. Here the proxy only keeps each exchange's raw bytes and metadata
and, once per ``handoff_delay_s`` (or ``handoff_bytes``), pickles the batch into one pipe write,
and the child (:mod:`driftline.sdk.sidecar.event_process`) does extraction, validation, PII
masking, encoding and the Kafka produce.

Why 50 ms (``bench/sidecar.md``, ``bench/bench_sidecar_handoff.py``): a hand-off costs the loop ~25
µs for the write and the child's wake-up plus ~1 µs per exchange for the pickle, and the child a
wake-up and a read per batch. Shorter hand-offs make the child's CPU bursts shorter (at 500 req/s
1.7 ms per 50 ms batch, 0.5 ms per 10 ms one) but cost more CPU in both processes: at 10 ms, +9 µs
per request on the loop and +16 µs in the child at 500 req/s, twice the child's CPU per request at
200 req/s, and p99 on a loaded machine did not make up for it (worse in one run, better at 500 req/s
in another). Why 256 KiB: with large bodies a hand-off is pickled bodies; its frame header and
pickle are written apart (joined, the copy of a 1 MiB frame stalled the loop ~1.3 ms; apart 0.34
ms), and 256 KiB hand-offs cut the longest stall to ~0.2 ms at 0.86x the CPU per MiB. The pipe is
non-blocking: a write the pipe cannot take stays in the transport's buffer (counted against
``max_buffer_bytes``), never stalling the loop. Events wait up to 200 ms for their Kafka batch
anyway.

Never blocks, never silent:

* ``submit`` appends to a list and returns. When the pipe's buffer plus the pending batch passes
  ``max_buffer_bytes`` (the child cannot keep up), the request's events are dropped and counted
  (``driftline_sidecar_handoff_dropped_total{reason="buffer_full"}``); ``worker_down`` while no
  child runs.
* A child that dies is noticed at once (its exit is awaited), counted
  (``driftline_sidecar_event_worker_restarts_total``) and restarted (backing off if it dies again
  quickly). What it had been handed and not reported done is counted ``worker_died`` (requests);
  the events its exporter still held at its last report are counted as exporter drops ``worker_died``.
* ``stop`` (the application's cleanup, so SIGTERM/SIGINT of the sidecar) hands over the last batch,
  closes the pipe and waits for the child to flush its producer and exit, within ``stop_timeout_s``.
  A child that overruns is killed and what it had not confirmed is counted ``shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import sys
import time
from dataclasses import replace
from typing import Iterable

from driftline.sdk.export.batch import ExporterStats
from driftline.sdk.sidecar.event_process import WorkerConfig, WorkerReport, encode_frame, exchanges_frame
from driftline.sdk.sidecar.events import Exchange
from driftline.sdk.sidecar.metrics import SidecarMetrics

logger = logging.getLogger("driftline.sidecar")

_EMPTY = ExporterStats(0, 0, 0, {})


def _add(a: ExporterStats, b: ExporterStats) -> ExporterStats:
    dropped = dict(a.dropped)
    for reason, n in b.dropped.items():
        dropped[reason] = dropped.get(reason, 0) + n
    return ExporterStats(a.queued + b.queued, a.pending_retry + b.pending_retry, a.exported + b.exported, dropped)


def _handoff_drops(metrics: SidecarMetrics) -> dict[str, int]:
    return {s.labels["reason"]: int(s.value) for m in metrics.handoff_dropped.collect() for s in m.samples
            if s.name.endswith("_total") and s.value}


class EventWorker:
    """Hands :class:`~driftline.sdk.sidecar.events.Exchange` s to a child process (an ``EventSink``).

    ``await start()`` on the event loop before the first request, ``await stop()`` after the last
    (``driftline sidecar`` registers both with the application).
    """

    def __init__(self, config: WorkerConfig, metrics: SidecarMetrics, *, max_buffer_bytes: int = 64 * 1024 * 1024,
                 handoff_delay_s: float = 0.05, handoff_bytes: int = 256 * 1024, stop_timeout_s: float = 10.0,
                 restart_backoff_s: float = 0.5, python: str = sys.executable) -> None:
        self.config = config
        self.metrics = metrics
        self.max_buffer_bytes = max_buffer_bytes
        self.handoff_delay_s = handoff_delay_s
        self.handoff_bytes = handoff_bytes
        self.stop_timeout_s = stop_timeout_s
        self.restart_backoff_s = restart_backoff_s
        self._python = python
        self._proc: asyncio.subprocess.Process | None = None
        self._batch: list[Exchange] = []
        self._batch_bytes = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._handed = 0  # exchanges written to the current child
        self._report = WorkerReport(0, _EMPTY)  # the current child's last report
        self._past = _EMPTY  # counts of children that exited
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    # -- hot path -------------------------------------------------------------------------------
    def submit(self, exchange: Exchange) -> None:
        """Queue ``exchange`` for the next hand-off; never blocks, never raises."""
        try:
            proc = self._proc
            if proc is None or proc.returncode is not None or proc.stdin is None or proc.stdin.is_closing():
                self._drop("shutdown" if self._stopping else "worker_down")
                return
            size = 256 + len(exchange.request or b"") + len(exchange.response or b"")
            if proc.stdin.transport.get_write_buffer_size() + self._batch_bytes + size > self.max_buffer_bytes:
                self._drop("buffer_full")
                return
            self._batch.append(exchange)
            self._batch_bytes += size
            if self._batch_bytes >= self.handoff_bytes:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                self._flush()
            elif self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(self.handoff_delay_s, self._flush)
        except Exception:  # noqa: BLE001 - a bug here must never fail a proxied request
            logger.warning("driftline sidecar: could not hand an exchange over", exc_info=True)
            self._drop("worker_down")

    def _drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.metrics.handoff_dropped.labels(reason).inc(n)

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None or proc.stdin.is_closing():
            self._drop("worker_down", len(batch))
            return
        try:
            head, data = exchanges_frame(batch)
            proc.stdin.write(head)  # buffered by the transport; never blocks
            proc.stdin.write(data)
        except Exception:  # noqa: BLE001 - unpicklable exchange (a bug) or a pipe closing under us
            logger.warning("driftline sidecar: could not hand %d exchanges over", len(batch), exc_info=True)
            self._drop("worker_down", len(batch))
            return
        self._handed += len(batch)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The running child's process id (None before start or while it is being restarted)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        await self._spawn()
        self._watch = asyncio.get_running_loop().create_task(self._supervise())

    async def _spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            self._python, "-m", "driftline.sdk.sidecar.event_process", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        self._handed, self._report = 0, WorkerReport(0, _EMPTY)
        assert self._proc.stdin is not None
        self._proc.stdin.write(encode_frame(self.config))

    async def _read_reports(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                head = await proc.stdout.readexactly(4)
                body = await proc.stdout.readexactly(int.from_bytes(head, "big"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            report = pickle.loads(body)
            if isinstance(report, WorkerReport):
                self._report = report

    async def _supervise(self) -> None:
        """Run the child; when it dies (not stopped by us), count what it lost and start another."""
        backoff_s = self.restart_backoff_s
        while True:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            await self._read_reports(proc)
            code = await proc.wait()
            self._retire(final=self._stopping)
            if self._stopping:
                return
            self.restarts += 1
            self.metrics.worker_restarts.inc()
            logger.error("driftline sidecar: the event worker exited (code %s); restarting it", code)
            if time.monotonic() - started < 5.0:
                await asyncio.sleep(backoff_s)
                backoff_s = min(30.0, backoff_s * 2)
            else:
                backoff_s = self.restart_backoff_s
            while not self._stopping:
                try:
                    await self._spawn()
                    break
                except OSError as exc:  # e.g. out of processes: keep serving, keep counting, retry
                    logger.error("driftline sidecar: cannot start the event worker (%s); retrying", exc)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(30.0, backoff_s * 2)
            if self._stopping:
                return

    def _retire(self, *, final: bool) -> None:
        """Fold the exited child's counts into the totals, counting what it never confirmed."""
        report = self._report
        stats = report.stats
        unconfirmed = max(0, self._handed - report.done)
        lost_events = 0 if report.final else stats.queued + stats.pending_retry
        reason = "shutdown" if final else "worker_died"
        self._drop(reason, unconfirmed)
        if lost_events:
            stats = replace(stats, queued=0, pending_retry=0,
                            dropped={**stats.dropped, reason: stats.dropped.get(reason, 0) + lost_events})
        self._past = _add(self._past, replace(stats, queued=0, pending_retry=0))
        self._handed, self._report = 0, WorkerReport(0, _EMPTY)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Hand over the last batch, close the pipe, let the child flush and exit (bounded)."""
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        self._stopping = True
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            try:
                await asyncio.wait_for(proc.stdin.drain(), timeout_s)
            except (ConnectionError, TimeoutError):
                pass
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            logger.error("driftline sidecar: the event worker did not finish within %g s; killing it", timeout_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        watch = self._watch
        if watch is None:
            self._retire(final=True)
        else:
            # The supervisor reads the child's last report and retires it; if it is backing off
            # before a restart (the child had died before the stop), there is nothing left to wait for.
            try:
                await asyncio.wait_for(asyncio.shield(watch), 2.0)
            except TimeoutError:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        dropped = {reason: n for reason, n in self._past.dropped.items() if n}
        handoff = _handoff_drops(self.metrics)
        if dropped or handoff:
            logger.warning("driftline: %d events were dropped (%s); %d requests' events were never handed to "
                           "the event worker (%s)", sum(dropped.values()), dropped, sum(handoff.values()), handoff)

    def exporter_stats(self) -> Iterable[ExporterStats]:
        """The exporter counts of every child so far (for the sidecar's metrics)."""
        return [self._past, self._report.stats]
