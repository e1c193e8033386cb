"""Kafka transport for the batching exporter (kafka-python, acks=all, compressed).

The producer is created lazily on the exporter's worker thread, so constructing a ``Monitor``
never touches the network and a forked child builds its own connection.

Failure handling: ``export`` sends the batch, flushes within the timeout and reports every record
whose delivery failed with a retriable error for retry by the batch exporter (which backs off and
tries again until the broker is back). Records the broker refuses permanently (too large, invalid)
are counted as ``broker_error`` drops. A record may be delivered twice when an ack is lost; the
collector stores each ``event_id`` once.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from driftline.sdk.exporter import ExportResult, Record

logger = logging.getLogger("driftline.sdk")


def _permanent_errors() -> tuple[type[BaseException], ...]:
    from kafka import errors

    names = ("MessageSizeTooLargeError", "RecordListTooLargeError", "InvalidRecordError", "CorruptRecordError",
             "TopicAuthorizationFailedError", "InvalidTopicError")
    return tuple(getattr(errors, n) for n in names if hasattr(errors, n))


_PERMANENT: tuple[type[BaseException], ...] = ()


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
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.compression_type = _default_compression() if compression_type == "auto" else compression_type
        self.client_id = client_id
        self.max_request_size = max_request_size
        self._extra = dict(extra or {})
        self._producer: Any = None

    def _get_producer(self) -> Any:
        global _PERMANENT
        if not _PERMANENT:
            _PERMANENT = _permanent_errors()
        if self._producer is None:
            from kafka import KafkaProducer  # imported lazily: keeps `import driftline.sdk` fast

            self._producer = KafkaProducer(
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
                max_block_ms=2_000,
                request_timeout_ms=5_000,
                delivery_timeout_ms=8_000,
                retries=3,
                retry_backoff_ms=100,
                reconnect_backoff_ms=50,
                reconnect_backoff_max_ms=1_000,
                **self._extra,
            )
        return self._producer

    def export(self, records: Sequence[Record], timeout_s: float) -> ExportResult:
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        deadline = time.monotonic() + timeout_s
        try:
            producer = self._get_producer()
        except Exception as exc:  # noqa: BLE001 - no broker yet: retry the whole batch
            logger.warning("driftline: Kafka unavailable (%s); %d events wait in the queue",
                           type(exc).__name__, len(records))
            return ExportResult(retry=tuple(range(len(records))))
        futures: list[Any] = []
        retry: list[int] = []
        rejected = 0
        for i, record in enumerate(records):
            try:
                futures.append((i, producer.send(record.topic, key=record.key, value=record.value)))
            except MessageSizeTooLargeError:
                rejected += 1
            except KafkaError:
                retry.append(i)
            except Exception:  # noqa: BLE001
                retry.append(i)
            if time.monotonic() > deadline:
                retry.extend(range(i + 1, len(records)))
                break
        try:
            producer.flush(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - timed out: the futures below tell which failed
            pass
        for i, future in futures:
            if not future.is_done:
                retry.append(i)
                continue
            exc = future.exception
            if exc is None:
                continue
            if isinstance(exc, _PERMANENT):
                rejected += 1
            else:  # timeouts, lost leaders, a broker that restarted, fatal producer state: retry
                retry.append(i)
        if retry:
            logger.warning("driftline: %d of %d events not acknowledged by Kafka; retrying",
                           len(retry), len(records))
            if len(retry) == len(records):
                # Nothing got through: start over with a fresh producer next time, in case this
                # one is stuck in a fatal state (e.g. after the broker was replaced).
                self._reset_producer()
        return ExportResult(retry=tuple(sorted(set(retry))), rejected=rejected)

    def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # noqa: BLE001
                pass

    def shutdown(self, timeout_s: float) -> None:
        if self._producer is not None:
            self._producer.close(timeout=timeout_s)
            self._producer = None
