"""``Client``: one batching exporter and one transport per process, shared by every ``Monitor``.

The shape of sentry-python's ``Client`` and OpenTelemetry's ``TracerProvider``: the Client owns
the expensive parts (the bounded queue, the worker thread, the Kafka producer) and each
:class:`~driftline.sdk.monitor.Monitor` is a cheap handle on it that only knows its model, version,
tags and denylist. A thousand Monitors make one thread and one producer.

>>> from driftline.sdk import Client, InMemoryExporter, Monitor
>>> sink = InMemoryExporter()
>>> client = Client(exporter=sink)
>>> a, b = Monitor("churn", "1", client=client), Monitor("churn", "2", client=client)
>>> _ = a.log({"x": 1}, 0.5); _ = b.log({"x": 2}, 0.7)
>>> client.shutdown(timeout_s=2.0)
True
>>> sorted(e["model_version"] for e in sink.events())
['1', '2']

Which Client a Monitor uses:

* ``Monitor(..., client=c)``: ``c``. The caller owns it and shuts it down.
* ``Monitor(..., exporter=e)``: a private Client around ``e``, owned by that Monitor (as before
  Clients existed: tests that give each Monitor an ``InMemoryExporter`` keep separate counts).
* neither: the process's default Client for the Monitor's settings (:func:`default_client`), built
  lazily and thread-safely on first use. Monitors whose settings agree on where and how events are
  exported (bootstrap servers, compression, queue and batch size, flush interval) share it: in a
  normal process there is exactly one. Topics and the denylist are per Monitor (applied when an
  event is encoded), so they may differ between Monitors on one Client.

Shutting down: ``Client.shutdown(timeout_s)`` flushes, closes the transport and stops the worker
within one deadline; what it could not deliver is counted as ``shutdown`` drops. At interpreter
exit every Client is shut down within one shared bound (the batch exporter's exit hook, one per
Client). After ``fork()`` the child's Clients start with an empty queue and build a fresh worker
and producer on first use. See :meth:`Monitor.close` for what closing a handle does.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from driftline.sdk.config import SdkSettings
from driftline.sdk.export.batch import BatchExporter, Exporter, ExporterStats, Record

# A default Client is shared by Monitors whose settings agree on these fields.
_EXPORT_FIELDS = ("kafka_bootstrap", "compression", "queue_size", "batch_size", "flush_interval_s")


def _encode_item(item: tuple[Any, ...]) -> Record:
    # Every queued item starts with the handle that logged it; the handle encodes it (its model,
    # version, tags, topics and denylist), on the worker thread, off the hot path.
    return item[0]._encode(item)


def _encoded(record: Record) -> Record:
    return record


class Client:
    """One batching exporter and its transport, shared by the Monitors built on it.

    Parameters
    ----------
    settings:
        :class:`SdkSettings` for the queue, batches and the Kafka transport; defaults to
        ``SdkSettings.from_env()``. Monitors built with ``client=`` and no ``settings`` use these.
    exporter:
        A transport such as :class:`InMemoryExporter`; when omitted, a :class:`KafkaExporter` is
        built from ``settings`` on the worker thread the first time a batch goes out.
    encode_on_submit:
        Validate, mask and encode each event on the thread that logs it, so the worker thread only
        exports. For callers that are themselves background workers (the sidecar's event process):
        the work then runs in one pass right after the event is built, with warm caches, instead
        of in a second thread that wakes up to redo the walk. Default False: ``Monitor.log`` in a
        model server must stay cheap.

    Example: one Client for every model a server hosts, shut down once::

        client = Client(SdkSettings.from_env())
        monitors = {name: Monitor(name, version, client=client) for name, version in models}
        ...
        client.shutdown(timeout_s=5.0)
    """

    def __init__(self, settings: SdkSettings | None = None, *, exporter: Exporter | None = None,
                 encode_on_submit: bool = False) -> None:
        self.settings = settings if settings is not None else SdkSettings.from_env()
        if exporter is None:
            bootstrap, compression = self.settings.kafka_bootstrap, self.settings.compression

            def factory() -> Exporter:
                # Imported here: kafka-python loads only when the first batch goes out.
                from driftline.sdk.export.kafka import KafkaExporter

                return KafkaExporter(bootstrap, compression_type=compression)
        else:

            def factory() -> Exporter:
                return exporter

        self._batcher = BatchExporter(
            factory,
            _encoded if encode_on_submit else _encode_item,
            max_queue_size=self.settings.queue_size,
            max_batch_size=self.settings.batch_size,
            schedule_delay_s=self.settings.flush_interval_s,
        )
        # The hot path: Monitor binds this once. BatchExporter.submit never blocks and never raises.
        self._submit = self._encode_and_submit if encode_on_submit else self._batcher.submit
        self._handles = 0  # open Monitors on a default Client (see release())

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` ran: later events are counted as ``shutdown`` drops."""
        return self._batcher._closed

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every event queued so far (by any Monitor on this Client) is delivered (True)
        or ``timeout_s`` passes (False; the events stay queued)."""
        return self._batcher.flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Flush, close the transport and stop the worker, all within one ``timeout_s`` deadline.

        Returns True if everything was delivered; what was not is counted as ``shutdown`` drops, so
        events logged equal ``exported`` plus ``dropped``. Idempotent.
        """
        return self._batcher.shutdown(timeout_s)

    def stats(self) -> ExporterStats:
        """Queue depth, exported count and drops by reason, over every Monitor on this Client."""
        return self._batcher.stats()

    def _encode_and_submit(self, item: tuple[Any, ...]) -> bool:
        """``encode_on_submit``: the handle encodes ``item`` here; the batcher gets the record."""
        try:
            record = item[0]._encode(item)
        except Exception as exc:  # noqa: BLE001 - counted by reason as the worker counts it, never raised
            self._batcher.count_unencodable(exc)
            return False
        return self._batcher.submit(record)

    def _drop_closed(self, item: Any) -> bool:
        """What a closed Monitor submits instead of queueing: counts a ``shutdown`` drop."""
        self._batcher._count_drop("shutdown")
        return False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


# -- the process's default Clients -------------------------------------------------------------
_defaults: dict[tuple[Any, ...], Client] = {}
_defaults_lock = threading.Lock()
_fork_hook_installed = False


def _export_key(settings: SdkSettings) -> tuple[Any, ...]:
    return tuple(getattr(settings, name) for name in _EXPORT_FIELDS)


def _default_locked(settings: SdkSettings) -> Client:
    global _fork_hook_installed
    key = _export_key(settings)
    client = _defaults.get(key)
    if client is None or client.closed:
        client = _defaults[key] = Client(settings)
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        _fork_hook_installed = True  # installed on first use: importing the SDK changes nothing
        os.register_at_fork(after_in_child=_after_fork_in_child)
    return client


def default_client(settings: SdkSettings | None = None) -> Client:
    """The process's default Client for ``settings`` (default: ``SdkSettings.from_env()``).

    Built on first use, thread-safely; later calls with settings that agree on the export fields
    return the same Client. One that was shut down is replaced by a new one.
    """
    settings = settings if settings is not None else SdkSettings.from_env()
    with _defaults_lock:
        return _default_locked(settings)


def acquire_default(settings: SdkSettings) -> Client:
    """The default Client for ``settings``, counting one more open Monitor on it."""
    with _defaults_lock:
        client = _default_locked(settings)
        client._handles += 1
        return client


def release_default(client: Client, timeout_s: float) -> bool:
    """A Monitor on the default ``client`` closes: the last one open shuts the Client down (one
    deadline, drops counted); an earlier one only flushes, so the other Monitors keep logging."""
    key = _export_key(client.settings)
    with _defaults_lock:
        client._handles -= 1
        last = client._handles <= 0
        if last and _defaults.get(key) is client:
            del _defaults[key]  # the next Monitor for these settings gets a fresh default Client
    return client.shutdown(timeout_s) if last else client.flush(timeout_s)


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time stays held forever in the child. The Clients
    # themselves need nothing: each one's batch exporter resets itself after fork.
    global _defaults_lock
    _defaults_lock = threading.Lock()
