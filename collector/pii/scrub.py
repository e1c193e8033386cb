"""PII scrub stage: every string of an event is scrubbed before anything reaches ClickHouse.

The collector calls :meth:`Scrubber.scrub_batch` on validated schema-v1 events right before the
write. Strings in ``features``, ``tags``, ``prediction`` and ``label`` (nested lists and the class
names of a class->score mapping included) and ``error`` go through the field policy of their path
(see :mod:`~driftline.collector.pii.config`): ``scrub`` replaces each entity Presidio finds with
``<ENTITY_TYPE>``, ``hash`` stores ``hmac:<32 hex>``, ``drop`` removes the value, ``keep`` stores it.
Numbers and booleans are untouched unless their path is explicitly ``drop`` or ``hash``.
Identifiers (event_id, model, request_id, outcome name) are not scrubbed.

Speed, in the order it matters:

1. **Cache.** A value already seen (same model profile and field) is a dict lookup keyed by its
   HMAC (:class:`~driftline.collector.pii.cache.KeyedCache`); a batch deduplicates its values.
2. **Pattern fast path** and 3. **batched, gated NER**, for the values left: see
   :mod:`~driftline.collector.pii.analysis`, which runs the analysis of a batch.

Fail closed: a value whose analysis raises or passes ``time_budget_ms`` is replaced by
``fail_closed_mask`` and counted; an unexpected error on a whole event masks all its strings.
:meth:`scrub_batch` never raises. Text over ``max_text_chars`` is cut before analysis and the
tail is never stored.

Example
-------
>>> scrubber = Scrubber(ScrubConfig(), registry=CollectorRegistry())        # doctest: +SKIP
>>> scrubber.scrub_batch([{"type": "prediction", "model": "m",
...     "features": {"note": "call Ann at 415-555-0132"}, ...}])[0]["features"]  # doctest: +SKIP
{'note': 'call <PERSON> at <PHONE_NUMBER>'}
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from driftline.collector.pii.analysis import Analyzer, Job
from driftline.collector.pii.cache import KeyedCache
from driftline.collector.pii.config import ScrubConfig
from driftline.collector.pii.offline import PiiEngine, build_engine
from driftline.collector.store.hashing import hash_value

__all__ = ["Scrubber", "hash_value"]

_DROP = object()
_NAME_SPLIT = re.compile(r"[^0-9A-Za-z]+|(?<=[a-z0-9])(?=[A-Z])")




class Scrubber:
    """Scrub PII from batches of schema-v1 events. One instance per worker (not thread-safe).

    Parameters
    ----------
    config: the validated :class:`ScrubConfig` (with the HMAC key if ``hash`` is used).
    registry: Prometheus registry for the ``driftline_pii_*`` metrics (a private one if None).
    engine: a prebuilt :class:`PiiEngine` (else built from ``config``, offline).
    recognizers: extra Presidio recognizers (custom entity types).
    clock: monotonic seconds, for the time budget and the latency histogram.
    """

    def __init__(self, config: ScrubConfig, *, registry: CollectorRegistry | None = None,
                 engine: PiiEngine | None = None, recognizers: Iterable[Any] = (),
                 clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self._clock = clock or (engine.clock if engine is not None else time.perf_counter)
        self.engine = engine or build_engine(config, recognizers=recognizers, clock=self._clock)
        self.engine.clock = self._clock
        # The cache needs a keyed hash even when no hash policy is configured: a process-local
        # random key is enough, as the cache never outlives the process.
        self._cache: KeyedCache[tuple[str, tuple[str, ...]]] = KeyedCache(
            config.hash_key or os.urandom(32), config.cache_size)
        self._analyzer = Analyzer(config, self.engine, self._clock)
        self._policies: dict[tuple[str, str], str] = {}
        # Numbers and bools pass through unless a drop/hash policy exists: skip their traversal.
        self._numbers_untouched = not config.touches_numbers()
        self._profiles: dict[str, tuple[str, tuple[str, ...], float]] = {}
        self._contexts: dict[str, tuple[str, list[str]]] = {}
        registry = registry if registry is not None else CollectorRegistry()
        self._m_found = Counter("driftline_pii_values_scrubbed_total",
                                "String values in which PII was found and masked, by entity type",
                                ["entity"], registry=registry)
        self._m_hits = Counter("driftline_pii_cache_hits_total", "Scrub cache hits", registry=registry)
        self._m_misses = Counter("driftline_pii_cache_misses_total", "Scrub cache misses", registry=registry)
        self._m_fail = Counter("driftline_pii_fail_closed_total",
                               "Values masked whole because analysis failed or ran past its budget",
                               ["reason"], registry=registry)
        self._m_fail_events = Counter("driftline_pii_fail_closed_events_total",
                                      "Events with at least one value masked fail-closed", registry=registry)
        self._m_trunc = Counter("driftline_pii_truncated_total",
                                "Values cut to max_text_chars before analysis", registry=registry)
        self._m_policy = Counter("driftline_pii_policy_values_total",
                                 "Values handled by a drop/hash/keep field policy", ["policy"],
                                 registry=registry)
        self._m_seconds = Histogram("driftline_pii_scrub_seconds", "Time to scrub one batch of events",
                                    registry=registry,
                                    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

    # ----------------------------------------------------------------- public API
    def scrub_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return scrubbed copies of ``events`` (inputs are not modified). Never raises."""
        start = self._clock()
        try:
            jobs: dict[bytes, Job] = {}
            out: list[dict[str, Any]] = []
            pending: list[int] = []
            for i, event in enumerate(events):
                try:
                    new, has_jobs = self._first_pass(event, jobs)
                except Exception:  # a bug must not let a raw value through: mask it all
                    new, has_jobs = self._mask_event(event, "internal"), False
                out.append(new)
                if has_jobs:
                    pending.append(i)
            if jobs:
                self._resolve(list(jobs.values()))
                for i in pending:
                    try:
                        out[i] = self._fill_event(out[i])
                    except Exception:
                        out[i] = self._mask_event(events[i], "internal")
            return out
        except Exception:
            return [self._mask_event(e, "internal") for e in events]
        finally:
            self._m_seconds.observe(max(0.0, self._clock() - start))

    # ----------------------------------------------------------------- traversal
    def _first_pass(self, event: dict[str, Any], jobs: dict[bytes, Job]) -> tuple[dict[str, Any], bool]:
        model = event.get("model") or ""
        out = dict(event)
        self._has_jobs = False

        def visit(path: str, value: Any) -> Any:
            return self._visit(model, path, value, jobs)

        for root in ("features", "tags"):
            mapping = event.get(root)
            if isinstance(mapping, dict):
                fast = self._numbers_untouched
                if fast:
                    for value in mapping.values():
                        kind = type(value)
                        if not (kind is float or kind is int or kind is bool or value is None):
                            break
                    else:  # nothing a policy could change (all numbers): share it, never modified
                        continue
                new: dict[str, Any] = {}
                for name, value in mapping.items():
                    kind = type(value)
                    if fast and (kind is float or kind is int or kind is bool or value is None):
                        new[name] = value
                        continue
                    r = visit(f"{root}.{name}", value)
                    if r is not _DROP:
                        new[name] = r
                out[root] = new
        for root in ("prediction", "label", "error"):
            if root in event and event[root] is not None:
                out[root] = self._visit_nested(model, root, event[root], visit)
        return out, self._has_jobs

    def _visit_nested(self, model: str, root: str, value: Any, visit: Callable[[str, Any], Any]) -> Any:
        policy = self._policy(model, root)
        if policy == "drop":
            self._m_policy.labels("drop").inc()
            return None
        if isinstance(value, list):
            return [self._visit_nested(model, root, v, visit) for v in value]
        if isinstance(value, dict):
            if policy == "scrub":
                for cls in value:  # class -> score: scrubbing leaves 0/1-character names alone
                    if type(cls) is not str or len(cls) > 1:
                        break
                else:
                    return value
            new: dict[Any, Any] = {}
            for cls, score in value.items():
                key = visit(root, cls) if isinstance(cls, str) else cls
                _put_unique(new, key, score)
            return new
        r = visit(root, value)
        return None if r is _DROP else r

    def _visit(self, model: str, path: str, value: Any, jobs: dict[bytes, Job]) -> Any:
        if value is None or isinstance(value, bool):
            return value
        is_str = isinstance(value, str)
        policy = self._policy(model, path)
        if policy == "scrub":
            return self._scrub_value(model, path, value, jobs) if is_str else value
        if policy == "keep":
            self._m_policy.labels("keep").inc()
            return value
        self._m_policy.labels(policy).inc()
        if policy == "drop":
            return _DROP
        key = self.config.hash_key
        assert key is not None  # ScrubConfig refuses a hash policy without a key
        return hash_value(key, value if is_str else repr(value))

    def _scrub_value(self, model: str, path: str, value: str, jobs: dict[bytes, Job]) -> Any:
        if len(value) < 2:
            return value
        profile_id, entities, threshold = self._profile(model)
        ctx_id, ctx = self._context(path)
        ckey = self._cache.key(f"{profile_id}|{ctx_id}", value)
        hit = self._cache.get(ckey)
        if hit is not None:
            self._m_hits.inc()
            for entity in hit[1]:
                self._m_found.labels(entity).inc()
            return hit[0]
        self._m_misses.inc()
        job = jobs.get(ckey)
        if job is None:
            job = jobs[ckey] = Job(value, ctx, entities, threshold, ckey, self.config.max_text_chars)
        job.uses += 1
        self._has_jobs = True
        return job

    def _fill_event(self, event: dict[str, Any]) -> dict[str, Any]:
        failed: list[bool] = [False]

        def fill(obj: Any) -> Any:
            if isinstance(obj, Job):
                failed[0] = failed[0] or obj.failed is not None
                return obj.output
            if isinstance(obj, list):
                return [fill(v) for v in obj]
            if isinstance(obj, dict):
                new: dict[Any, Any] = {}
                for k, v in obj.items():
                    _put_unique(new, fill(k), fill(v))
                return new
            return obj

        for root in ("features", "tags", "prediction", "label", "error"):
            if root in event:
                event[root] = fill(event[root])
        if failed[0]:
            self._m_fail_events.inc()
        return event

    def _mask_event(self, event: Any, reason: str) -> dict[str, Any]:
        """Fallback for an event we could not process: every string becomes the mask."""
        mask = self.config.fail_closed_mask

        def m(obj: Any) -> Any:
            if isinstance(obj, str):
                return mask
            if isinstance(obj, list):
                return [m(v) for v in obj]
            if isinstance(obj, dict):
                new: dict[Any, Any] = {}
                for k, v in obj.items():
                    _put_unique(new, m(k), m(v))
                return new
            return obj

        out = dict(event) if isinstance(event, dict) else {}
        for root in ("features", "tags"):  # names stay: they are schema, not data
            if isinstance(out.get(root), dict):
                out[root] = {k: m(v) for k, v in out[root].items()}
        for root in ("prediction", "label", "error"):
            if root in out:
                out[root] = m(out[root])
        self._m_fail.labels(reason).inc()
        self._m_fail_events.inc()
        return out

    # ----------------------------------------------------------------- memoised lookups
    def _policy(self, model: str, path: str) -> str:
        key = (model, path)
        policy = self._policies.get(key)
        if policy is None:
            policy = self.config.policy_for(model, path)
            if len(self._policies) < 100_000:  # feature names are a bounded vocabulary, but be safe
                self._policies[key] = policy
        return policy

    def _profile(self, model: str) -> tuple[str, tuple[str, ...], float]:
        prof = self._profiles.get(model)
        if prof is None:
            entities, threshold = self.config.profile_for(model)
            prof = (f"{','.join(sorted(entities))}@{threshold}", entities, threshold)
            if len(self._profiles) < 10_000:
                self._profiles[model] = prof
        return prof

    def _context(self, path: str) -> tuple[str, list[str]]:
        ctx = self._contexts.get(path)
        if ctx is None:
            name = path.split(".", 1)[1] if "." in path else ""
            words = [w.lower() for w in _NAME_SPLIT.split(name) if w]
            ctx = (" ".join(words), words)
            if len(self._contexts) < 100_000:
                self._contexts[path] = ctx
        return ctx

    # ----------------------------------------------------------------- analysis
    def _resolve(self, jobs: list[Job]) -> None:
        """Analyse every distinct value of the batch; fill ``output`` (masked if it failed)."""
        self._analyzer.analyse(jobs)
        mask = self.config.fail_closed_mask
        for job in jobs:
            if job.failed is not None:
                self._m_fail.labels(job.failed).inc(job.uses)
                job.output = mask
                continue
            if job.truncated:
                self._m_trunc.inc(job.uses)
                job.output += f" [truncated {len(job.value) - len(job.text)} chars]"
            else:
                self._cache_put(job)
            for entity in job.found:
                self._m_found.labels(entity).inc(job.uses)

    def _cache_put(self, job: Job) -> None:
        if len(job.value) <= self.config.cache_max_value_chars:
            self._cache.put(job.cache_key, (job.output, job.found))


def _put_unique(mapping: dict[Any, Any], key: Any, value: Any) -> None:
    """Insert, renaming the key ``key#2``, ``key#3``... if scrubbing made two keys equal."""
    if key in mapping and isinstance(key, str):
        n = 2
        while f"{key}#{n}" in mapping:
            n += 1
        key = f"{key}#{n}"
    mapping[key] = value
