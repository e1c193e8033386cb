"""References built from a model's own traffic: a rolling span, or a reservoir sample.

:class:`ModelMonitor <driftline.detectors.monitor.ModelMonitor>` keeps one builder per model
version when ``reference.source`` is ``rolling`` or ``sampled`` (see
:class:`~driftline.detectors.config.ReferenceSettings`), feeds it every primary prediction and
tells it when a window closes; a builder answers with the events of a new reference when one is
due, and the monitor installs it (restarting the version's windows, as ``set_reference`` does).

* :class:`RollingBuilder`: the traffic of each window is one *chunk*; the reference is the last
  ``events`` events (within ``span_s`` seconds, if set) of the chunks that end ``lag_windows``
  windows before the current one, rebuilt every ``rebuild_windows`` windows. Chunks no later
  rebuild can need are dropped, so at most ``events`` events plus ``lag_windows + 1`` chunks are
  kept.
* :class:`SampledBuilder`: Vitter's algorithm R over the first ``span_events`` events (built
  once) or over each period of ``rebuild_windows`` windows (``of: trailing``: each period's
  sample is the next period's reference).

Memory and saving: every kept event lives in a :class:`Reservoir`, whose contents are an
append-only list of writes ``[slot, ts, features, prediction]`` (a replacement appends; the
list is compacted when it reaches twice the capacity). The lists are held in the monitor's
journaled buffers (the ones its first-events reference fills), so a state save writes only the
writes since the last save; the builders' own state (counts, chunk bounds) is a few numbers.
A chunk holds at most ``events`` events: a longer window is sampled uniformly by algorithm R.

>>> buffers = {}
>>> r = Reservoir(buffers, "v1\\x1fs", capacity=3, seed=0)
>>> for i in range(100):
...     r.add(float(i), {"x": i}, None)
>>> len(r.items()), r.seen
(3, 100)
"""

from __future__ import annotations

from typing import Any

from driftline.detectors.config import ReferenceSettings

__all__ = ["Reservoir", "RollingBuilder", "SampledBuilder", "builder_for", "buffer_key", "SEP"]

#: separates a version from a buffer name in the monitor's buffer keys (a version's own
#: first-events buffer is keyed by the bare version)
SEP = "\x1f"
_MASK = (1 << 64) - 1


def buffer_key(version: str, name: str) -> str:
    return f"{version}{SEP}{name}"


def _mix(x: int) -> int:
    # splitmix64's finaliser: a stateless, well-mixed 64-bit hash, so the draw for the i-th event
    # depends on (seed, i) only and needs no generator state in the saved state.
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def draw(seed: int, i: int) -> int:
    """A uniform integer in ``[0, i)`` for the ``i``-th item (deterministic in seed and i)."""
    return _mix(_mix(seed & _MASK) ^ i) % i


class Reservoir:
    """Algorithm R (Vitter 1985): a uniform sample of ``capacity`` items of everything added.

    The i-th item (1-based) fills slot ``i - 1`` while there is room; after that it replaces
    slot ``j`` when a uniform draw ``j`` in ``[0, i)`` is below the capacity, so every item seen
    is in the sample with probability ``capacity / seen``. Items are ``[ts, features,
    prediction]``; ``buffers[key]`` holds the writes (see the module docstring).
    """

    def __init__(self, buffers: dict[str, list[Any]], key: str, capacity: int, seed: int,
                 seen: int = 0) -> None:
        self.buffers = buffers
        self.key = key
        self.capacity = capacity
        self.seed = seed
        self.seen = seen

    def add(self, ts: float, features: Any, prediction: Any) -> None:
        self.seen += 1
        i = self.seen
        if i <= self.capacity:
            slot = i - 1
        else:
            slot = draw(self.seed, i)
            if slot >= self.capacity:
                return
        log = self.buffers.get(self.key)
        if log is None:
            log = self.buffers[self.key] = []
        log.append([slot, ts, features, prediction])
        if len(log) >= 2 * self.capacity and i > self.capacity:
            self.compact()

    def items(self) -> list[list[Any]]:
        """The sample: ``[ts, features, prediction]`` per kept item, in slot order."""
        out: list[list[Any]] = []
        for slot, ts, features, prediction in self.buffers.get(self.key, ()):
            if slot == len(out):
                out.append([ts, features, prediction])
            else:
                out[slot] = [ts, features, prediction]
        return out

    def compact(self) -> None:
        # A new list object: the monitor's journal then saves it whole once ("reset").
        self.buffers[self.key] = [[i, *item] for i, item in enumerate(self.items())]

    def drop(self) -> None:
        self.buffers.pop(self.key, None)


def _events(items: list[list[Any]]) -> list[dict[str, Any]]:
    return [{"features": f, "prediction": p} for _, f, p in items]


