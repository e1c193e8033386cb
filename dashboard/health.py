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
of every segment, because the budget was corrected across segments, over the budget's own period
(the last hour, day or week before the range's end). Each kind keeps its latest verdict until its
next window (labels arrive later than inputs, so performance windows trail data windows), and
"since" is the first window of the current unbroken run of the state within the time range.

Everything here is pure: :func:`model_health` takes the rows of the ``overview_*`` queries of
``detector_queries.py`` and returns frozen results, so it is tested without Streamlit or ClickHouse.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "DEGRADE_DETECTORS", "DEGRADE_PREFIXES", "DEGRADED", "DRIFTING", "DRIFT_DETECTORS", "DRIFT_PREFIXES",
    "HEALTHY", "NO_OUTPUT", "STATES", "Budget", "DriftedFeature", "ModelHealth",
    "budget_from_details", "family", "model_health", "top_features", "verdicts_since",
]

#: data and prediction drift: what makes a model *drifting*
DRIFT_DETECTORS = ("data_drift", "prediction_drift")
DRIFT_PREFIXES = ("multivariate.",)
#: performance and concept drift: what makes a model *degraded*
DEGRADE_DETECTORS = ("performance",)
DEGRADE_PREFIXES = ("concept.",)

HEALTHY, DRIFTING, DEGRADED, NO_OUTPUT = "healthy", "drifting", "degraded", "no detector output"
STATES = (DEGRADED, DRIFTING, HEALTHY, NO_OUTPUT)  # worst first
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

    def words(self) -> str:
        """What ranks it, in words: ``impact 0.44``, or ``psi 3.1× past its threshold``."""
        if self.impact is not None:
            return f"impact {self.impact:.2f}"
        if self.statistic and self.ratio > 0:
            return f"{self.statistic} {self.ratio:.2g}× past its threshold"
        return ""


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


WINDOW_COLS = ("model", "ms", "drifting", "has_drift", "degraded", "has_perf", "any_verdict", "budget",
               "alpha")
VERDICT_COLS = ("model", "ms", "detector", "feature", "fam", "has_impact", "impact", "statistic_", "ratio",
                "crossed")


def _records(rows: Any, cols: Sequence[str]) -> Iterable[tuple[Any, ...]]:
    # Column lists, not per-row pandas objects: thousands of windows stay a few milliseconds.
    if rows is None:
        return ()
    if hasattr(rows, "columns"):
        if not len(rows):
            return ()
        return zip(*(rows[c].tolist() for c in cols))
    return (tuple(r[c] for c in cols) for r in rows)


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def verdicts_since(windows: Any) -> dt.datetime | None:
    """Where ``detector_queries.overview_verdicts`` must start to hold the verdicts behind every
    drifting or degraded model's state: the earliest of their latest drift / performance windows
    that gave a verdict (``None`` when no model has one: nothing to read)."""
    latest: dict[tuple[str, int], tuple[int, bool]] = {}
    for model, ms, drifting, has_drift, degraded, has_perf, *_ in _records(windows, WINDOW_COLS):
        for fam, has, verdict in ((1, has_drift, drifting), (2, has_perf, degraded)):
            if has and ms >= latest.get((model, fam), (ms, False))[0]:
                latest[(model, fam)] = (ms, bool(verdict))
    flagged = [ms for ms, verdict in latest.values() if verdict]
    return _utc(min(flagged)) if flagged else None


def _degraded_rule(entries: Sequence[tuple[str, Sequence[str]]]) -> str:
    names = sorted({name + (f" ({', '.join(crossed)})" if len(crossed) else "") for name, crossed in entries})
    return "degraded: performance/concept verdict in the latest window — " + "; ".join(names)


def _drifting_rule(features: Sequence[DriftedFeature], detectors: Sequence[str]) -> str:
    n = len(features)
    what = f"{n} feature{'s' if n != 1 else ''}" if n else "the model's inputs"
    return f"drifting: data/prediction drift verdict on {what} in the latest window ({', '.join(detectors)})"


