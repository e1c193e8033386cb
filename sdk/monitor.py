"""``Monitor``: the SDK's public entry point, a cheap per-model handle on a :class:`Client`.

>>> from driftline.sdk import Monitor, InMemoryExporter
>>> sink = InMemoryExporter()
>>> monitor = Monitor(model="churn", version="2024-06", exporter=sink)
>>> pid = monitor.log(features={"age": 41, "plan": "pro"}, prediction={"yes": 0.8, "no": 0.2},
...                   latency_ms=3.1, tags={"region": "eu"})
>>> _ = monitor.log_label(pid, "yes")
>>> monitor.flush(2.0)
True
>>> [e["type"] for e in sink.events()]
['prediction', 'label']

The hot path (``log`` and friends) takes a timestamp and an id, copies the caller's mappings,
appends a tuple to its Client's bounded queue and returns. Validation, denylist masking and
JSON encoding happen on the Client's one worker thread. A Monitor holds no thread and no
connection of its own (``driftline.sdk.export.client`` says which Client it uses), so a server may
make one per model and version. Nothing here raises into the caller unless
``strict=True`` (meant for tests and development), which validates inline and raises
:class:`~driftline.sdk.errors.SchemaError`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from driftline.sdk.codec import dumps, nan_as_missing, plain_features, plain_tags, to_plain
from driftline.sdk.config import SdkSettings
from driftline.sdk.contract import LABEL, OUTCOME, PREDICTION, Topics, format_timestamp, schema
from driftline.sdk.errors import ConfigError, SchemaError
from driftline.sdk.export.batch import Exporter, ExporterStats, Record
from driftline.sdk.export.client import Client, acquire_default, release_default
from driftline.sdk.ids import uuid7

logger = logging.getLogger("driftline.sdk")

_PRED, _LABEL, _OUTCOME = 0, 1, 2
_uuid7 = uuid7
_time_ns = time.time_ns


class Monitor:
    """Log predictions, labels and outcomes of one model to driftline.

    Parameters
    ----------
    model, version:
        Model name and version; every event carries them.
    client:
        The :class:`Client` to log through (shared, owned by the caller). When omitted, the
        process's default Client for ``settings`` (one Kafka producer and one worker thread for
        every Monitor that does the same).
    exporter:
        A transport such as :class:`InMemoryExporter` or :class:`KafkaExporter`, for this Monitor
        alone: it gets a private Client around it. Not together with ``client``.
    settings:
        :class:`SdkSettings`; defaults to the ``client``'s, else ``SdkSettings.from_env()``
        (``DRIFTLINE_KAFKA_BOOTSTRAP``). Topics and the denylist are this Monitor's own.
    variant:
        Default variant of this process's predictions (``primary``, ``shadow`` or an A/B arm).
    tags:
        Default segment tags merged into every event (per-call tags win).
    mask:
        A function applied to each event before export (the early PII denylist, which masks
        features and tags named like secrets). Defaults to the denylist from ``settings``.
    strict:
        Validate inline and raise ``SchemaError`` (for tests). Default: count and log instead.
    """

    def __init__(
        self,
        model: str,
        version: str = "",
        *,
        client: Client | None = None,
        exporter: Exporter | None = None,
        settings: SdkSettings | None = None,
        variant: str = "primary",
        tags: Mapping[str, str] | None = None,
        mask: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        strict: bool = False,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigError("Monitor(model=...) needs a non-empty model name")
        if not isinstance(version, str):
            raise ConfigError("Monitor(version=...) must be a string, e.g. version='1.4.2'")
        if client is not None and exporter is not None:
            raise ConfigError("Monitor(client=..., exporter=...): pass one; give the exporter to the Client instead")
        plain = plain_tags(dict(tags or {}))
        schema.check_tags(plain, "Monitor(tags=...)")
        self.model = model
        self.version = version
        self.variant = variant
        self.tags = plain
        self.strict = strict
        if settings is None:
            settings = client.settings if client is not None else SdkSettings.from_env()
        self.settings = settings
        self._topics: Topics = self.settings.topics
        self._key = model.encode()
        self._mask = mask if mask is not None else _default_mask(self.settings)
        self._invalid_logged = 0
        # Who shuts the Client down on close(): "own" (private, around `exporter`), "default"
        # (the last Monitor open on it), "caller" (client=: whoever built it).
        if client is not None:
            self.client, self._owner = client, "caller"
        elif exporter is not None:
            self.client, self._owner = Client(self.settings, exporter=exporter), "own"
        else:
            self.client, self._owner = acquire_default(self.settings), "default"
        self._closed = False
        self._close_lock = threading.Lock()
        self._submit_item = self.client._submit  # bound once: log() is the hot path

    # -- hot path -------------------------------------------------------------------------
    def log(
        self,
        features: Mapping[str, Any],
        prediction: Any,
        *,
        latency_ms: float | None = None,
        variant: str | None = None,
        request_id: str | None = None,
        status: str = "ok",
        error: str | None = None,
        tags: Mapping[str, str] | None = None,
        prediction_id: str | None = None,
        timestamp_ns: int | None = None,
    ) -> str:
        """Log one prediction; returns its id (a UUIDv7) for labels and outcomes to refer to."""
        pid = prediction_id or _uuid7()
        try:
            item = (self, _PRED, pid, timestamp_ns or _time_ns(), dict(features), prediction,
                    latency_ms, variant or self.variant, request_id, status, error,
                    dict(tags) if tags else None)
            if self.strict:
                self._event(item)
            self._submit_item(item)
        except Exception:
            if self.strict:
                raise
            logger.warning("driftline: could not log a prediction of %s", self.model, exc_info=True)
        return pid

    def log_label(self, prediction_id: str, label: Any, *, tags: Mapping[str, str] | None = None,
                  timestamp_ns: int | None = None) -> str:
        """Log delayed ground truth for ``prediction_id``."""
        eid = uuid7()
        item = (self, _LABEL, eid, timestamp_ns or time.time_ns(), prediction_id, label, dict(tags) if tags else None)
        self._submit(item)
        return eid

    def log_outcome(self, name: str, value: float | bool, *, prediction_id: str | None = None,
                    request_id: str | None = None, tags: Mapping[str, str] | None = None,
                    timestamp_ns: int | None = None) -> str:
        """Log a business outcome (a click, a conversion value) for a prediction or a request."""
        eid = uuid7()
        item = (self, _OUTCOME, eid, timestamp_ns or time.time_ns(), prediction_id, request_id, name, value,
                dict(tags) if tags else None)
        self._submit(item)
        return eid

    def log_batch(self, features: Iterable[Mapping[str, Any]] | Any, predictions: Sequence[Any], *,
                  latency_ms: float | None = None, tags: Mapping[str, str] | None = None,
                  variant: str | None = None, feature_names: Sequence[str] | None = None) -> list[str]:
        """Log a batch inference job: one event per row.

        ``features``: a DataFrame, rows of mappings, or rows of values -- a 2-D numpy array, lists --
        whose columns are named by ``feature_names``, else ``f0``, ``f1``, ... (as the sidecar names
        an unnamed instance's values).
        """
        if hasattr(features, "to_dict") and not isinstance(features, Mapping):
            features = features.to_dict("records")  # pandas without importing pandas
        elif hasattr(features, "tolist") and not isinstance(features, Mapping):
            features = features.tolist()  # numpy without importing numpy
        rows = list(features)
        preds = to_plain(predictions) if not isinstance(predictions, list) else predictions
        problem = None
        if len(rows) != len(preds):
            problem = f"{len(rows)} feature rows but {len(preds)} predictions"
        elif rows and not isinstance(rows[0], Mapping):
            rows, problem = _named_rows(rows, feature_names)
        if problem is not None:
            if self.strict:
                raise ConfigError(f"log_batch: {problem}")
            logger.warning("driftline: log_batch of %s: %s; nothing logged", self.model, problem)
            return []
        per_row = None if latency_ms is None else latency_ms / max(1, len(rows))
        return [self.log(row, pred, latency_ms=per_row, tags=tags, variant=variant)
                for row, pred in zip(rows, preds)]

    def _submit(self, item: tuple[Any, ...]) -> None:
        try:
            if self.strict:
                self._event(item)
            self._submit_item(item)
        except Exception:
            if self.strict:
                raise
            logger.warning("driftline: could not log an event of %s", self.model, exc_info=True)

    # -- decorator --------------------------------------------------------------------------
    def watch(self, fn: Callable[..., Any] | None = None, *,
              features_from: Callable[..., Mapping[str, Any]] | None = None,
              prediction_from: Callable[[Any], Any] | None = None) -> Any:
        """Decorate a sync or async predict function: log inputs, output, latency and errors.

        Features are taken from ``features_from(*args, **kwargs)``, else from the first argument
        that is a mapping, positional first (so a method's ``self`` is passed over, and
        ``predict(features={...})`` works), else from the keyword arguments themselves
        (``predict(age=41, plan="pro")``). The function's exceptions
        are logged (``status='error'``) and re-raised unchanged.

        >>> from driftline.sdk import Monitor, InMemoryExporter
        >>> m = Monitor(model="m", exporter=InMemoryExporter())
        >>> @m.watch
        ... def predict(x):
        ...     return x["a"] * 2
        >>> predict({"a": 2})
        4
        """
        if fn is None:
            return functools.partial(self.watch, features_from=features_from, prediction_from=prediction_from)

        def extract(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any]:
            try:
                if features_from is not None:
                    return features_from(*args, **kwargs)
                for arg in (*args, *kwargs.values()):
                    if isinstance(arg, Mapping):
                        return arg
                return kwargs
            except Exception:  # noqa: BLE001 - never break the caller's predict
                logger.warning("driftline: features_from failed", exc_info=True)
                return {}

        def record(args: tuple[Any, ...], kwargs: dict[str, Any], start_ns: int, result: Any,
                   exc: BaseException | None) -> None:
            latency_ms = (time.perf_counter_ns() - start_ns) / 1e6
            feats = extract(args, kwargs)
            if exc is not None:
                self.log(feats, None, latency_ms=latency_ms, status="error",
                         error=f"{type(exc).__name__}: {exc}"[:2000])
                return
            try:
                pred = prediction_from(result) if prediction_from is not None else result
            except Exception:  # noqa: BLE001
                logger.warning("driftline: prediction_from failed", exc_info=True)
                pred = None
            self.log(feats, pred, latency_ms=latency_ms)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter_ns()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    record(args, kwargs, start, None, exc)
                    raise
                record(args, kwargs, start, result, None)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                record(args, kwargs, start, None, exc)
                raise
            record(args, kwargs, start, result, None)
            return result

        return wrapper

    # -- control --------------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every event logged so far is delivered (True) or ``timeout_s`` passes
        (False; the events stay queued and are still delivered later). Returns within
        ``timeout_s`` whatever the broker does. Flushes the whole Client: events other Monitors
        on it queued before this call are waited for too."""
        return self.client.flush(timeout_s)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush and stop, returning within ``timeout_s`` in all (one deadline for the flush and
        for closing the Kafka connection). Returns True if every event was delivered. What could
        not be delivered in time is counted in ``stats().dropped["shutdown"]``, so events logged
        equal ``exported`` plus ``dropped``. Later ``log`` calls are counted as ``shutdown`` drops.

        "Stop" stops what this Monitor owns. With ``exporter=`` it owns a private Client and shuts
        it down. On the default Client the last open Monitor shuts it down (a one-Monitor program
        behaves as it always did); an earlier one flushes and detaches: as an OpenTelemetry
        ``Tracer`` has no shutdown (only the provider's owner ends the pipeline), a library closing
        its Monitor never silences the application's. A ``client=`` belongs to the caller:
        ``close`` flushes it, ``Client.shutdown`` stops it.

        >>> from driftline.sdk import Monitor, InMemoryExporter
        >>> m = Monitor(model="m", exporter=InMemoryExporter())
        >>> _ = m.log({"x": 1}, 0.5)
        >>> m.close(timeout_s=1.0)
        True
        >>> m.stats().exported, m.stats().dropped_total
        (1, 0)
        """
        with self._close_lock:
            if self._closed:
                return True
            self._closed = True
            # Later events of this handle are counted, not queued, even while the Client lives on.
            self._submit_item = self.client._drop_closed
        if self._owner == "own":
            return self.client.shutdown(timeout_s)
        if self._owner == "default":
            return release_default(self.client, timeout_s)
        return self.client.flush(timeout_s)

    def stats(self) -> ExporterStats:
        """Queue depth, exported count and drops by reason of this Monitor's Client (shared by
        every Monitor on it)."""
        return self.client.stats()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- worker side ----------------------------------------------------------------------
    def _event(self, item: tuple[Any, ...]) -> dict[str, Any]:
        kind = item[1]
        base = {"schema_version": schema.SCHEMA_VERSION, "event_id": item[2],
                "timestamp": format_timestamp(item[3]), "model": self.model}
        if kind == _PRED:
            _, _, _, _, features, prediction, latency_ms, variant, request_id, status, error, tags = item
            features = plain_features(features)
            event = {**base, "type": PREDICTION.type, "model_version": self.version, "variant": variant,
                     "request_id": (str(request_id) if type(request_id) is int else request_id) or item[2],
                     "features": features,
                     "prediction": to_plain(prediction),
                     "latency_ms": None if latency_ms is None else float(latency_ms),
                     "status": status, "error": error,
                     "tags": plain_tags({**self.tags, **tags}) if tags else self.tags}
        elif kind == _LABEL:
            _, _, _, _, prediction_id, label, tags = item
            event = {**base, "type": LABEL.type, "model_version": self.version, "prediction_id": prediction_id,
                     "label": to_plain(label), "tags": plain_tags({**self.tags, **tags}) if tags else self.tags}
        else:
            _, _, _, _, prediction_id, request_id, name, value, tags = item
            event = {**base, "type": OUTCOME.type, "prediction_id": prediction_id, "request_id": request_id,
                     "name": name, "value": to_plain(value),
                     "tags": plain_tags({**self.tags, **tags}) if tags else self.tags}
        try:
            return self._checked(event)
        except (SchemaError, TypeError):  # features that need repair, looked at only when refused
            fixed = _repaired_features(event["features"]) if kind == _PRED else None
            if fixed is None:
                raise
            return self._checked({**event, "features": fixed})

    def _checked(self, event: dict[str, Any]) -> dict[str, Any]:
        if self._mask is not None:
            event = self._mask(event)
        return schema.validate_event(event)

    def _encode(self, item: tuple[Any, ...]) -> Record:
        """Called by the Client's worker for each item this Monitor queued."""
        try:
            event = self._event(item)
            value = dumps(event)
        except Exception as exc:  # the batch exporter counts it by type; the report names this model
            self._report_invalid(exc)
            raise
        return Record(self._topics.for_type(event["type"]), self._key, value)

    def _report_invalid(self, exc: Exception) -> None:
        # Rate-limited: the field name and reason only, never the value (it may be PII).
        self._invalid_logged += 1
        if self._invalid_logged <= 10 or self._invalid_logged % 1000 == 0:
            logger.warning("driftline: dropped an invalid event of %s (%s) [%d so far]",
                           self.model, exc, self._invalid_logged)


def _repaired_features(features: dict[Any, Any]) -> dict[str, Any] | None:
    """Features a refused event can be logged with: names as text (``pandas.DataFrame(X)`` names
    its columns 0, 1, ...) and NaN as a missing value (:func:`nan_as_missing`); None when neither
    applies (the event is refused for another reason)."""
    named = features if all(type(k) is str for k in features) else {str(k): v for k, v in features.items()}
    cleared = nan_as_missing(named)
    if cleared is not None:
        return cleared
    return named if named is not features else None


def _named_rows(rows: list[Any], names: Sequence[str] | None) -> tuple[list[Any], str | None]:
    """Rows of values as mappings named by ``names`` (else ``f0``, ``f1``, ...); a scalar row is one
    value. Returns ``(rows, None)``, or ``([], problem)`` when a row's width is not the names'."""
    rows = [to_plain(r) for r in rows]
    rows = [r if isinstance(r, (list, tuple)) else [r] for r in rows]
    width = len(names) if names is not None else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            named = "feature_names has" if names is not None else "row 0 has"
            return [], f"row {i} has {len(r)} values but {named} {width}"
    if names is None:
        names = [schema.positional_feature(i) for i in range(width)]
    return [dict(zip(names, r)) for r in rows], None


def _default_mask(settings: SdkSettings) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    from driftline.sdk.denylist import Denylist, DenylistConfig

    return Denylist(DenylistConfig(extra_fields=settings.denylist)).mask_event