class RollingBuilder:
    """The last ``events`` events, ``lag_windows`` windows back, rebuilt every ``rebuild_windows``."""

    kind = "rolling"

    def __init__(self, settings: ReferenceSettings, version: str, buffers: dict[str, list[Any]]) -> None:
        self.s = settings
        self.version = version
        self.buffers = buffers
        # [chunk id, events seen, first ts, last ts]; the last chunk is the open window's.
        self.chunks: list[list[Any]] = []
        self.next_id = 0
        self.since = 0  # windows closed since the last build
        self.built = False
        self._current: Reservoir | None = None  # the open chunk's (one lookup per event)
        self._open()

    def _reservoir(self, chunk: list[Any]) -> Reservoir:
        return Reservoir(self.buffers, buffer_key(self.version, f"r{chunk[0]}"), self.s.events,
                         self.s.seed + chunk[0], chunk[1])

    def _open(self) -> None:
        self.chunks.append([self.next_id, 0, None, None])
        self.next_id += 1
        self._current = None

    def add(self, ts: float, features: Any, prediction: Any) -> None:
        chunk = self.chunks[-1]
        res = self._current
        if res is None:
            res = self._current = self._reservoir(chunk)
        res.add(ts, features, prediction)
        chunk[1] = res.seen
        if chunk[2] is None:
            chunk[2] = ts
        chunk[3] = ts if chunk[3] is None else max(chunk[3], ts)

    def window_closed(self) -> list[dict[str, Any]] | None:
        """Close the open chunk; return the events of a new reference when one is due."""
        s = self.s
        if self.chunks[-1][1] == 0:
            self.chunks.pop()  # an empty window (another version's traffic): no chunk
            self.next_id -= 1
        else:
            self.since += 1
        self._open()
        closed = self.chunks[:-1]
        eligible = closed[:len(closed) - s.lag_windows] if s.lag_windows else closed
        while len(eligible) > 1 and (
                sum(c[1] for c in eligible[1:]) >= s.events
                or (s.span_s is not None and eligible[0][3] < eligible[-1][3] - s.span_s)):
            self._reservoir(eligible.pop(0)).drop()
            self.chunks.pop(0)
        if not eligible:
            return None
        total = sum(c[1] for c in eligible)
        covered = s.span_s is not None and eligible[-1][3] - eligible[0][2] >= s.span_s
        due = (self.since >= s.rebuild_windows) if self.built else (total >= s.events or covered)
        if not due:
            return None
        end = eligible[-1][3]
        items = [it for c in eligible for it in self._reservoir(c).items()
                 if s.span_s is None or it[0] > end - s.span_s]
        items.sort(key=lambda it: it[0])
        self.built, self.since = True, 0
        return _events(items[-s.events:])

    def get_state(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "next": self.next_id, "since": self.since, "built": self.built}

    def set_state(self, state: dict[str, Any]) -> None:
        self.chunks = [list(c) for c in state["chunks"]]
        self._current = None
        self.next_id, self.since, self.built = int(state["next"]), int(state["since"]), bool(state["built"])


class SampledBuilder:
    """A uniform sample of ``events`` events of the first ``span_events`` (``of: first``, once) or
    of each period of ``rebuild_windows`` windows (``of: trailing``)."""

    kind = "sampled"

    def __init__(self, settings: ReferenceSettings, version: str, buffers: dict[str, list[Any]]) -> None:
        self.s = settings
        self.version = version
        self.buffers = buffers
        self.period = 0
        self.seen = 0
        self.since = 0
        self.done = False

    def _reservoir(self) -> Reservoir:
        return Reservoir(self.buffers, buffer_key(self.version, f"s{self.period}"), self.s.events,
                         self.s.seed + self.period, self.seen)

    def add(self, ts: float, features: Any, prediction: Any) -> None:
        if self.done or (self.s.of == "first" and self.seen >= self.s.span_events):
            return
        res = self._reservoir()
        res.add(ts, features, prediction)
        self.seen = res.seen

    def window_closed(self) -> list[dict[str, Any]] | None:
        if self.done:
            return None
        if self.s.of == "first":
            if self.seen < self.s.span_events:
                return None
            self.done = True
        else:
            if self.seen:
                self.since += 1
            if self.since < self.s.rebuild_windows:
                return None
        res = self._reservoir()
        events = _events(res.items())
        res.drop()
        self.period += 1
        self.seen = self.since = 0
        return events

    def get_state(self) -> dict[str, Any]:
        return {"period": self.period, "seen": self.seen, "since": self.since, "done": self.done}

    def set_state(self, state: dict[str, Any]) -> None:
        self.period, self.seen = int(state["period"]), int(state["seen"])
        self.since, self.done = int(state["since"]), bool(state["done"])


def builder_for(settings: ReferenceSettings, version: str,
                buffers: dict[str, list[Any]]) -> RollingBuilder | SampledBuilder | None:
    """The builder of ``settings.source`` (``None`` for ``stored`` and ``first_events``)."""
    if settings.source == "rolling":
        return RollingBuilder(settings, version, buffers)
    if settings.source == "sampled":
        return SampledBuilder(settings, version, buffers)
    return None
