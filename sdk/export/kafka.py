"""Kafka transport for the batching exporter (kafka-python, acks=all, compressed).

The producer is created lazily on the exporter's worker thread, so constructing a ``Monitor``
never touches the network and a forked child builds its own connection.

Failure handling: ``export`` sends the batch, flushes within the timeout and reports every record
whose delivery failed with a retriable error for retry by the batch exporter (which backs off and
tries again until the broker is back). Records the broker refuses permanently (too large, invalid)
are counted as ``broker_error`` drops. A record may be delivered twice when an ack is lost; the
collector stores each ``event_id`` once. Events are framed into Kafka records by
:func:`driftline.sdk.contract.wire.pack`, which the collector reads back with ``unpack``.
:meth:`KafkaExporter.send` sends ready-made Kafka records (topic, key, value, headers) unframed
through the same producer lifecycle: the collector's dead letters go out that way.

Deadlines: ``export(records, timeout_s)`` and ``shutdown(timeout_s)`` return within their timeout
whatever the broker does (down, refusing connections, or paused and silent). kafka-python's own
waits do not compose into one deadline, so each is bounded here: building a producer waits for
the cluster at most the time left (``bootstrap_timeout_ms``, ``api_version_auto_timeout_ms`` in
kafka-python 2.x), every ``send`` waits for metadata at most the time left (``max_block_ms``), the
acks are awaited against the same deadline, and a producer is closed without its ``flush`` (see
:func:`_close_producer`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

from driftline.sdk.contract.wire import pack
from driftline.sdk.export.batch import ExportResult, Record

logger = logging.getLogger("driftline.sdk")

# What goes out as one Kafka record: topic, key, the indexes of the records it carries, value, headers.
Chunk = tuple[str, bytes | None, list[int], bytes, list[tuple[str, bytes]]]
Message = tuple[str, bytes | None, bytes, Sequence[tuple[str, bytes]]]
"""A ready-made Kafka record for :meth:`KafkaExporter.send`: topic, key (or None), value, headers."""


def _permanent_errors() -> tuple[type[BaseException], ...]:
    from kafka import errors

    names = ("MessageSizeTooLargeError", "RecordListTooLargeError", "InvalidRecordError", "CorruptRecordError",
             "TopicAuthorizationFailedError", "InvalidTopicError")
    return tuple(getattr(errors, n) for n in names if hasattr(errors, n))


_PERMANENT: tuple[type[BaseException], ...] = ()


# kafka-python blocks in send() (metadata) for at most max_block_ms; export() lowers it per call to
# what is left of its deadline, never above this.
_MAX_BLOCK_MS = 2_000


def _bootstrap_timeout_key() -> str:
    """kafka-python 3 bounds the cluster bootstrap in ``KafkaProducer()`` with
    ``bootstrap_timeout_ms`` (default 30 s); 2.x bounds its version probe with
    ``api_version_auto_timeout_ms``."""
    from kafka import KafkaProducer

    return "bootstrap_timeout_ms" if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG else "api_version_auto_timeout_ms"


def _skip_flush(timeout: float | None = None) -> None:
    return None


def _close_producer(producer: Any, timeout_s: float) -> None:
    """Close a kafka-python producer within about ``timeout_s``, abandoning what it still holds.

    ``KafkaProducer.close(timeout)`` starts with ``flush(timeout)``, which waits up to the timeout
    *for each batch* and raises when one is late, leaving the producer open with its I/O thread
    still retrying (so ``close(timeout=0)`` never closed a producer that had records in flight);
    when the flush succeeds, close then waits up to the timeout again for the I/O thread. Our
    callers have already waited for the acks they want, so the flush is skipped: close gives the
    I/O thread at most ``timeout_s`` to finish and then force-closes it, failing whatever is left.
    """
    producer.flush = _skip_flush  # an instance attribute shadows the method, for this producer only
    try:
        producer.close(timeout=max(0.0, timeout_s))
    except Exception:  # noqa: BLE001 - a producer that will not close is abandoned, not fatal
        logger.warning("driftline: closing the Kafka producer failed", exc_info=True)


def _default_compression() -> str:
    try:
        import lz4  # noqa: F401

        return "lz4"
    except ImportError:
        return "gzip"


class KafkaExporter:
    """Send records to Kafka.

    Parameters
    ----------
    bootstrap_servers:
        ``host:port[,host:port]`` of the Kafka cluster (or the embedded Tansu broker).
    compression_type:
        ``lz4`` when the lz4 package is importable, else ``gzip``; or ``None``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        compression_type: str | None = "auto",
        client_id: str = "driftline-sdk",
        max_request_size: int = 8 * 1024 * 1024,
        max_record_bytes: int = 128 * 1024,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.compression_type = _default_compression() if compression_type == "auto" else compression_type
        self.client_id = client_id
        self.max_request_size = max_request_size
        self.max_record_bytes = max_record_bytes
        self._extra = dict(extra or {})
        # export() runs on the batch exporter's worker while shutdown() runs on the caller's
        # thread, and neither waits for the other past its deadline: the lock guards only the
        # handover of the producer, never a network wait.
        self._lock = threading.Lock()
        self._producer: Any = None
        self._closed = False

    def _get_producer(self, timeout_s: float) -> Any:
        global _PERMANENT
        if not _PERMANENT:
            _PERMANENT = _permanent_errors()
        with self._lock:
            producer = self._producer
        if producer is None:
            from kafka import KafkaProducer  # imported lazily: keeps `import driftline.sdk` fast

            config = {_bootstrap_timeout_key(): max(1, int(timeout_s * 1000)), **self._extra}
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap_servers.split(","),
                client_id=self.client_id,
                acks="all",
                # Idempotence needs producer ids the broker keeps; an embedded broker restarted with
                # memory storage forgets them and the producer turns fatal. Duplicates from a lost
                # ack are harmless: the collector stores each event_id once.
                enable_idempotence=False,
                compression_type=self.compression_type,
                linger_ms=5,
                batch_size=256 * 1024,
                max_request_size=self.max_request_size,
                max_block_ms=_MAX_BLOCK_MS,
                request_timeout_ms=5_000,
                delivery_timeout_ms=8_000,
                # No retries inside kafka-python: a batch it re-sent after the embedded broker
                # restarted went out with the old metadata, was acknowledged and never became
                # readable (Tansu). The exporter retries failed batches itself, on a fresh producer.
                retries=0,
                retry_backoff_ms=100,
                reconnect_backoff_ms=50,
                reconnect_backoff_max_ms=1_000,
                **config,
            )
            with self._lock:
                closed = self._closed
                if not closed:
                    self._producer = producer
            if closed:  # shutdown() ran while the producer was being built: do not leak it
                _close_producer(producer, 0)
        return producer

    def export(self, records: Sequence[Record], timeout_s: float) -> ExportResult:
        """Send ``records`` and wait for their acks, returning within ``timeout_s``.

        Records not acknowledged by then are returned for retry. After :meth:`shutdown` nothing
        is sent: every record is returned for retry (the batch exporter has counted them).
        """
        return self._send(pack(records, self.max_record_bytes), len(records), timeout_s)

    def send(self, messages: Sequence[Message], timeout_s: float) -> ExportResult:
        """Send ready-made Kafka records ``(topic, key, value, headers)`` as they are (no framing)
        and wait for their acks, returning within ``timeout_s``; indexes in the result refer to
        ``messages``. Same producer, deadlines and fresh-producer-after-failure as :meth:`export`.
        """
        chunks = [(topic, key, [i], value, list(headers)) for i, (topic, key, value, headers) in enumerate(messages)]
        return self._send(chunks, len(messages), timeout_s)

    def _send(self, chunks: Sequence[Chunk], n_records: int, timeout_s: float) -> ExportResult:
        """Send ``chunks`` (Kafka records holding the indexes of ``n_records`` records) within
        ``timeout_s``; the indexes of what was not acknowledged come back for retry."""
        from kafka.errors import MessageSizeTooLargeError

        deadline = time.monotonic() + timeout_s
        everything = ExportResult(retry=tuple(range(n_records)))
        if self._closed:
            return everything
        try:
            producer = self._get_producer(timeout_s)
        except Exception as exc:  # noqa: BLE001 - no broker yet: retry the whole batch
            logger.warning("driftline: Kafka unavailable (%s); %d events wait in the queue",
                           type(exc).__name__, n_records)
            return everything
        futures: list[tuple[list[int], Any]] = []
        retry: list[int] = []
        rejected = 0
        for n, (topic, key, indexes, value, headers) in enumerate(chunks):
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                for _, _, rest, _, _ in chunks[n:]:
                    retry.extend(rest)
                break
            # send() waits for the topic's metadata up to config["max_block_ms"], read at each
            # call (kafka-python 2.x and 3.x): cap it by what is left of this export's deadline.
            producer.config["max_block_ms"] = min(_MAX_BLOCK_MS, remaining_ms)
            try:
                futures.append((indexes, producer.send(topic, key=key, value=value, headers=headers)))
            except MessageSizeTooLargeError:
                rejected += len(indexes)
            except Exception:  # noqa: BLE001 - KafkaError and friends: retry this chunk
                retry.extend(indexes)
        # Not producer.flush(timeout): it waits up to the timeout for each batch in turn. The
        # records go out on their own after linger_ms; wait for their acks against the deadline.
        for _, future in futures:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                break
            if not future.is_done:
                try:
                    future.get(timeout=remaining_s)
                except Exception:  # noqa: BLE001 - timed out or failed: sorted out below
                    pass
        for indexes, future in futures:
            if not future.is_done:
                retry.extend(indexes)
                continue
            exc = future.exception
            if exc is None:
                continue
            if isinstance(exc, _PERMANENT):
                rejected += len(indexes)
            else:  # timeouts, lost leaders, a broker that restarted, fatal producer state: retry
                retry.extend(indexes)
        if retry:
            logger.warning("driftline: %d of %d events not acknowledged by Kafka; retrying",
                           len(retry), n_records)
            # Start over with a fresh producer next time. A producer that saw failures may hold
            # metadata from a broker that was replaced: the embedded broker (memory storage) was
            # seen to acknowledge records sent with such metadata to a topic it had not created,
            # and keep none of them. A fresh producer asks for metadata first, which recreates
            # the topic. Failures are rare, so the reconnect costs nothing that matters.
            self._reset_producer(producer)
        return ExportResult(retry=tuple(sorted(set(retry))), rejected=rejected)

    def _reset_producer(self, producer: Any) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        _close_producer(producer, 0)  # force: what it still holds is retried by the caller

    def shutdown(self, timeout_s: float) -> None:
        """Close the producer within ``timeout_s``: what it still holds after that is abandoned
        (the batch exporter has counted it). Later exports send nothing."""
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            _close_producer(producer, timeout_s)
