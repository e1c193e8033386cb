"""Retiring idle model versions: a model redeployed daily must not keep every old version forever.

What a model's monitor holds per version -- its reference-based stream (histograms of every
segment and feature, the multivariate detector), performance and error-stream detectors, shadow
pairs, a count window's label window, performance-estimation windows, its reference and its
reference builders -- would otherwise stay in memory and in every saved state for good.

:class:`VersionActivity` (part of the monitor's saved state) keeps the event time of each
version's last prediction. At every window close the engine calls :func:`retire_idle`, which
retires each version with no prediction for ``retire_version_after_s`` of event time (against
the model's watermark; :class:`~driftline.detectors.config.ModelConfig`), and never before
``concept.label_horizon_s``: until then a label may still join one of its predictions. Its pending
joins are not evicted early: by then they have expired under that same horizon (and are held
under the memory budget meanwhile, :mod:`~driftline.detectors.budget`). A count window's label
window still open is closed first, so its rows are written, not lost.

The state leaves the saved state too: a full save holds what is left, a delta's core patch
removes the keys and its journal lists the removed references and first-events buffers. A stored
reference stays in the store (and in the engine's copy of the stored references, read once at
start): it is not installed again on a restart, only when the version gets events again, and then
the version starts afresh (a log line says so). The names of the last :data:`RETIRED_KEPT`
retired versions are kept for that; each retirement is a log line and counts in
``driftline_versions_retired_total{model}``.

>>> act = VersionActivity()
>>> act.seen("v1", 10.0), act.seen("v1", 5.0), act.last_seen
(None, None, {'v1': 10.0})
>>> act.retire("v1"); act.retired
{'v1': 10.0}
>>> act.seen("v1", 99.0), act.retired  # it gets events again: it was last seen at 10
(10.0, {})
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftline.detectors.monitor import ModelMonitor

__all__ = ["VersionActivity", "retire_idle", "RETIRED_KEPT"]

log = logging.getLogger(__name__)

#: retired version names kept per model (to say "starts afresh" and not re-install its reference)
RETIRED_KEPT = 1000


class VersionActivity:
    """Event time of each version's last prediction, and the versions retired (saved state)."""

    def __init__(self) -> None:
        self.last_seen: dict[str, float] = {}
        self.retired: dict[str, float] = {}  # version -> event time of its last prediction

    def seen(self, version: str, ts: float) -> float | None:
        """``version`` has a prediction at ``ts``. If it was retired, the event time of its last
        prediction before (it starts afresh), else None."""
        last = self.last_seen.get(version)
        if last is None or ts > last:
            self.last_seen[version] = ts
        return self.retired.pop(version, None) if self.retired else None

    def retire(self, version: str) -> None:
        last = self.last_seen.pop(version, None)
        if last is not None:
            self.retired[version] = last
            while len(self.retired) > RETIRED_KEPT:
                del self.retired[next(iter(self.retired))]

    def get_state(self) -> dict[str, Any]:
        return {"last_seen": self.last_seen, "retired": self.retired}

    def set_state(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        self.last_seen = dict(state.get("last_seen", {}))
        self.retired = dict(state.get("retired", {}))


def retire_idle(mon: ModelMonitor, watermark: float | None) -> list[str]:
    """Retire ``mon``'s versions idle at ``watermark`` (see the module notes); their names.

    A version holding state without a prediction seen here (a stored reference installed at
    start, a late label) starts its idle time now."""
    cfg = mon.cfg
    after = cfg.retire_version_after_s
    if not after or watermark is None:
        return []
    if cfg.concept.enabled:
        after = max(after, cfg.concept.label_horizon_s)
    act = mon.versions
    out = []
    for version in sorted(mon.held_versions() | set(act.last_seen)):
        last = act.last_seen.get(version)
        if last is None:
            act.last_seen[version] = watermark
        elif watermark - last >= after:
            if version in mon.label_windows:
                mon.close_concept(version)  # its last joins are written, not lost
            mon.drop_version(version)
            act.retire(version)
            out.append(version)
            log.info("model %s version %s retired: no prediction for %.1f days of event time "
                     "(retire_version_after_s=%g); its detectors and state are dropped (a stored reference "
                     "stays stored), and it starts afresh if it gets events again",
                     cfg.model, version or "(none)", (watermark - last) / 86_400, cfg.retire_version_after_s)
    return out
