"""Performance estimated per window and segment, graded by the labels as they arrive (issue 18).

:class:`EstimationStreams` is one model's part of
:class:`~driftline.detectors.monitor.ModelMonitor` for ``performance_estimation``
(:class:`~driftline.detectors.config.PerformanceEstimationSettings`):

* every primary prediction of a version with an estimator (its reference's, or one fitted on the
  version's first ``reference_labels`` labelled predictions of the stream: CBPE on their class
  probabilities, DLE on their numeric features + prediction, which the label join keeps for
  numeric predictions until then) adds one row to its window, per segment: class probabilities
  for CBPE, prediction and numeric features for DLE. A window keeps a uniform sample of at most
  ``sample`` rows per segment (:class:`~driftline.detectors.estimate_windows.Window`), and
  counts every row. The estimator fitted on the stream is kept in the model's detector state
  (saved with it in ClickHouse, reloaded on restart), beside the reference it completes;
* at window close each metric is estimated on the sample with its band at ``level``, and judged
  when a floor (ceiling) is configured: the verdict holds only when the band at the false-alarm
  budget's per-test level is entirely past it (one calibrated test per judged metric, version and
  segment, counted in the model's :class:`~driftline.detectors.calibration.AlarmBudget`);
* each joined label goes to the window its prediction was in (by prediction time: the open
  window, or one of the last ``grade_windows`` closed ones); at the next close, every window that
  got labels is written again with the realised metric over its labelled rows (a sample of at
  most ``sample``) and the labelled share. A ``drift_metrics`` row per metric (statistic
  ``estimation_error``, segment '') keeps the mean |estimate - realised| over the graded windows
  kept (those with at least ``min_samples`` labelled rows). The closed windows awaiting labels
  are bounded (:class:`~driftline.detectors.estimate_windows.GradingWindows`): by the label
  horizon, and by ``grade_max_rows`` labelled rows per model, past which the oldest stop awaiting
  (counted in ``driftline_estimation_grading_evicted_total{model}``).

Rows for the ``performance_estimates`` table come out as :class:`EstimateRow` (:meth:`drain`).
Why a version gets no estimate (scores that are not probabilities, too few labels) is logged
once per version and written once, as a ``drift_metrics`` row (statistic ``excluded``,
feature ``*``, the reason in ``details``).

>>> from driftline.detectors.config import ModelConfig
>>> streams = EstimationStreams(ModelConfig(model="m"))
>>> streams.test_count({})
0
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
from typing import Any, ClassVar, Iterable, Mapping

from driftline.collector.store.tables import STAT_ESTIMATION_ERROR, STAT_EXCLUDED
from driftline.detectors.base import DetectorResult
from driftline.detectors.config import ModelConfig
from driftline.detectors.estimate_batch import apply
from driftline.detectors.estimate_fit import Fitted, fit_estimator, is_number
from driftline.detectors.estimate_windows import GradingWindows, Window
from driftline.detectors.estimation_metrics import normal_quantile

__all__ = ["EstimateRow", "EstimationStreams", "DETECTOR", "LOWER_IS_BETTER"]

log = logging.getLogger(__name__)

#: ``drift_metrics.detector`` of the estimation's rows (estimation error, not-available reasons)
DETECTOR = "estimation"
#: metrics whose verdict is "above" a ceiling; the rest are floors
LOWER_IS_BETTER = frozenset(("mae", "rmse"))
# Buffered items past which the buffers are applied: 4,096 predictions (3 items each) or labels (7)
_PREDICTIONS, _LABELS = 3 * 4096, 7 * 4096
_OFF = object()  # EstimationStreams._cold: estimation is off for this model


def _utc(epoch: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.timezone.utc)


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


@dataclasses.dataclass(frozen=True)
class EstimateRow:
    """One row of ``driftline.performance_estimates`` (``updated_at`` is set by the store)."""

    model: str
    model_version: str
    segment: str
    window_start: _dt.datetime
    window_end: _dt.datetime
    metric: str
    method: str
    estimate: float | None
    lower: float | None
    upper: float | None
    level: float
    threshold: float | None
    verdict: bool
    realised: float | None
    labelled: int
    labelled_share: float
    n: int

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "model", "model_version", "segment", "window_start", "window_end", "metric", "method",
        "estimate", "lower", "upper", "level", "threshold", "verdict", "realised", "labelled",
        "labelled_share", "n")

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in self.COLUMNS)


class EstimationStreams:
    """Estimates of one model's windows per version and segment, graded as labels arrive.

    Predictions and labels are buffered and put in their windows in batches
    (:mod:`~driftline.detectors.estimate_batch`): whatever reads the windows (a close, a state
    save, a retirement) applies the buffer first, and so must a caller that replaces a reference
    (:meth:`flush`); at most 4,096 predictions or labels wait. ``batched`` False: none, each
    event goes to its windows at once (the comparison in the tests)."""

    batched: ClassVar[bool] = True

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.settings = cfg.performance_estimation
        #: whether an estimator may be fitted on the stream (the label join asks per prediction)
        self.collecting = bool(self.settings.enabled and self.settings.reference_labels)
        self.fitted: dict[str, dict[str, Any]] = {}  # version -> estimator fitted on the stream
        # version -> [prediction, label, features (None: not kept)] to fit on
        self.collect: dict[str, list[list[Any]]] = {}
        self.open: dict[str, Window] = {}  # "version|segment"
        self.grading = GradingWindows(self.settings.grade_windows, self.settings.grade_max_rows)
        self._told_evicted = 0  # grading evictions already in a log line
        self.noted: dict[str, str] = {}  # version -> why it has no estimate (told once)
        self.unwritten: list[tuple[str, str]] = []  # (version, reason) not yet written as a row
        self.rows: list[EstimateRow] = []
        self._cache: dict[str, tuple[Any, Fitted | None]] = {}  # version -> (its estimator info, loaded)
        # version -> (its reference, its estimator, whether its events are buffered: CBPE's), per
        # event: a reference is frozen; one fitted on the stream changes only here (_collect,
        # retire, set_state), which forget the entry
        self._hot: dict[str, tuple[Any, Fitted, bool]] = {}
        self._refs: Mapping[str, Any] = {}  # the references of the label or close in progress (_settle)
        # Predictions and labels of versions in _hot not yet in their windows, flat (no tuple per
        # event for the garbage collector to count and walk): see estimate_batch
        self._preds: list[Any] = []
        self._labels: list[Any] = []

    def flush(self) -> None:
        """Put the buffered predictions and labels in their windows (before a reference changes)."""
        preds, labels = self._preds, self._labels
        if preds or labels:
            # The same two lists all along: old, so the garbage collector's young collections do
            # not walk the thousands of items they hold (new lists each time cost ~10 % more CPU)
            try:
                apply(self, preds, labels)
            finally:
                preds.clear()
                labels.clear()

    # -- the estimator of a version -------------------------------------------------------------
    def estimator(self, version: str, refs: Mapping[str, Any]) -> Fitted | None:
        """The version's estimator (``refs``: the model's references by version): its
        reference's, else the one fitted on the stream. Loaded once per estimator."""
        ref = refs.get(version) or refs.get("*")
        info = getattr(ref, "estimator", None) or self.fitted.get(version)
        hit = self._cache.get(version)
        if hit is not None and hit[0] is info:
            return hit[1]
        if not info or "state" not in info:
            return None
        try:
            fitted: Fitted | None = Fitted(info)
        except (ValueError, KeyError) as exc:
            self.note(version, f"the stored estimator cannot be loaded ({exc})")
            fitted = None
        self._cache[version] = (info, fitted)
        return fitted

    def _lookup(self, version: str, refs: Mapping[str, Any]) -> Fitted | None:
        """:meth:`estimator`, kept for the next events of ``version`` while its reference (the
        version's, else the model's "*") is the same object."""
        est = self.estimator(version, refs)
        if est is not None:
            self._hot[version] = (refs.get(version) or refs.get("*"), est, self.batched and est.method == "cbpe")
        return est

    def note(self, version: str, reason: str) -> None:
        """Tell once per version why it gets no estimate (a log line now, a row at next close)."""
        if self.noted.get(version) == reason:
            return
        self.noted[version] = reason
        self.unwritten.append((version, reason))
        log.warning("model %s version %s: no performance estimate: %s", self.cfg.model, version, reason)

    # -- events ---------------------------------------------------------------------------------
    def observe(self, version: str, segs: list[str], event: Mapping[str, Any], refs: Mapping[str, Any]) -> None:
        """One primary prediction of ``version`` (``refs``: the model's references by version).

        With the version's CBPE estimator known, it is buffered (:mod:`~driftline.detectors.estimate_batch`):
        its prediction is kept (not copied) until the buffer is applied."""
        hot = self._hot.get(version)
        if hot is not None and hot[0] is (refs.get(version) or refs.get("*")):
            if hot[2]:
                buf = self._preds
                buf += (version, segs, event.get("prediction"))
                if len(buf) >= _PREDICTIONS:
                    self.flush()
                return
            est = hot[1]
        else:
            est = self._cold(version, refs)
            if est is _OFF:
                return
        s = self.settings
        if est is None:
            # Said only to whoever asked for verdicts: a model without labels is the common case.
            asked = s.thresholds or s.max_drop
            ref = refs.get(version) or refs.get("*")
            if asked and ref is not None and not s.reference_labels and version not in self.noted:
                self.note(version, "the reference has no labels (driftline reference set ... --labels "
                                   "COLUMN) and performance_estimation.reference_labels is 0")
            return
        row = (est.score(event.get("prediction")) if est.method == "cbpe"
               else est.row(event.get("prediction"), event.get("features") or {}))
        if row is None:
            self.note(version, "the logged predictions are not class probabilities" if est.method == "cbpe"
                      else "the logged predictions are not numbers")
            return
        cap, opened = s.sample, self.open
        for seg in segs:
            key = version + "|" + seg
            w = opened.get(key)
            if w is None:
                w = opened[key] = Window()
            # Window.add inlined (it runs per prediction and segment): below the cap, append
            rows = w.rows
            if len(rows) < cap:
                w.n += 1
                rows.append(row)
            else:
                w.add(row, cap, s.seed)

    def _cold(self, version: str, refs: Mapping[str, Any]) -> Any:
        """``version``'s estimator (None: none yet) when its hot entry does not apply, or
        :data:`_OFF` with estimation off. What is buffered goes first: the estimator may change now."""
        if not self.settings.enabled:
            return _OFF
        if self._preds or self._labels:
            self.flush()
        return self._lookup(version, refs)

    def wants_features(self, version: str, prediction: Any, refs: Mapping[str, Any]) -> bool:
        """Whether the label join should keep this prediction's features: a numeric prediction of
        a version whose estimator is still to be fitted on the stream (DLE is fitted on features
        + prediction; a classifier's class probabilities need none)."""
        if not self.collecting or version in self.fitted or not is_number(prediction):
            return False
        return self.estimator(version, refs) is None

    def labelled(self, version: str, segs: list[str], prediction: Any, pred_ts: float, label: Any,
                 refs: Mapping[str, Any], features: Mapping[str, Any] | None = None) -> None:
        """A label joined to its prediction (made at ``pred_ts``; ``features``: its inputs, when
        the join kept them for the stream fit, see :meth:`wants_features`). Buffered as
        :meth:`observe` buffers predictions."""
        hot = self._hot.get(version)
        if hot is not None and hot[0] is (refs.get(version) or refs.get("*")):
            if hot[2]:
                buf = self._labels
                buf += (len(self._preds), version, segs, prediction, pred_ts, label, refs)
                if len(buf) >= _LABELS:
                    self.flush()
                return
            est = hot[1]
        else:
            est = self._cold(version, refs)
            if est is _OFF:
                return
        s = self.settings
        if est is None:
            self._collect(version, prediction, label, features)
            return
        t, label_of = type(label), est.label_of
        y = label_of.get(label) if label_of is not None and (t is str or t is int) else est.label(label)
        if y is None:
            return
        row = est.score(prediction)  # DLE: the realised MAE / RMSE need the prediction alone
        if row is None:
            return
        self._refs = refs
        grading, cap, salt = self.grading, s.sample, s.seed
        for seg in segs:
            key = version + "|" + seg
            # a closed window's (older than every window kept: not graded), else the open one's
            if not grading.label(key, pred_ts, row, y, cap, salt, self._settle):
                w = self.open.get(key)
                if w is None:
                    w = self.open[key] = Window()
                w.add_label(row, y, cap, salt)

    def _settle(self, key: str, w: Window) -> None:
        """Grades a window over its labelled rows before they are freed (the grading cap), with the
        references of the label or close in progress; it is written at the next close, with the
        windows the engine drains then (a restart keeps it)."""
        est = self.estimator(key.split("|", 1)[0], self._refs)
        if est is not None:
            w.real = self._realised(w, est)

    def _collect(self, version: str, prediction: Any, label: Any, features: Mapping[str, Any] | None) -> None:
        s = self.settings
        if not s.reference_labels or version in self.fitted:
            return
        buf = self.collect.setdefault(version, [])
        buf.append([prediction, label, features if is_number(prediction) else None])
        if len(buf) < s.reference_labels:
            return
        del self.collect[version]
        self._hot.pop(version, None)  # the version's estimator is about to change
        from driftline.detectors.estimation import EstimationError

        # Rows saved before features were kept are [prediction, label]: no DLE from those.
        feats = [e[2] if len(e) > 2 else None for e in buf]
        try:
            info = fit_estimator([e[0] for e in buf], [e[1] for e in buf],
                                 None if any(f is None for f in feats) else feats, level=s.level,
                                 min_labels=s.min_labels, seed=s.seed)
        except EstimationError as exc:
            self.fitted[version] = {"error": str(exc)}  # tried once; a new reference retries
            self.note(version, f"no estimator from the first {len(buf):,} labelled predictions: {exc}")
            return
        self.fitted[version] = {**info, "source": f"stream:first_labelled={len(buf)}"}
        log.info("model %s version %s: %s fitted on the first %d labelled predictions",
                 self.cfg.model, version, info["method"].upper(), len(buf))

    # -- windows --------------------------------------------------------------------------------
    def _judged(self, est: Fitted) -> dict[str, float]:
        """Metric -> floor (ceiling for mae / rmse) of the metrics with a verdict."""
        s = self.settings
        out = {m: t for m, t in s.thresholds.items() if m in est.metrics}
        for m, drop in s.max_drop.items():
            base = est.reference_metrics.get(m)
            if m in est.metrics and m not in out and base is not None:
                out[m] = base + drop if m in LOWER_IS_BETTER else base - drop
        return out

    def test_count(self, refs: Mapping[str, Any]) -> int:
        """Calibrated tests of the window about to close: judged metrics x segments estimated."""
        self.flush()
        n = 0
        for key, w in self.open.items():
            version = key.split("|", 1)[0]
            est = self.estimator(version, refs)
            if est is not None and w.n >= self.cfg.min_samples:
                n += len(self._judged(est))
        return n

    def close(self, start: float, end: float, refs: Mapping[str, Any],
              per_test_alpha: float | None) -> list[tuple[str, str, DetectorResult]]:
        """Close the open windows (estimates and verdicts) and re-grade the closed ones that got
        labels; rows go to :attr:`rows`. ``per_test_alpha``: the budget's level for a verdict
        (None: the band at ``level`` decides). Returns the rows for ``drift_metrics``."""
        self.flush()
        s = self.settings
        out: list[tuple[str, str, DetectorResult]] = []
        for version, reason in self.unwritten:
            out.append((version, "", DetectorResult(DETECTOR, "*", STAT_EXCLUDED, 0.0, None, None, False, 0, 0,
                                                    (("reason", reason),))))
        self.unwritten = []
        z_band = normal_quantile(0.5 + s.level / 2)
        z_test = None if per_test_alpha is None else normal_quantile(1 - per_test_alpha)
        opened, self.open = self.open, {}
        for key, w in opened.items():
            version = key.split("|", 1)[0]
            est = self.estimator(version, refs)
            if est is None:
                continue
            w.start, w.end = start, end
            if w.n >= self.cfg.min_samples and w.rows:
                self._estimate(version, w, est, z_band, z_test)
            w.rows = []  # the sample is not needed once estimated
            w.dirty = True
            self._refs = refs
            self.grading.close(key, w, self._settle)
        if self.grading.evicted > self._told_evicted:
            log.warning("model %s: %d closed window(s) stopped awaiting labels, graded with the labels they had "
                        "(performance_estimation.grade_max_rows=%d labelled rows kept for grading)",
                        self.cfg.model, self.grading.evicted - self._told_evicted, s.grade_max_rows)
            self._told_evicted = self.grading.evicted
        return out + self.grade(refs, end)

    def grade(self, refs: Mapping[str, Any], now: float) -> list[tuple[str, str, DetectorResult]]:
        """Write the closed windows that got labels again (:attr:`rows`); the estimation error
        rows. ``now``: event time; windows older than the label horizon drop their labelled rows."""
        self.flush()
        out: list[tuple[str, str, DetectorResult]] = []
        horizon = now - self.cfg.concept.label_horizon_s
        for key, done in self.grading.items():
            version, seg = key.split("|", 1)
            est = self.estimator(version, refs)
            for w in done:
                if w.dirty and est is not None:
                    self._emit(version, seg, w, est)
                    w.dirty = False
                if w.end < horizon and not w.done:
                    self.grading.finish(w)  # no label can join it any more: graded for good
            if seg == "" and est is not None:
                out += [(version, "", r) for r in self._errors(done, est)]
        return out

    def _estimate(self, version: str, w: Window, est: Fitted, z_band: float, z_test: float | None) -> None:
        from driftline.detectors.estimation import EstimationError

        try:
            got = est.estimate(w.rows, self.settings.level)
        except EstimationError as exc:
            self.note(version, str(exc))
            return
        judged = self._judged(est)
        for m, e in got.items():
            thr = judged.get(m)
            verdict = False
            if thr is not None and math.isfinite(e.value):
                # The band's standard deviation, from its unclipped side; then the one-sided bound
                # at the budget's per-test level (or the band itself without a budget).
                sd = max(e.upper - e.value, e.value - e.lower) / z_band if math.isfinite(e.upper) else math.nan
                if z_test is None:
                    lo, hi = e.lower, e.upper
                else:
                    lo, hi = e.value - z_test * sd, e.value + z_test * sd
                verdict = bool(lo > thr) if m in LOWER_IS_BETTER else bool(hi < thr)
            w.est[m] = [_num(e.value), _num(e.lower), _num(e.upper), thr, verdict]

    def _realised(self, w: Window, est: Fitted) -> dict[str, float | None]:
        """The realised metrics over the window's labelled rows; once they are freed (the window
        stopped awaiting labels), the values of its last labels."""
        from driftline.detectors.estimation import EstimationError

        if not w.lab_rows:
            return w.real
        try:
            realised = est.realised(w.lab_rows, w.labels)
        except EstimationError:
            realised = {}
        return {m: _num(v) for m, v in realised.items()}

    def _emit(self, version: str, seg: str, w: Window, est: Fitted) -> None:
        w.real = realised = self._realised(w, est)
        share = min(1.0, w.labelled / w.n) if w.n else 0.0
        start, end = _utc(w.start), _utc(w.end)
        for m in est.metrics:
            value, lower, upper, thr, verdict = w.est.get(m, [None, None, None, None, False])
            r = realised.get(m)
            if value is None and r is None:
                continue
            self.rows.append(EstimateRow(self.cfg.model, version, seg, start, end, m,
                                         est.method, value, lower, upper, self.settings.level, thr, verdict,
                                         r, w.labelled, share, w.n))

    def _errors(self, done: Iterable[Window], est: Fitted) -> list[DetectorResult]:
        """Mean |estimate - realised| per metric over the graded windows kept."""
        out = []
        graded = [w for w in done if w.real and w.labelled >= self.cfg.min_samples]
        for m in est.metrics:
            errs = [abs(got[0] - real) for w in graded
                    if (got := w.est.get(m)) and got[0] is not None and (real := w.real.get(m)) is not None]
            if errs:
                out.append(DetectorResult(DETECTOR, m, STAT_ESTIMATION_ERROR, sum(errs) / len(errs), None, None,
                                          False, est.labelled, len(errs), (("method", est.method),)))
        return out

    def drain(self) -> list[EstimateRow]:
        rows, self.rows = self.rows, []
        return rows

    # -- retirement (detectors/retire.py) ----------------------------------------------------------
    def versions(self) -> set[str]:
        """The versions this holds anything of."""
        self.flush()
        keys = (*self.open, *(k for k, _ in self.grading.items()))
        return {*self.fitted, *self.collect, *self.noted, *(k.split("|", 1)[0] for k in keys)}

    def retire(self, version: str) -> None:
        """Forget everything of ``version`` (idle past the label horizon: no label can grade it)."""
        self.flush()
        for d in (self.fitted, self.collect, self.noted, self._cache, self._hot):
            d.pop(version, None)  # type: ignore[attr-defined]
        self.unwritten = [u for u in self.unwritten if u[0] != version]
        prefix = version + "|"
        for key in [k for k in self.open if k.startswith(prefix)]:
            del self.open[key]
        self.grading.drop(prefix)

    # -- state ----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        self.flush()
        return {"fitted": self.fitted, "collect": self.collect, "noted": self.noted,
                "unwritten": self.unwritten,
                "open": {k: w.get_state() for k, w in self.open.items()},
                "closed": self.grading.get_state(), "grading_evicted": self.grading.evicted}

    def set_state(self, state: Mapping[str, Any] | None) -> None:
        state = state or {}
        self.fitted = dict(state.get("fitted", {}))
        self.collect = {k: list(v) for k, v in state.get("collect", {}).items()}
        self.noted = dict(state.get("noted", {}))
        self.unwritten = [tuple(x) for x in state.get("unwritten", [])]  # type: ignore[misc]
        self.open = {k: Window.of(s) for k, s in state.get("open", {}).items()}
        self.grading.set_state(state.get("closed", {}), state.get("grading_evicted", 0))
        self._told_evicted = self.grading.evicted
        self._cache, self._hot = {}, {}
        self._preds.clear()  # events before this state: replaced by it
        self._labels.clear()
