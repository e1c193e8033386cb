"""Weighted A/B and canary routing, sticky by key, with weights that change without a restart.

A split file (YAML or JSON) names the variants::

    sticky_header: X-User-Id        # optional: same header value -> same variant
    sticky_field: user.id           # optional: a dotted path into the JSON request body
    variants:
      - {name: primary, upstream: "http://127.0.0.1:9000", weight: 90}
      - {name: canary,  upstream: "http://127.0.0.1:9001", weight: 10, version: "2", role: canary}

Sticky routing hashes the key (BLAKE2b) to a point in [0, 1) and walks the cumulative weights,
so a key keeps its variant while the weights stay put, and after a weight change only the keys
in the moved slice change variant. Without a key the choice is random (an injected ``Random``).
Rollback is a weight of zero: that variant gets nothing, sticky keys included.

>>> split = SplitConfig.parse({"variants": [{"name": "a", "upstream": "http://x", "weight": 1},
...                                         {"name": "b", "upstream": "http://y", "weight": 0}]})
>>> Router(split).choose("user-42").name
'a'
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from driftline.sdk.contract.variants import ARM, CANARY, PRIMARY, SEPARATOR, SHADOW, variant_for
from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.sidecar")

_VARIANT_KEYS = {"name", "upstream", "weight", "version", "role"}
_SPLIT_KEYS = {"variants", "sticky_header", "sticky_field"}
SPLIT_ROLES = (PRIMARY, ARM, CANARY)


@dataclass(frozen=True)
class Variant:
    """One arm of the split: a name (logged as the event's variant), an upstream URL and a weight.

    ``version`` overrides the model version logged for this arm (a canary is often a new version).
    ``role`` is ``arm`` (A/B), ``canary`` or ``primary``; a canary's events carry ``canary:NAME``
    (:mod:`driftline.sdk.contract.variants`). The default is ``primary`` for an arm named
    ``primary`` and ``arm`` otherwise.
    """

    name: str
    upstream: str
    weight: float = 1.0
    version: str | None = None
    role: str | None = None

    @property
    def event_variant(self) -> str:
        """The ``variant`` its events carry."""
        role = self.role or (PRIMARY if self.name == PRIMARY else ARM)
        return variant_for(role, self.name)


@dataclass(frozen=True)
class SplitConfig:
    """The whole split: variants in order, and where the sticky key comes from."""

    variants: tuple[Variant, ...]
    sticky_header: str | None = None
    sticky_field: str | None = None

    def __post_init__(self) -> None:
        if not self.variants:
            raise ConfigError("a split needs at least one variant")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names must be unique, got {names}")
        for v in self.variants:
            if not v.name or len(v.name) > 64:
                raise ConfigError(f"variant name {v.name!r} must be 1-64 characters")
            if v.name.startswith(SHADOW) or SEPARATOR in v.name:
                raise ConfigError(f"variant name {v.name!r} is reserved: names starting with {SHADOW!r} are "
                                  f"shadows' (use --shadow) and {SEPARATOR!r} separates a role from a name")
            if v.role is not None and v.role not in SPLIT_ROLES:
                raise ConfigError(f"variant {v.name!r}: role {v.role!r} must be one of {', '.join(SPLIT_ROLES)}")
            if not (v.upstream.startswith("http://") or v.upstream.startswith("https://")
                    or v.upstream == "local:"):
                raise ConfigError(f"variant {v.name!r}: upstream {v.upstream!r} must be an http(s):// URL")
            if not (v.weight >= 0) or v.weight != v.weight or v.weight == float("inf"):
                raise ConfigError(f"variant {v.name!r}: weight must be a finite number >= 0, got {v.weight}")
        if sum(v.weight for v in self.variants) <= 0:
            raise ConfigError("at least one variant needs a weight above zero")

    @classmethod
    def single(cls, upstream: str, name: str = "primary") -> SplitConfig:
        """All traffic to one upstream (the default without a split file)."""
        return cls((Variant(name, upstream, 1.0),))

    @classmethod
    def parse(cls, data: Any, *, source: str = "split config") -> SplitConfig:
        """Build from a decoded YAML/JSON mapping; unknown keys are errors (typos must not vanish)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping with 'variants'")
        unknown = set(data) - _SPLIT_KEYS
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SPLIT_KEYS)}")
        raw = data.get("variants")
        if not isinstance(raw, list):
            raise ConfigError(f"{source}: 'variants' must be a list")
        variants = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping):
                raise ConfigError(f"{source}: variants[{i}] must be a mapping")
            bad = set(item) - _VARIANT_KEYS
            if bad:
                raise ConfigError(f"{source}: variants[{i}] unknown key(s) {sorted(bad)}; "
                                  f"allowed: {sorted(_VARIANT_KEYS)}")
            if "name" not in item or "upstream" not in item:
                raise ConfigError(f"{source}: variants[{i}] needs 'name' and 'upstream'")
            weight = item.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(f"{source}: variants[{i}].weight must be a number")
            version, role = item.get("version"), item.get("role")
            variants.append(Variant(str(item["name"]), str(item["upstream"]).rstrip("/"), float(weight),
                                    None if version is None else str(version), None if role is None else str(role)))
        return cls(tuple(variants), data.get("sticky_header"), data.get("sticky_field"))

    @classmethod
    def load(cls, path: str | Path) -> SplitConfig:
        """Read a YAML or JSON split file."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read split file {p}: {exc.strerror}") from None
        try:
            if p.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - yaml and json raise different types
            raise ConfigError(f"split file {p} is not valid YAML/JSON: {exc}") from None
        return cls.parse(data, source=str(p))

    def with_weights(self, weights: Mapping[str, Any]) -> SplitConfig:
        """A copy with some weights changed; unknown variant names are errors."""
        known = {v.name for v in self.variants}
        unknown = set(weights) - known
        if unknown:
            raise ConfigError(f"unknown variant(s) {sorted(unknown)}; known: {sorted(known)}")
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise ConfigError(f"weight of {name!r} must be a number")
        return replace(self, variants=tuple(
            replace(v, weight=float(weights[v.name])) if v.name in weights else v for v in self.variants))

    def to_dict(self) -> dict[str, Any]:
        return {"sticky_header": self.sticky_header, "sticky_field": self.sticky_field,
                "variants": [{"name": v.name, "upstream": v.upstream, "weight": v.weight,
                              "version": v.version} for v in self.variants]}


def key_point(key: str) -> float:
    """A stable point in [0, 1) for a sticky key."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Router:
    """Chooses a variant per request. Swapping the config is one attribute assignment, so readers
    on the event loop always see a whole config (old or new), never a half-updated one."""

    def __init__(self, split: SplitConfig, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.split = split
        self.generation = 0

    @property
    def split(self) -> SplitConfig:
        return self._split

    @split.setter
    def split(self, split: SplitConfig) -> None:
        total = sum(v.weight for v in split.variants)
        cumulative, acc = [], 0.0
        for v in split.variants:
            acc += v.weight / total
            cumulative.append((acc, v))
        self._table = cumulative
        self._split = split

    def update(self, split: SplitConfig) -> None:
        self.split = split
        self.generation += 1

    def set_weights(self, weights: Mapping[str, Any]) -> SplitConfig:
        """Change weights (rollback = 0); raises ConfigError and keeps the old split when invalid."""
        new = self._split.with_weights(weights)
        self.update(new)
        return new

    def choose(self, key: str | None = None) -> Variant:
        table = self._table
        if len(table) == 1:
            return table[0][1]
        point = key_point(key) if key else self._rng.random()
        for edge, v in table:
            if point < edge and v.weight > 0:
                return v
        # float rounding at the top edge, or zero-weight tail: the last arm with weight
        return next(v for _, v in reversed(table) if v.weight > 0)


class SplitFileWatcher:
    """Polls a split file's mtime/size and reloads it into a :class:`Router`.

    Polling (not inotify) works on every filesystem and in containers with mounted config maps.
    A file that fails to parse is logged and counted; the router keeps the last good split.
    """

    def __init__(self, path: str | Path, router: Router, *, interval_s: float = 1.0,
                 on_error: Callable[[ConfigError], None] | None = None) -> None:
        self.path = Path(path)
        self.router = router
        self.interval_s = interval_s
        self.on_error = on_error
        self.errors = 0
        self._stamp = self._read_stamp()

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def check(self) -> bool:
        """Reload if the file changed; returns True when a new split was applied."""
        stamp = self._read_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            split = SplitConfig.load(self.path)
        except ConfigError as exc:
            self.errors += 1
            logger.error("driftline sidecar: keeping the previous split: %s", exc)
            if self.on_error is not None:
                self.on_error(exc)
            return False
        self.router.update(split)
        logger.info("driftline sidecar: split reloaded from %s: %s", self.path,
                    ", ".join(f"{v.name}={v.weight:g}" for v in split.variants))
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a watcher bug must not kill the proxy
                logger.exception("driftline sidecar: split watcher failed")
