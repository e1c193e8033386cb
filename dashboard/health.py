"""Is this model healthy? One state per model from its detector verdicts, with the reason.

The rules, in the words the Overview shows them:

* **degraded**: a performance or concept-drift detector (``performance``, ``concept.*``) gave a
  drift verdict in its latest window;
* **drifting**: otherwise, a data or prediction drift detector (``data_drift``,
  ``prediction_drift``, ``multivariate.*``) gave a verdict in its latest window;
* **healthy**: both kinds ran and neither gave a verdict in its latest window (a model with only
  one kind is judged on that kind and says so);
* **no detector output**: neither kind wrote a row in the window read.

Only all traffic counts for the state (segment ``''``); the alarm budget's use counts verdict windows
of every segment, because the budget was corrected across segments. Each kind keeps its latest verdict
until its next window (labels arrive later than inputs, so performance windows trail data
windows), and "since" is the first window of the current unbroken run of the state.

Everything here is pure: :func:`model_health` takes the rows of
:func:`driftline.dashboard.queries.overview_health` and returns frozen results, so it is tested
without Streamlit or ClickHouse.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "DEGRADE_DETECTORS", "DEGRADE_PREFIXES", "DEGRADED", "DRIFTING", "DRIFT_DETECTORS", "DRIFT_PREFIXES",
    "HEALTHY", "LOOKBACK_S", "NO_OUTPUT", "STATES", "Budget", "DriftedFeature", "ModelHealth",
    "budget_from_details", "family", "model_health", "top_features",
]

#: data and prediction drift: what makes a model *drifting*
DRIFT_DETECTORS = ("data_drift", "prediction_drift")
DRIFT_PREFIXES = ("multivariate.",)
#: performance and concept drift: what makes a model *degraded*
DEGRADE_DETECTORS = ("performance",)
DEGRADE_PREFIXES = ("concept.",)

HEALTHY, DRIFTING, DEGRADED, NO_OUTPUT = "healthy", "drifting", "degraded", "no detector output"
STATES = (DEGRADED, DRIFTING, HEALTHY, NO_OUTPUT)  # worst first
#: how far back the Overview reads verdicts (for "since" and the budget's use) before the range
LOOKBACK_S = 7 * 86400
#: a budget's ``per`` in seconds; any other ``per`` is counted in windows (``windows_per_period``)
PERIOD_S: Mapping[str, int] = {"hour": 3600, "day": 86400, "week": 7 * 86400}
TOP_FEATURES = 3


def family(detector: str) -> int:
    """1 for a data/prediction drift detector, 2 for performance/concept, 0 for any other."""
    if detector in DRIFT_DETECTORS or detector.startswith(DRIFT_PREFIXES):
        return 1
    if detector in DEGRADE_DETECTORS or detector.startswith(DEGRADE_PREFIXES):
        return 2
    return 0


@dataclass(frozen=True)
class DriftedFeature:
    """One feature with a drift verdict in a window, and what ranks it."""

    detector: str
    feature: str
    impact: float | None  # the STAT_IMPACT row's value, when the detector wrote one
    statistic: str = ""  # fallback ranking: the crossed statistic furthest past its threshold
    ratio: float = 0.0  # that statistic's value / threshold (p-value tests: threshold / p)

    @property
    def score(self) -> tuple[int, float]:
        return (1, self.impact) if self.impact is not None else (0, self.ratio)


@dataclass(frozen=True)
class Budget:
    """The false-alarm budget the thresholds were calibrated for (the latest STAT_ALARM_BUDGET row)."""

    false_verdicts: float
    per: str  # "week", or a number of windows when traffic is unknown
    windows_per_period: int
    source: str  # "observed traffic" | "configured windows"
    alpha_window: float

    @property
    def period_s(self) -> int | None:
        return PERIOD_S.get(self.per)

    def text(self) -> str:
        n = self.false_verdicts
        noun = "false alarm" if n == 1 else "false alarms"
        per = self.per if self.period_s else f"{self.windows_per_period:,} windows"
        return f"budget {n:g} {noun} / {per}"


@dataclass(frozen=True)
class ModelHealth:
    """The Overview's line for one model."""

    model: str
    state: str
    rule: str  # which rule made the state, in words
    since: dt.datetime | None  # first window of the current unbroken run
    since_open: bool  # the run started before the first window read (``since`` is a lower bound)
    latest_window: dt.datetime | None
    features: tuple[DriftedFeature, ...]  # drifted in the latest data window, worst first
    budget: Budget | None
    verdict_windows: int  # windows with a data/prediction verdict (any segment) in the counted period
    counted: str  # that period in words ("the last 7 days", "the last 336 windows")

    @property
    def ranked_by(self) -> str:
        """How :meth:`top` was ranked, in words."""
        scored = {f.impact is not None for f in self.top()}
        return {frozenset(): "", frozenset({True}): "impact", frozenset({False}): "statistic"}.get(
            frozenset(scored), "impact, then statistic")

    def top(self, n: int = TOP_FEATURES) -> tuple[DriftedFeature, ...]:
        return self.features[:n]

    def budget_use(self) -> str:
        if self.budget is None:
            return f"{self.verdict_windows} drift windows in {self.counted}"
        return f"{self.budget.text()} · {self.verdict_windows} drift windows in {self.counted}"


def budget_from_details(details: str, alpha_window: float) -> Budget | None:
    """The budget as stated in a STAT_ALARM_BUDGET row's JSON ``details``; ``None`` if unreadable."""
    try:
        d = json.loads(details or "{}")
        return Budget(false_verdicts=float(d["false_verdicts"]), per=str(d.get("per", "week")),
                      windows_per_period=int(d.get("windows_per_period") or 0),
                      source=str(d.get("source", "")), alpha_window=float(alpha_window))
    except (ValueError, KeyError, TypeError):
        return None


