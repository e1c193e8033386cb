"""What changed in a model's state since its last save, and folding saved changes back.

:class:`JournaledStore` is a :class:`~driftline.detectors.join.PendingStore` that remembers what
changed since its last checkpoint, so a save writes a few entries per event instead of every
prediction still waiting for its label. :func:`merge_model_state` folds the delta documents of
:meth:`~driftline.detectors.engine.DetectorEngine.state_for` into the full one before them.

A model that had only a few events since its last save is saved as those events instead
(:func:`events_blob`, read back with :func:`events_of` and observed again after loading): their
cost follows the events, where a state delta costs a comparison of every touched histogram
whatever the number of events (issue 17: 1,000 models with 5 events each per chunk).

>>> events_of(events_blob("m", [{"model": "m", "features": {"x": 0.1}}]))
[{'model': 'm', 'features': {'x': 0.1}}]
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import cramjam
import orjson

from driftline.detectors.join import PendingStore
from driftline.detectors.statediff import apply

__all__ = ["JournaledStore", "merge_model_state", "deflate", "inflate", "events_blob", "events_of", "EVENTS_VERSION"]

#: version of the events records (:func:`events_blob`)
EVENTS_VERSION = 1


class JournaledStore(PendingStore):
    """A :class:`PendingStore` that remembers what changed since the last checkpoint, so a save
    writes the change (a few entries per event) instead of every waiting prediction."""

    def __init__(self, ttl_s: float, max_items: int) -> None:
        super().__init__(ttl_s, max_items)
        self.checkpoint()

    def checkpoint(self) -> None:
        self._new: dict[str, None] = {}  # inserted since the checkpoint, in insertion order
        self._changed: set[str] = set()  # present at the checkpoint, updated in place
        self._removed: set[str] = set()  # present at the checkpoint, gone now

    def _gone(self, key: str) -> None:
        if key in self._new:
            del self._new[key]
        else:
            self._removed.add(key)
            self._changed.discard(key)

    def put(self, key: str, ts: float, payload: Any) -> None:
        items = self._items
        if key in items:
            if key not in self._new:
                self._changed.add(key)
            items[key] = (ts, payload)
            return
        items[key] = (ts, payload)
        self._new[key] = None
        if len(items) > self.max_items:
            old, _ = items.popitem(last=False)
            self.evicted += 1
            self._gone(old)

    def pop(self, key: str) -> tuple[float, Any] | None:
        hit = self._items.pop(key, None)
        if hit is not None:
            self._gone(key)
        return hit

    def expire(self, watermark: float) -> int:
        limit = watermark - self.ttl_s
        items, n = self._items, 0
        while items:  # arrival order ~ event time: stop at the first young entry
            key = next(iter(items))
            if items[key][0] >= limit:
                break
            del items[key]
            self._gone(key)
            n += 1
        self.expired += n
        return n

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.checkpoint()

    def journal(self) -> dict[str, Any]:
        items = self._items
        return {"removed": sorted(self._removed), "changed": [[k, *items[k]] for k in self._changed],
                "new": [[k, *items[k]] for k in self._new], "expired": self.expired, "evicted": self.evicted}


def merge_model_state(full: dict[str, Any], deltas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fold delta docs (``state_for(model, delta=True)``, in save order) into the full doc before them."""
    if not deltas:
        return full
    mon = full["monitor"]
    stores = [OrderedDict((k, (ts, p)) for k, ts, p in st["items"]) for st in mon["pending"]]
    for d in deltas:
        j = d["journal"]
        refs = mon["references"]
        refs.update(j["references"])
        for v in j["references_removed"]:
            refs.pop(v, None)
        boot = mon["bootstrap"]
        for v, (mode, events) in j["bootstrap"].items():
            boot[v] = boot.get(v, []) + events if mode == "append" else events
        for v in j["bootstrap_removed"]:
            boot.pop(v, None)
        for items, st, pj in zip(stores, mon["pending"], j["pending"]):
            for k in pj["removed"]:
                items.pop(k, None)
            for k, ts, p in pj["changed"]:
                items[k] = (ts, p)  # in place: keeps its position
            for k, ts, p in pj["new"]:
                items.pop(k, None)
                items[k] = (ts, p)
            st["expired"], st["evicted"] = pj["expired"], pj["evicted"]
        if "core_patch" in d:
            apply(mon, d["core_patch"])
        else:  # saved before core patches: the whole core
            mon.update(d["core"])
        full["window"], full["watermark"], full["ready"] = d["window"], d["watermark"], d["ready"]
    for items, st in zip(stores, mon["pending"]):
        st["items"] = [[k, ts, p] for k, (ts, p) in items.items()]
    return full


# A state record below 24 KiB (a model that had a few events in a batch: ~1,000 such records per
# batch at 1,000 models) is an LZ4 block, a larger one a zstd frame at level 1. What decides is the
# collector's CPU to compress a record plus the store's CPU to take it, which grows with its bytes
# (``python bench/bench_state_codec.py``, 2-core VM, µs per record, compress + store): 10 events of
# 20 features (8.4 KB of JSON) 15 + 63 as LZ4, 62 + 40 as zstd, 84 + 41 as zlib; 20 events (16.7 KB)
# 32 + 88, 89 + 72, 180 + 74; 40 events (33 KB) 53 + 163, 90 + 100, 308 + 128. A full snapshot of
# 1.2 MB: zstd 2.5 ms and 160 KB against zlib's 7.7 ms and 204 KB, read in half the time. zstd
# replaced zlib at level 1, which records written before still are. A record is read by its first
# bytes: an LZ4 block carries _LZ4_MAGIC, a zstd frame its own magic number, and neither can begin a
# zlib stream (a zlib header's first byte ends in 0x8, and 0x28b5 is not a multiple of 31).
_SMALL = 24 * 1024
_LZ4_MAGIC = b"LZ4B"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def deflate(data: bytes) -> bytes:
    """A state record's bytes, compressed (LZ4 below :data:`_SMALL`, zstd level 1 above)."""
    if len(data) >= _SMALL:
        return bytes(cramjam.zstd.compress(data, level=1))
    return _LZ4_MAGIC + bytes(cramjam.lz4.compress_block(data))


def inflate(blob: bytes) -> bytes:
    """The bytes of a state record made by :func:`deflate` (or a zlib stream, as written before)."""
    if blob[:4] == _LZ4_MAGIC:
        return bytes(cramjam.lz4.decompress_block(blob[4:]))
    if blob[:4] == _ZSTD_MAGIC:
        return bytes(cramjam.zstd.decompress(blob))
    return zlib.decompress(blob)


def events_blob(model: str, events: Sequence[Mapping[str, Any]]) -> bytes:
    """``model``'s events, as observed, in a compressed record. The events are validated JSON
    (finite numbers only, see the SDK contract), so orjson writes them exactly as they were read."""
    doc = {"version": EVENTS_VERSION, "model": model, "kind": "events", "events": events}
    return deflate(orjson.dumps(doc))


def events_of(blob: bytes) -> list[dict[str, Any]]:
    """The events of an :func:`events_blob` record, in the order they were observed."""
    doc = orjson.loads(inflate(blob))
    if doc.get("version") != EVENTS_VERSION or doc.get("kind") != "events":
        raise ValueError(f"not a version-{EVENTS_VERSION} events record")
    return doc["events"]