def _healthy_rule(drift_v: bool | None, perf_v: bool | None) -> str:
    kinds = [k for k, v in (("data/prediction drift", drift_v), ("performance/concept", perf_v)) if v is not None]
    missing = [k for k, v in (("data/prediction drift", drift_v), ("performance/concept (no labels?)", perf_v))
               if v is None]
    rule = f"healthy: no {' or '.join(kinds)} verdict in the latest window"
    return rule + (f"; no {' or '.join(missing)} detector output to judge" if missing else "")


def _one_model(model: str, wins: list[tuple[Any, ...]], verdicts: Mapping[tuple[int, int], list[tuple[Any, ...]]],
               use: Mapping[str, int]) -> ModelHealth:
    wins.sort(key=lambda r: r[1])
    drift_v: bool | None = None
    perf_v: bool | None = None
    last_drift = last_perf = 0
    states: list[tuple[int, str]] = []
    b_rows: list[tuple[str, float]] = []
    for _, ms, drifting, has_drift, degraded, has_perf, _, b_details, alpha in wins:
        if has_drift:
            drift_v, last_drift = bool(drifting), ms
        if has_perf:
            perf_v, last_perf = bool(degraded), ms
        if b_details:
            b_rows.append((str(b_details), float(alpha or 0.0)))
        if drift_v is not None or perf_v is not None:
            states.append((ms, DEGRADED if perf_v else DRIFTING if drift_v else HEALTHY))
    # The latest readable budget (parsed only as far back as needed).
    budget = next((b for b in (budget_from_details(d, a) for d, a in reversed(b_rows)) if b), None)
    if not states:
        return ModelHealth(model, NO_OUTPUT, "no data, prediction, performance or concept detector "
                           "wrote a window in the time range", None, False, None, (), budget, 0, "")
    drifted = verdicts.get((last_drift, 1), []) if drift_v else []
    features = top_features((d, f, hi, imp, st, r) for d, f, hi, imp, st, r, _ in drifted)
    state = states[-1][1]
    i = len(states) - 1
    while i > 0 and states[i - 1][1] == state:
        i -= 1
    if state == DEGRADED:
        rule = _degraded_rule([(f"{d} · {f}", c) for d, f, *_, c in verdicts.get((last_perf, 2), [])])
    elif state == DRIFTING:
        rule = _drifting_rule(features, sorted({str(d) for d, *_ in drifted}))
    else:
        rule = _healthy_rule(drift_v, perf_v)
    if budget is not None and budget.period_s is None and budget.windows_per_period > 0:
        recent = [w for w in wins if w[3]][-budget.windows_per_period:]
        used, counted = sum(1 for w in recent if w[6]), f"the last {len(recent):,} windows"
    else:
        per = budget.per if budget is not None and budget.period_s else "week"
        used, counted = int(use.get(per, 0)), _PERIOD_WORDS[per]
    return ModelHealth(model, state, rule, _utc(states[i][0]), i == 0, _utc(states[-1][0]), features,
                       budget, used, counted)


_PERIOD_WORDS = {"hour": "the last hour", "day": "the last 24 hours", "week": "the last 7 days"}


def model_health(windows: Any, verdicts: Any = None, uses: Any = None) -> dict[str, ModelHealth]:
    """One :class:`ModelHealth` per model from the rows of ``detector_queries.overview_health``
    (``windows``), ``detector_queries.overview_verdicts`` and
    ``detector_queries.overview_budget_use`` (DataFrames or lists of mappings); "since" is bounded
    by the first window in ``windows``."""
    by_model: dict[str, list[tuple[Any, ...]]] = {}
    for r in _records(windows, WINDOW_COLS):
        by_model.setdefault(str(r[0]), []).append(r)
    by_window: dict[str, dict[tuple[int, int], list[tuple[Any, ...]]]] = {}
    for model, ms, det, feat, fam, has_impact, impact, stat, ratio, crossed in _records(verdicts, VERDICT_COLS):
        by_window.setdefault(str(model), {}).setdefault((ms, fam), []).append(
            (det, feat, has_impact, impact, stat, ratio, tuple(crossed)))
    use = {str(m): {"hour": h, "day": d, "week": w}
           for m, h, d, w in _records(uses, ("model", "hour", "day", "week"))}
    return {m: _one_model(m, wins, by_window.get(m, {}), use.get(m, {})) for m, wins in by_model.items()}
