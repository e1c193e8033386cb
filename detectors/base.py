"""The one detector interface and the result types every detector returns.

Every detector follows river's ``DriftDetector`` shape (house style point 4):

* ``update(...)`` feeds one observation; cost is bounded and independent of the window length;
* ``drift_detected`` is a read-only property: the verdict of the last closed window (window
  detectors) or of the last update (sequential detectors such as ADWIN);
* ``verdicts`` is a read-only mapping, feature -> verdict, of the last window this object closed:
  every result of a feature carries that verdict as ``drift``, whatever its own statistic did
  (whether *that* statistic crossed *its* threshold is ``exceeded``);
* ``close_window()`` ends the current window and returns its results as frozen dataclasses;
* ``reset()`` forgets everything observed (the reference, if any, stays);
* ``get_state()`` / ``set_state(state)`` save and restore the observed state as JSON-able data,
  so a collector restart continues exactly where it stopped.

Example
-------
>>> from driftline.detectors.base import DetectorResult
>>> r = DetectorResult("data_drift", "age", "psi", 0.31, None, 0.2, True, 5000, 1000)
>>> r.drift, r.exceeded
(True, True)
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as _dt
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import msgspec
import numpy as np

from driftline.collector.store.tables import (
    MEMORY_NOTICE_DETECTOR, REFERENCE_NOTICE_DETECTOR, STAT_ALARM_BUDGET, STAT_DRIFTED_SHARE, STAT_EXCLUDED,
    STAT_IMPACT, STAT_JOINS_EVICTED, STAT_REFERENCE_MISSING,
)

__all__ = [
    "Detector", "DetectorResult", "MetricRow", "result_to_row",
    "STAT_EXCLUDED", "STAT_DRIFTED_SHARE", "STAT_IMPACT", "STAT_ALARM_BUDGET", "SUMMARY_STATISTICS",
    "STAT_REFERENCE_MISSING", "REFERENCE_NOTICE_DETECTOR", "STAT_JOINS_EVICTED", "MEMORY_NOTICE_DETECTOR",
]

Detail = tuple[str, Any]

# Statistic names of rows that are not a test of a feature's distribution. Their one home is
# the drift_metrics table's (collector/store/tables.py), so that alerting, which sits beside
# the detectors and may not import them, reads the same names; the dashboard imports them here.
SUMMARY_STATISTICS = frozenset((STAT_EXCLUDED, STAT_DRIFTED_SHARE, STAT_IMPACT, STAT_ALARM_BUDGET,
                                STAT_REFERENCE_MISSING, STAT_JOINS_EVICTED))


@dataclasses.dataclass(frozen=True)
class DetectorResult:
    """One statistic of one detector for one feature over one window.

    ``drift`` is the detector's verdict for the feature in this window (the same on every
    statistic of the feature); ``exceeded`` whether this statistic crossed its own ``threshold``
    (``None`` when built: the same as ``drift``, see :meth:`Detector._judge`).
    ``details`` is a tuple of ``(name, value)`` pairs with detector-specific evidence (for
    example the new categories seen); it is written as a JSON object to ClickHouse.
    """

    detector: str
    feature: str
    statistic: str
    value: float
    p_value: float | None
    threshold: float | None
    drift: bool
    reference_size: int
    current_size: int
    details: tuple[Detail, ...] = ()
    exceeded: bool | None = None

    def __init__(self, detector: str, feature: str, statistic: str, value: float, p_value: float | None,
                 threshold: float | None, drift: bool, reference_size: int, current_size: int,
                 details: tuple[Detail, ...] = (), exceeded: bool | None = None) -> None:
        # The fields above, written to the instance's dict at once: the generated __init__ of a
        # frozen dataclass calls object.__setattr__ per field (~1.7 µs a result, 0.6 this way),
        # and a window of a 1,000-feature model builds ~10,000 results (issue 17).
        # test_detector_result_init_takes_the_fields keeps the two lists the same.
        d = self.__dict__
        d["detector"], d["feature"], d["statistic"], d["value"] = detector, feature, statistic, value
        d["p_value"], d["threshold"], d["drift"] = p_value, threshold, drift
        d["reference_size"], d["current_size"], d["details"] = reference_size, current_size, details
        d["exceeded"] = bool(drift) if exceeded is None else exceeded


class MetricRow(NamedTuple):
    """One row of ``driftline.drift_metrics`` (columns in table order, ``computed_at`` excluded).

    ``drift`` is the verdict of (detector, feature, segment, window); ``exceeded`` whether this
    row's statistic crossed its own threshold.

    A named tuple, not a frozen dataclass: a window of a 1,000-feature model has ~10,000 rows,
    and a frozen dataclass's ``__init__`` (16 ``object.__setattr__`` calls) cost more than the
    rest of building one; the tuple is also the row ``client.insert`` takes.
    """

    model: str
    model_version: str
    detector: str
    feature: str
    segment: str
    window_start: _dt.datetime
    window_end: _dt.datetime
    statistic: str
    value: float
    p_value: float | None
    threshold: float | None
    drift: bool
    reference_size: int
    current_size: int
    details: str
    exceeded: bool = False

    def as_tuple(self) -> tuple[Any, ...]:
        """Values in :attr:`COLUMNS` order, ready for ``client.insert``."""
        return tuple(self)


#: the column names of a :class:`MetricRow`, in table order (a named tuple's body cannot hold it)
MetricRow.COLUMNS = MetricRow._fields  # type: ignore[attr-defined]


def _plain(value: Any) -> Any:
    """A value json.dumps(default=str) would have written: numpy floats as numbers (they are float
    subclasses there), anything else unknown as its str."""
    return float(value) if isinstance(value, np.floating) else str(value)


# Sorted keys; NaN and infinities as null (JSON has none, and ClickHouse's JSON functions would choke
# on them). msgspec: 1.6 µs against json.dumps' 10 for a typical details dict, and a window of a
# 1,000-feature model writes ~10,000 rows.
_DETAILS = msgspec.json.Encoder(order="sorted", enc_hook=_plain)


def result_to_row(
    result: DetectorResult, *, model: str, model_version: str, segment: str,
    window_start: _dt.datetime, window_end: _dt.datetime,
) -> MetricRow:
    """Place a detector result in its window and segment."""
    details = _DETAILS.encode(dict(result.details)).decode()
    value = float(result.value)
    return MetricRow(  # by position: ~10,000 rows a window at 1,000 features
        model, model_version, result.detector, result.feature, segment, window_start, window_end,
        result.statistic, value, None if result.p_value is None else float(result.p_value),
        None if result.threshold is None else float(result.threshold), bool(result.drift),
        int(result.reference_size), int(result.current_size), details,
        bool(result.drift if result.exceeded is None else result.exceeded),
    )


class Detector(abc.ABC):
    """Base class of every driftline detector (see the module docstring)."""

    #: value written to ``drift_metrics.detector``
    name: ClassVar[str] = "detector"

    def __init__(self) -> None:
        self._drift = False
        self._verdicts: dict[str, bool] = {}

    @property
    def drift_detected(self) -> bool:
        """Verdict of the last closed window (or last update for sequential detectors)."""
        return self._drift

    @property
    def verdicts(self) -> Mapping[str, bool]:
        """Feature -> verdict of the last window this object closed (empty after ``reset()``;
        not part of the saved state: a restored detector has none until it closes a window)."""
        return MappingProxyType(self._verdicts)

    def _judge(self, results: Sequence[DetectorResult],
               verdicts: Mapping[str, bool] | None = None) -> tuple[DetectorResult, ...]:
        """Give every result its feature's verdict as ``drift``; keep its own crossing as ``exceeded``.

        ``verdicts`` names each feature's verdict; a feature it does not name (or every feature,
        without it) is judged drifting when any of its statistics crossed its threshold. Called
        by each detector's ``close_window``; the verdicts become :attr:`verdicts`.
        """
        judged: dict[str, bool] = {}
        for r in results:
            judged[r.feature] = judged.get(r.feature, False) or bool(r.exceeded)
        if verdicts:
            judged.update((f, bool(v)) for f, v in verdicts.items() if f in judged)
        self._verdicts = judged
        return tuple(r if r.drift == judged[r.feature]
                     else dataclasses.replace(r, drift=judged[r.feature], exceeded=r.exceeded)
                     for r in results)

    @abc.abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Feed one observation. Never raises on odd values: they are counted, not fatal."""

    @abc.abstractmethod
    def close_window(self) -> tuple[DetectorResult, ...]:
        """End the current window, return its results and start a new one."""

    @abc.abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Everything observed so far, as JSON-able data."""

    @abc.abstractmethod
    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (on an identically configured detector)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget everything observed; configuration and reference stay."""