def top_features(entries: Iterable[Sequence[Any]]) -> tuple[DriftedFeature, ...]:
    """Drifted features of one window, worst first: by impact where the detector scored it, else by
    how far a crossed statistic went past its threshold. ``entries`` are the query's tuples
    ``(detector, feature, has_impact, impact, statistic, ratio)``; feature ``*`` (a multivariate
    verdict) is not a feature and is left out."""
    out: dict[str, DriftedFeature] = {}
    for det, feat, has_impact, impact, stat, ratio in entries:
        if feat == "*":
            continue
        r = float(ratio) if ratio is not None and math.isfinite(float(ratio)) else 0.0
        f = DriftedFeature(str(det), str(feat), float(impact) if has_impact else None, str(stat or ""), r)
        if feat not in out or f.score > out[feat].score:
            out[feat] = f
    return tuple(sorted(out.values(), key=lambda f: (f.score, f.feature), reverse=True))


def _window_rows(rows: Any) -> Iterable[Mapping[str, Any]]:
    if hasattr(rows, "to_dict"):
        return rows.to_dict("records")  # type: ignore[no-any-return]
    return rows  # type: ignore[no-any-return]


def _ts(x: Any) -> dt.datetime:
    if hasattr(x, "to_pydatetime"):
        x = x.to_pydatetime()
    return x if x.tzinfo else x.replace(tzinfo=dt.timezone.utc)  # type: ignore[no-any-return]


def _degraded_rule(detectors: Sequence[Any]) -> str:
    names = sorted({f"{d}" + (f" ({', '.join(s)})" if s else "") for d, s in detectors})
    return "degraded: performance/concept verdict in the latest window — " + "; ".join(names)


def _drifting_rule(features: Sequence[DriftedFeature], detectors: Sequence[str]) -> str:
    n = len(features)
    what = f"{n} feature{'s' if n != 1 else ''}" if n else "the model's inputs"
    return f"drifting: data/prediction drift verdict on {what} in the latest window ({', '.join(detectors)})"


def _one_model(model: str, wins: list[Mapping[str, Any]], end: dt.datetime) -> ModelHealth:
    wins.sort(key=lambda r: _ts(r["window_start"]))
    drift_v: bool | None = None
    perf_v: bool | None = None
    last_drift: Mapping[str, Any] | None = None
    last_perf: Mapping[str, Any] | None = None
    states: list[tuple[dt.datetime, str]] = []
    budget: Budget | None = None
    for r in wins:
        if r["has_drift"]:
            drift_v, last_drift = bool(r["drifting"]), r
        if r["has_perf"]:
            perf_v, last_perf = bool(r["degraded"]), r
        if r.get("budget"):
            budget = budget_from_details(str(r["budget"]), float(r.get("alpha") or 0.0)) or budget
        if drift_v is None and perf_v is None:
            continue
        states.append((_ts(r["window_start"]), DEGRADED if perf_v else DRIFTING if drift_v else HEALTHY))
    features = top_features(last_drift["drifted"]) if last_drift is not None and drift_v else ()
    if not states:
        return ModelHealth(model, NO_OUTPUT, "no data, prediction, performance or concept detector "
                           "wrote a window in the time read", None, False, None, (), budget, 0, "")
    state = states[-1][1]
    i = len(states) - 1
    while i > 0 and states[i - 1][1] == state:
        i -= 1
    since, since_open = states[i][0], i == 0
    if state == DEGRADED:
        assert last_perf is not None
        rule = _degraded_rule(last_perf["degraded_by"])
    elif state == DRIFTING:
        assert last_drift is not None
        rule = _drifting_rule(features, sorted({str(d) for d, *_ in last_drift["drifted"]}))
    else:
        kinds = [k for k, v in (("data/prediction drift", drift_v), ("performance/concept", perf_v))
                 if v is not None]
        missing = [k for k, v in (("data/prediction drift", drift_v), ("performance/concept (no labels?)",
                                                                        perf_v)) if v is None]
        rule = f"healthy: no {' or '.join(kinds)} verdict in the latest window"
        if missing:
            rule += f"; no {' or '.join(missing)} detector output to judge"
    # The budget's use: windows with any data/prediction verdict over the budget's own period.
    starts = [(_ts(r["window_start"]), bool(r["any_verdict"])) for r in wins if r["has_drift_any"]]
    latest = max((t for t, _ in starts), default=None)
    if budget is not None and budget.period_s is None and budget.windows_per_period > 0:
        recent = starts[-budget.windows_per_period:]
        counted = f"the last {len(recent):,} windows"
    else:
        period = (budget.period_s if budget is not None and budget.period_s else 0) or LOOKBACK_S
        period = min(period, LOOKBACK_S)
        recent = [(t, v) for t, v in starts if t >= end - dt.timedelta(seconds=period)]
        counted = _period_words(period)
    return ModelHealth(model, state, rule, since, since_open, latest, features, budget,
                       sum(1 for _, v in recent if v), counted)


def _period_words(period_s: int) -> str:
    for name, s in PERIOD_S.items():
        if s == period_s:
            return {"hour": "the last hour", "day": "the last 24 hours", "week": "the last 7 days"}[name]
    return f"the last {period_s / 86400:g} days"


def model_health(rows: Any, end: dt.datetime) -> dict[str, ModelHealth]:
    """``rows``: the per-(model, window) rows of ``queries.overview_health`` (a DataFrame or a list
    of mappings); ``end``: the end of the time read (the budget's period ends there)."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in _window_rows(rows):
        by_model.setdefault(str(r["model"]), []).append(r)
    return {m: _one_model(m, wins, end) for m, wins in by_model.items()}
