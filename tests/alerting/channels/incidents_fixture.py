"""Fixed incident events for the golden rendering test (``test_registry.py``)."""

from __future__ import annotations

import datetime as dt

from driftline.alerting.evaluate import FeatureStat, Window
from driftline.alerting.incidents import Alert

T0 = dt.datetime(2026, 3, 1, 0, 40, tzinfo=dt.timezone.utc)
STEP = dt.timedelta(minutes=10)
CHANNEL = "oncall"
TEST_KEY = "oncall:test:1772325600000"
TEST_ISO = "2026-03-01T00:40:00+00:00"


def _features(n: int) -> tuple[FeatureStat, ...]:
    return tuple(FeatureStat(f"f{i}", "psi" if i % 2 else "ks", "psi" if i % 2 else "ks",
                             0.9 / (i + 1), None if i % 2 else 0.0012345 * (i + 1), 0.2,
                             1000 + i, 5000) for i in range(n))


def _windows() -> tuple[Window, ...]:
    return tuple(Window(T0 + i * STEP, T0 + (i + 1) * STEP, 0.1 * i, 900 + i,
                        None if i == 0 else i >= 2) for i in range(4))


def _alert(event: str, **kw: object) -> Alert:
    base: dict[str, object] = dict(
        event=event, dedup_key="driftline-0123456789abcdef0123456789abcdef", rule="feature-drift",
        kind="drift", statistic="psi", op=">", threshold=0.2, severity="critical", model="fraud",
        model_version="v1", segment="country=FR", since=T0, last_window_end=T0 + 4 * STEP,
        value=0.4567891, samples=1003, features=_features(12), windows=_windows(),
        sql="SELECT 1", dashboard_link="http://dash.example:8501/?page=model&model=fraud",
        description="Input distribution moved.", at=T0 + 4 * STEP)
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def alerts() -> dict[str, Alert]:
    """Every event kind, plus a bare alert (no features, segment, version, link, threshold)."""
    return {
        "firing": _alert("firing"),
        "repeat": _alert("repeat", severity="warning"),
        "resolved": _alert("resolved", features=()),
        "bare": _alert("firing", severity="info", segment="", model_version="", value=None,
                       features=_features(2), threshold=None, dashboard_link="", description="",
                       kind="performance", statistic="accuracy", op="<"),
    }
