"""From one proxied exchange to prediction events: what the request path hands over, and who builds.

The proxy handler (:mod:`driftline.sdk.sidecar.proxy`) answers the caller and then hands an
:class:`Exchange` -- the raw bodies, the two headers extraction needs, and metadata -- to an
:class:`EventSink`. Everything else (decoding a copy, OIP binary tensors, extraction, one event per
row, validation, PII masking, JSON encoding, the Kafka produce) is the :class:`EventBuilder`'s work.

Two sinks:

* :class:`InlineEvents` builds on the event loop, into the Monitors a ``monitor_factory`` returns.
  What :func:`~driftline.sdk.sidecar.app.build_app` uses when it is given a ``monitor_factory``
  (tests, and users who embed the application with their own Monitors or in-memory exporter).
* :class:`~driftline.sdk.sidecar.event_worker.EventWorker` hands exchanges to a child process that
  runs the same :class:`EventBuilder`. What ``driftline sidecar`` and ``driftline serve`` use:
  measured in ``bench/bench_sidecar.py``, an exporter thread inside the proxy's interpreter costs
  the proxy's p99 (the event loop waits for the GIL, and waits longest when the thread holding it
  is descheduled on a busy machine).

>>> from driftline.sdk import InMemoryExporter, Monitor
>>> from driftline.sdk.sidecar.extraction import ExtractSpec
>>> sink = InMemoryExporter()
>>> builder = EventBuilder("m", ExtractSpec(), lambda v: Monitor("m", v, exporter=sink), tags={})
>>> builder.handle(Exchange("primary", "1", "r1", 0, 2.0, None, 200, b'{"a": 1}', None, None,
...                         b'{"prediction": 0.5}', None, None))
1
>>> builder.close(2.0)
True
>>> [(e["features"], e["prediction"]) for e in sink.events("prediction")]
[({'a': 1}, 0.5)]
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Protocol

from driftline.sdk.contract.variants import ROW_TAG
from driftline.sdk.export.batch import ExporterStats
from driftline.sdk.monitor import Monitor
from driftline.sdk.sidecar.extraction import ExtractSpec, Row
from driftline.sdk.sidecar.bodies import Readable, extract_rows, readable_parts

logger = logging.getLogger("driftline.sidecar")


class Exchange(NamedTuple):
    """One request/answer as the proxy saw it; a plain tuple, so handing it over is one cheap pickle.

    ``response`` is None when there is no answer to read (a transport error or an HTTP error status);
    ``streamed`` marks a streamed answer (SSE, NDJSON: no single prediction). ``rows`` are rows
    already extracted (``driftline serve``); the bodies are then unused.
    """

    variant: str
    version: str | None
    request_id: str
    timestamp_ns: int
    latency_ms: float | None
    error: str | None
    http_status: int | None
    request: bytes | None
    request_encoding: str | None
    request_header_len: str | None
    response: bytes | None
    response_encoding: str | None
    response_header_len: str | None
    streamed: bool = False
    rows: list[Row] | None = None


class EventSink(Protocol):
    """Where the proxy hands exchanges. ``submit`` never blocks and never raises.

    :func:`~driftline.sdk.sidecar.app.build_app` awaits ``start()`` when the application starts and
    ``stop()`` when it stops, after the proxy's own cleanup (so shadow answers still get in).
    """

    def submit(self, exchange: Exchange) -> None: ...

    def exporter_stats(self) -> Iterable[ExporterStats]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EventBuilder:
    """Exchanges -> one prediction event per row, through a :class:`Monitor` per model version."""

    def __init__(self, model: str, extract: ExtractSpec, monitor_factory: Callable[[str], Monitor], *,
                 tags: Mapping[str, str], default_version: str = "", max_body_bytes: int = 10 * 1024 * 1024,
                 capture_bytes: int = 1024 * 1024) -> None:
        self.model = model
        self.extract = extract
        self.tags = dict(tags)
        self.default_version = default_version
        self.request_limit = max_body_bytes
        self.response_limit = max(max_body_bytes, capture_bytes)
        self._monitor_factory = monitor_factory
        self.monitors: dict[str, Monitor] = {}

    def monitor(self, version: str | None) -> Monitor:
        v = self.default_version if version is None else version
        m = self.monitors.get(v)
        if m is None:
            m = self.monitors[v] = self._monitor_factory(v)
        return m

    def rows(self, x: Exchange) -> tuple[list[Row], str | None]:
        """Features and predictions of ``x`` (extraction reads decoded copies of the bodies)."""
        if x.rows is not None:
            return x.rows, None
        req = readable_parts(x.request, x.request_encoding, x.request_header_len, self.request_limit)
        answer: Readable | None = None
        if x.streamed:
            answer = Readable(None)
        elif x.response is not None:
            answer = readable_parts(x.response, x.response_encoding, x.response_header_len, self.response_limit)
        return extract_rows(self.extract, req, answer)

    def handle(self, x: Exchange) -> int:
        """Log ``x``'s events; returns how many. ``status`` follows ``error``: never ok beside an error."""
        rows, xerr = self.rows(x)
        error = x.error or xerr
        monitor = self.monitor(x.version)
        tags = dict(self.tags)
        if x.http_status is not None and not 200 <= x.http_status < 300:
            tags["http_status"] = str(x.http_status)
        status = "ok" if error is None else "error"
        if len(rows) == 1:
            features, prediction = rows[0]
            monitor.log(features, prediction, latency_ms=x.latency_ms, variant=x.variant, request_id=x.request_id,
                        status=status, error=error, tags=tags or None, timestamp_ns=x.timestamp_ns or None)
            return 1
        # Several rows share the request id; the row index pairs each with its shadow's row.
        for i, (features, prediction) in enumerate(rows):
            monitor.log(features, prediction, latency_ms=x.latency_ms, variant=x.variant, request_id=x.request_id,
                        status=status, error=error, tags={**tags, ROW_TAG: str(i)},
                        timestamp_ns=x.timestamp_ns or None)
        return len(rows)

    def clients(self) -> list[Any]:
        """The Clients behind the Monitors, once each (versions usually share one)."""
        return list({m.client: None for m in list(self.monitors.values())})

    def close(self, timeout_s: float) -> bool:
        """Flush every Monitor within one ``timeout_s``; True if everything was delivered."""
        deadline = time.monotonic() + timeout_s
        return all([m.close(max(0.0, deadline - time.monotonic())) for m in list(self.monitors.values())])


class InlineEvents:
    """Builds events on the caller's thread (the event loop), into the given Monitors."""

    def __init__(self, builder: EventBuilder) -> None:
        self.builder = builder

    def submit(self, exchange: Exchange) -> None:
        try:
            self.builder.handle(exchange)
        except Exception:  # noqa: BLE001 - an SDK bug must never fail a proxied request
            logger.warning("driftline sidecar: could not log an exchange", exc_info=True)

    def exporter_stats(self) -> Iterable[ExporterStats]:
        return [c.stats() for c in self.builder.clients()]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None  # the Monitors belong to whoever passed the monitor_factory: they close them
