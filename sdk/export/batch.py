"""The batching exporter: one worker thread between the hot path and a transport.

Shape follows OpenTelemetry's ``BatchSpanProcessor`` and sentry-python's background worker:

* ``submit(item)`` is the hot path. It appends to a bounded deque and returns; it never blocks and
  never raises. When the queue is full the item is dropped and counted as ``queue_full``.
* One worker thread per process wakes when a batch is full or ``schedule_delay_s`` has passed,
  turns items into records (``encode``) and hands them to ``Exporter.export``.
* A batch the transport could not take stays pending and is retried with jittered exponential
  backoff; items keep queueing behind it up to the bound. So a broker outage loses nothing that
  fits in the queue, and everything beyond is counted.
* ``flush(timeout_s)`` and ``shutdown(timeout_s)`` return within their timeouts: ``shutdown`` runs
  every step (flush, transport shutdown, worker join) against one deadline. What is still
  undelivered when it gives up is counted as ``shutdown``; if the transport delivers some of it
  after all, the counts are corrected (``exported`` up, ``shutdown`` down), so queued events always
  equal exported plus dropped.
* After ``fork()`` the child starts with an empty queue and a fresh worker and transport (the
  parent's thread does not exist in the child, and sockets must not be shared).
* At interpreter exit every exporter is shut down within one shared bound (before ``threading``
  joins the remaining threads, so the transport may still start one; Python 3.12 forbids that in
  ``atexit``).

Drop reasons: ``queue_full``, ``shutdown``, ``serialize_error``, ``invalid_event``, ``broker_error``
(a record the transport rejected as permanently undeliverable, e.g. too large).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

logger = logging.getLogger("driftline.sdk")

DROP_REASONS = ("queue_full", "shutdown", "serialize_error", "invalid_event", "broker_error")


@dataclass(frozen=True)
class ExportResult:
    """What a transport did with one batch: indexes of records to retry, and permanent failures."""

    retry: tuple[int, ...] = ()
    rejected: int = 0

    @property
    def ok(self) -> bool:
        return not self.retry


class Exporter(Protocol):
    """A transport for encoded records. ``export`` must not raise for transient failures;
    it returns which records to retry."""

    def export(self, records: Sequence[Record], timeout_s: float) -> ExportResult: ...

    def shutdown(self, timeout_s: float) -> None: ...


@dataclass(frozen=True)
class Record:
    """One encoded event: Kafka topic, key and JSON value."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class ExporterStats:
    """A snapshot of the exporter's counters, readable by users (``Monitor.stats()``)."""

    queued: int
    pending_retry: int
    exported: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class BatchExporter:
    """Bounded queue + one worker thread feeding an :class:`Exporter`.

    ``encode(item) -> Record`` runs on the worker thread, off the hot path; it raises
    :class:`~driftline.sdk.errors.SchemaError` for an invalid event (counted ``invalid_event``)
    or any other exception for unserialisable data (counted ``serialize_error``).
    """

    def __init__(
        self,
        exporter_factory: Callable[[], Exporter],
        encode: Callable[[Any], Record],
        *,
        max_queue_size: int = 100_000,
        max_batch_size: int = 1_000,
        schedule_delay_s: float = 0.2,
        export_timeout_s: float = 10.0,
        max_backoff_s: float = 5.0,
        on_invalid: Callable[[Exception], None] | None = None,
    ) -> None:
        if max_queue_size < 1 or max_batch_size < 1:
            from driftline.sdk.errors import ConfigError

            raise ConfigError("max_queue_size and max_batch_size must be at least 1")
        self._exporter_factory = exporter_factory
        self._encode = encode
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.schedule_delay_s = schedule_delay_s
        self.export_timeout_s = export_timeout_s
        self.max_backoff_s = max_backoff_s
        self._on_invalid = on_invalid
        self._init_state()
        _register_instance(self)

    # -- state that must be rebuilt after fork -------------------------------------------
    def _init_state(self) -> None:
        self._queue: collections.deque[Any] = collections.deque()
        self._pending: list[Record] = []  # encoded records awaiting a (re)try
        self._drops = {reason: 0 for reason in DROP_REASONS}
        self._exported = 0
        self._lock = threading.Lock()  # guards counters and _pending
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._in_flight_items = 0
        self._accounted_at_shutdown = False  # the in-flight batch was already counted as lost
        self._closed = False
        self._exporter: Exporter | None = None
        self._worker: threading.Thread | None = None
        self._pid = os.getpid()

    def _after_fork_in_child(self) -> None:
        self._init_state()

    # -- hot path ---------------------------------------------------------------------------
    def submit(self, item: Any) -> bool:
        """Queue ``item``; never blocks, never raises. Returns False if it was dropped."""
        try:
            if self._closed:
                self._count_drop("shutdown")
                return False
            queue = self._queue
            depth = len(queue)
            if depth + len(self._pending) + self._in_flight_items >= self.max_queue_size:
                self._count_drop("queue_full")
                return False
            queue.append(item)
            if self._worker is None:  # first use, or first use after fork (the hook resets it)
                self._start_worker()
            elif depth + 1 == self.max_batch_size:  # one wake-up per full batch is enough
                self._wake.set()
            return True
        except Exception:  # a bug here must never reach the model server
            logger.exception("driftline: exporter submit failed")
            return False

    def _count_drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._drops[reason] += n

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(target=self._run, name="driftline-exporter", daemon=True)
            self._worker.start()

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff_s = 0.0
        while True:
            timeout = backoff_s if backoff_s else self.schedule_delay_s
            self._wake.wait(timeout)
            self._wake.clear()
            progressed = self._drain_once(force_all=False)
            if self._closed and not self._queue and not self._pending:
                return
            if progressed is False:
                backoff_s = min(self.max_backoff_s, max(0.05, backoff_s * 2)) * random.uniform(0.8, 1.2)
            else:
                backoff_s = 0.0
                if len(self._queue) >= self.max_batch_size:
                    self._wake.set()

    def _take_batch(self) -> list[Record]:
        with self._lock:
            # Items leave the queue under the lock, already counted as in flight, so shutdown()
            # (which counts what is lost under the same lock) sees each item exactly once. The
            # count goes up before the pops: an item stays inside the queue bound while in
            # flight, so the queue keeps the oldest events and drops the newest during an outage.
            batch = self._pending[: self.max_batch_size]
            queue = self._queue
            n = min(self.max_batch_size - len(batch), len(queue))
            self._in_flight_items = len(batch) + n
            del self._pending[: len(batch)]
            items = [queue.popleft() for _ in range(n)]
            if self._accounted_at_shutdown:
                # Appended by a submit() that raced shutdown(): too late to deliver, count it.
                self._drops["shutdown"] += n
                self._in_flight_items = 0
                return []
        for item in items:  # encoding runs outside the lock: it is the slow part
            try:
                batch.append(self._encode(item))
            except Exception as exc:  # noqa: BLE001 - counted and reported, never raised
                with self._lock:
                    self._in_flight_items -= 1
                    if self._accounted_at_shutdown:  # shutdown() counted it as lost; reclassify
                        self._drops["shutdown"] -= 1
                    self._drops[_unencodable_reason(exc)] += 1
                if self._on_invalid is not None:
                    self._on_invalid(exc)
        return batch

    def count_unencodable(self, exc: Exception) -> None:
        """Count an item its producer failed to encode before submitting it, as ``_take_batch``
        counts one that fails here: ``invalid_event`` or ``serialize_error``."""
        self._count_drop(_unencodable_reason(exc))
        if self._on_invalid is not None:
            self._on_invalid(exc)

    def _drain_once(self, *, force_all: bool) -> bool | None:
        """Export one batch. True: progress; False: transport failed; None: nothing to do."""
        with self._lock:
            self._in_flight += 1
        try:
            batch = self._take_batch()
            if not batch:
                self._in_flight_items = 0
                return None
            try:
                result = self._export(batch)
            except Exception:  # noqa: BLE001 - transport bug: keep the batch, retry later
                logger.warning("driftline: export failed; will retry", exc_info=True)
                result = ExportResult(retry=tuple(range(len(batch))))
            delivered = len(batch) - len(result.retry) - result.rejected
            with self._lock:
                self._in_flight_items = 0
                self._drops["broker_error"] += result.rejected
                self._exported += delivered
                if self._accounted_at_shutdown:
                    # shutdown() gave up on this batch and counted all of it as lost; correct that.
                    self._drops["shutdown"] -= delivered + result.rejected
                elif result.retry:
                    self._pending[:0] = [batch[i] for i in result.retry]
            return len(result.retry) < len(batch)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def _export(self, batch: list[Record]) -> ExportResult:
        exporter = self._exporter
        if exporter is None:
            exporter = self._exporter_factory()
            with self._lock:
                if self._closed:  # shutdown() ran meanwhile and closed no transport: open none now
                    return ExportResult(retry=tuple(range(len(batch))))
                self._exporter = exporter
        return exporter.export(batch, self.export_timeout_s)

    # -- control ------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything queued before the call is exported, or ``timeout_s`` passes.

        Returns True if the queue drained in time. Safe to call from any thread.
        """
        return self._flush_until(time.monotonic() + timeout_s)

    def _flush_until(self, deadline: float) -> bool:
        if self._worker is None and (self._queue or self._pending):
            self._start_worker()
        while True:
            with self._lock:
                empty = not self._queue and not self._pending and self._in_flight == 0
            if empty:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.set()
            with self._lock:
                self._idle.wait(min(remaining, 0.05))

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Flush, close the transport and stop the worker, all within ``timeout_s``.

        One deadline covers every step: the flush may use all of it, and the transport then gets
        only what is left (possibly nothing: it must abandon its in-flight records at once).
        Anything undelivered is counted as dropped with reason ``shutdown``. Returns True if
        everything was delivered.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._closed:
            return True
        drained = self._flush_until(deadline)
        with self._lock:
            self._closed = True
            # The batch the worker holds (inside the transport, perhaps) counts as lost too; if
            # it is delivered after all, _drain_once moves it from `shutdown` to `exported`.
            lost = len(self._queue) + len(self._pending) + self._in_flight_items
            self._accounted_at_shutdown = True
            self._queue.clear()
            self._pending.clear()
            self._drops["shutdown"] += lost
            exporter = self._exporter
        self._wake.set()
        if exporter is not None:
            try:
                exporter.shutdown(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001
                logger.warning("driftline: exporter shutdown failed", exc_info=True)
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            # Not needed for the counts; lets a worker whose export just returned finish its
            # bookkeeping before the caller reads stats(). A daemon thread: never waited past
            # the deadline.
            worker.join(max(0.0, deadline - time.monotonic()))
        return drained

    def stats(self) -> ExporterStats:
        with self._lock:
            return ExporterStats(
                queued=len(self._queue),
                pending_retry=len(self._pending),
                exported=self._exported,
                dropped=dict(self._drops),
            )


def _unencodable_reason(exc: Exception) -> str:
    from driftline.sdk.errors import SchemaError

    return "invalid_event" if isinstance(exc, SchemaError) else "serialize_error"


# -- process-wide hooks (fork and exit), holding exporters weakly ------------------------------
_instances: weakref.WeakSet[BatchExporter] = weakref.WeakSet()
_hooks_installed = False
_ATEXIT_TIMEOUT_S = 5.0


def _register_instance(exporter: BatchExporter) -> None:
    global _hooks_installed
    _instances.add(exporter)
    if not _hooks_installed:
        _hooks_installed = True
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork)
        _register_exit_flush(_flush_all_at_exit)


def _register_exit_flush(hook: Callable[[], None]) -> None:
    """Run ``hook`` at interpreter exit while threads may still be started. Python 3.12 refuses new
    threads once ``atexit`` callbacks run, and the Kafka client starts one to send; the hooks
    ``threading`` runs before it joins the remaining threads come earlier (what
    ``concurrent.futures`` uses for the same reason). ``atexit`` where that hook is missing."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(hook)
            return
        except RuntimeError:  # registered while the interpreter is already shutting down
            pass
    atexit.register(hook)


def _after_fork() -> None:
    for exporter in list(_instances):
        exporter._after_fork_in_child()


def _flush_all_at_exit() -> None:
    # One bound for the whole interpreter exit, however many exporters there are.
    deadline = time.monotonic() + _ATEXIT_TIMEOUT_S
    for exporter in list(_instances):
        try:
            exporter.shutdown(max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - never fail interpreter exit
            logger.warning("driftline: flush at exit failed", exc_info=True)
