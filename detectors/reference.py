"""References: the baseline each model version is compared with, and where they are stored.

A :class:`Reference` holds one bounded :class:`~driftline.detectors.histogram.FeatureProfile`
per input feature and per derived output feature (``prediction``, ``confidence``, ``entropy``);
an input feature's profile also says whether its values look like an id or a timestamp
(:mod:`driftline.detectors.exclusions`), which data drift then leaves out, and how much the
model's output depends on it (its importance, estimated from the reference's predictions, or its
labels; unknown for a reference without either: :mod:`driftline.detectors.impact`). Build one from a
DataFrame (:func:`from_dataframe`), a Parquet/CSV file (:func:`from_file`), prediction events
(:func:`from_events`) or the stored prediction log (:func:`from_prediction_log`); keep them in
ClickHouse with :class:`ReferenceStore` (table ``driftline.references``, one live row per model
and version, replaceable; its DDL is in ``collector/store/tables.py``, created by
:func:`driftline.collector.store.migrate`).

>>> import pandas as pd
>>> ref = from_dataframe(pd.DataFrame({"age": [20, 30, 40, 50], "plan": ["a", "b", "a", "a"]}),
...                      "churn", "v1", bins=2)
>>> ref.features["plan"].categories
('a', 'b')
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from driftline.detectors.exclusions import recognise
from driftline.detectors.histogram import (
    DEFAULT_MAX_CATEGORIES,
    FeatureProfile, category_key, profile_numeric, profile_values,
)
from driftline.detectors.impact import FROM_LABEL, FROM_PREDICTION, with_importance
from driftline.sdk.contract import PREDICTION
from driftline.sdk.contract.schema import NUMBER_TYPES

__all__ = [
    "Reference", "prediction_features",
    "from_dataframe", "from_file", "from_events", "from_prediction_log",
    "reference_size_needed", "size_note", "MAX_EXTRA_VARIANCE",
]

# Id/timestamp recognition reads the first values of each feature, in order (counters).
_RECOGNISE_VALUES = 200_000


#: How much a reference's own sampling error may add to the variance of a window's comparison.
MAX_EXTRA_VARIANCE = 0.1


def reference_size_needed(window_size: int, *, max_extra_variance: float = MAX_EXTRA_VARIANCE) -> int:
    """Events a reference needs so that its own sampling error is small next to a window's.

    Every window of ``n`` events is compared with the same reference of ``m`` events. A
    difference of means (or of any statistic that is an average over events) then has variance
    ``s**2 * (1/n + 1/m)``: the window's own ``1/n`` plus the reference's ``1/m``, and the
    reference's part is the same draw in every window, so a reference that happens to sit off
    the population moves every verdict the same way. Asking the reference to add at most
    ``max_extra_variance`` to the window's variance gives ``m >= n / max_extra_variance``.

    At the default 0.1 (ten windows' worth): the smallest shift a test can see grows by
    ``sqrt(1.1) - 1`` = 4.9 %, and a test held at a per-test alpha of 1e-5 (z = 4.42) raises,
    averaged over reference draws, ``2.5`` times as many false alarms as with a perfect
    reference (1.1 times at alpha 0.05). A reference as large as one window (``m = n``) makes
    those 41 % and 180 times; 20 windows' worth, 2.5 % and 1.6 times. With 1,000-event windows:
    10,000 events, a standard error of the mean of 0.010 SD against the window's 0.032.

    >>> reference_size_needed(1000)
    10000
    >>> reference_size_needed(250, max_extra_variance=0.2)
    1250
    """
    if window_size <= 0:
        raise ValueError(f"window_size must be positive, got {window_size}")
    if not 0 < max_extra_variance <= 1:
        raise ValueError(f"max_extra_variance must be in (0, 1], got {max_extra_variance}")
    return math.ceil(window_size / max_extra_variance - 1e-9)


def size_note(reference_events: int, window_size: int) -> str | None:
    """The note a too-small reference gets (``None`` when it is large enough).

    >>> size_note(800, 1000)
    'reference of 800 events; 10,000 recommended for 1,000-event windows'
    >>> size_note(10_000, 1000) is None
    True
    """
    needed = reference_size_needed(window_size)
    if reference_events >= needed:
        return None
    return f"reference of {reference_events:,} events; {needed:,} recommended for {window_size:,}-event windows"


def prediction_features(prediction: Any) -> dict[str, Any]:
    """Derived output features: the label or value, top-class confidence and score entropy.

    >>> prediction_features({"yes": 0.8, "no": 0.2})["prediction"]
    'yes'
    """
    if isinstance(prediction, list):
        if prediction and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in prediction):
            if len(prediction) > 1 and abs(sum(prediction) - 1.0) < 1e-3:
                prediction = {str(i): float(v) for i, v in enumerate(prediction)}
            else:
                return {"prediction": prediction[0]}
        else:
            return {}
    if type(prediction) is dict or isinstance(prediction, Mapping):  # the ABC check is slow
        if not prediction:
            return {}
        # One pass for the top class (the first of equal maxima, as max() picks) and the total;
        # this runs for every prediction and every label, so it avoids key functions and
        # generators. Same arithmetic, in the same order, as the plain formulas.
        top: Any = None
        best = 0.0
        total: float = 0
        floats = []
        for k, v in prediction.items():
            if top is None or v > best:
                top, best = k, v
            f = float(v)
            floats.append(f)
            total += f if f > 0.0 else 0.0
        ent = 0.0
        if total > 0 and len(floats) > 1:
            for f in floats:
                p = (f if f > 0.0 else 0.0) / total
                if p > 0:
                    ent -= p * math.log(p)
            ent /= math.log(len(floats))  # normalised to [0, 1]
        return {"prediction": top, "confidence": float(best), "entropy": ent}
    return {"prediction": prediction}


@dataclasses.dataclass(frozen=True)
class Reference:
    """Baseline of one model version: input and output feature profiles."""

    model: str
    model_version: str
    features: Mapping[str, FeatureProfile]
    outputs: Mapping[str, FeatureProfile]
    n_rows: int
    source: str = ""
    created_at: str = ""
    #: a bounded sample of raw reference rows, for the multivariate detectors
    sample: tuple[Mapping[str, Any], ...] = ()
    #: the performance estimator fitted on the reference's labels (JSON-able, see
    #: :mod:`driftline.detectors.estimate_fit`), or None for a reference without labels
    estimator: Mapping[str, Any] | None = None

    def to_json(self) -> str:
        """The reference as JSON; made once per reference (it is immutable) and kept: a model's
        full state and its journal carry it, and at 1,000 models re-encoding it was ~5 % of the
        collector's CPU (bench/fleet.md)."""
        return self._json

    @functools.cached_property
    def _json(self) -> str:  # cached_property writes the instance's __dict__: fine when frozen
        doc = {
            "model": self.model, "model_version": self.model_version, "n_rows": self.n_rows,
            "source": self.source, "created_at": self.created_at,
            "features": [p.to_json() for p in self.features.values()],
            "outputs": [p.to_json() for p in self.outputs.values()],
            "sample": list(self.sample),
        }
        if self.estimator is not None:
            doc["estimator"] = self.estimator
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> "Reference":
        d = json.loads(text)
        feats = {p["name"]: FeatureProfile.from_json(p) for p in d["features"]}
        outs = {p["name"]: FeatureProfile.from_json(p) for p in d["outputs"]}
        return cls(d["model"], d["model_version"], feats, outs, int(d["n_rows"]),
                   d.get("source", ""), d.get("created_at", ""), tuple(d.get("sample", ())),
                   d.get("estimator"))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _profile_series(name: str, s: Any, *, bins: int, max_categories: int, categorical: bool) -> FeatureProfile:
    import pandas as pd

    missing = int(s.isna().sum())
    present = s.dropna()
    is_bool = pd.api.types.is_bool_dtype(present)
    looks = recognise(present.head(_RECOGNISE_VALUES).tolist())
    if not categorical and pd.api.types.is_numeric_dtype(present) and not is_bool:
        profile = profile_numeric(name, present.to_numpy(dtype=float), bins=bins, missing=missing)
        return dataclasses.replace(profile, looks_like=looks)
    # value_counts keeps this O(rows) in C; only the distinct values reach Python.
    freq: dict[str, int] = {}
    kinds: set[type] = set()
    for value, c in present.value_counts().items():
        value = value.item() if hasattr(value, "item") else value
        kinds.add(type(value))
        k = category_key(value)
        freq[k] = freq.get(k, 0) + int(c)
    dtype = "bool" if kinds <= {bool} and kinds else ("string" if str in kinds or not kinds else "number")
    top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
    n = sum(freq.values())
    other = n - sum(c for _, c in top)
    return FeatureProfile(name, "categorical", dtype, tuple(c for _, c in top) + (other,), n,
                          missing, categories=tuple(k for k, _ in top), looks_like=looks)


def from_dataframe(df: Any, model: str, version: str, *, prediction_column: str | None = None,
                   exclude: Sequence[str] = (), bins: int = 20, max_categories: int = DEFAULT_MAX_CATEGORIES,
                   categorical: Sequence[str] = (), source: str = "dataframe",
                   sample_size: int = 1000, label_column: str | None = None) -> Reference:
    """Build a reference from a pandas DataFrame of training (or any baseline) data.

    Every column is an input feature except ``prediction_column`` (profiled as the output),
    ``label_column`` (the true label) and ``exclude``. Each feature's importance is estimated
    against the predictions, else against the labels; with neither it is unknown.
    """
    feats: dict[str, FeatureProfile] = {}
    outs: dict[str, FeatureProfile] = {}
    for col in df.columns:
        name = str(col)
        if name in exclude or name in (prediction_column, label_column):
            continue
        feats[name] = _profile_series(name, df[col], bins=bins, max_categories=max_categories,
                                      categorical=name in categorical)
    target: Any = None
    if prediction_column is not None:
        derived: dict[str, list[Any]] = {}
        target = []
        for value in df[prediction_column].tolist():
            pf = prediction_features(value)
            target.append(pf.get("prediction"))
            for k, v in pf.items():
                derived.setdefault(k, []).append(v)
        outs = {k: profile_values(k, v, bins=bins, max_categories=max_categories)
                for k, v in derived.items()}
    columns = {str(c): df[c] for c in df.columns if str(c) in feats}
    if target is not None:
        feats = with_importance(feats, columns, target, FROM_PREDICTION)
    elif label_column is not None:
        feats = with_importance(feats, columns, df[label_column], FROM_LABEL)
    cols = list(feats)
    sub = df[cols].sample(n=min(sample_size, len(df)), random_state=0) if len(df) else df[cols]
    sample = tuple({k: _plain(v) for k, v in row.items()} for row in sub.to_dict("records"))
    return Reference(model, version, feats, outs, int(len(df)), source, _now(), sample)


def _plain(v: Any) -> Any:
    # numpy scalars and NaN do not survive JSON; None is "missing" everywhere in driftline.
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and math.isnan(v) else v


def from_file(path: str | Path, model: str, version: str, **kwargs: Any) -> Reference:
    """Read a Parquet or CSV file with pandas and build a reference (see :func:`from_dataframe`)."""
    import pandas as pd

    p = Path(path)
    df = pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)
    kwargs.setdefault("source", f"file:{p.name}")
    return from_dataframe(df, model, version, **kwargs)


def from_events(events: Iterable[Mapping[str, Any]], model: str, version: str, *, bins: int = 20,
                max_categories: int = DEFAULT_MAX_CATEGORIES, categorical: Sequence[str] = (),
                source: str = "events", sample_size: int = 1000) -> Reference:
    """Build a reference from prediction events (schema v1 dicts)."""
    import random

    rng = random.Random(0)
    sample: list[Mapping[str, Any]] = []
    columns: dict[str, list[Any]] = {}
    outputs: dict[str, list[Any]] = {}
    target: list[Any] = []  # row-aligned prediction, for importance
    n = 0
    for ev in events:
        feats = ev.get("features") or {}
        for name in sorted(feats.keys() - columns.keys()):
            columns[name] = [None] * n  # a feature first seen late was missing before
        for name, vals in columns.items():
            vals.append(feats.get(name))
        derived = prediction_features(ev.get("prediction"))
        target.append(derived.get("prediction"))
        for k, v in derived.items():
            outputs.setdefault(k, []).append(v)
        n += 1
        if len(sample) < sample_size:
            sample.append(dict(feats))
        elif (j := rng.randrange(n)) < sample_size:
            sample[j] = dict(feats)
    feats_p = {k: dataclasses.replace(_profile(k, v, bins=bins, max_categories=max_categories,
                                               categorical=k in categorical),
                                      looks_like=recognise(v[:_RECOGNISE_VALUES]))
               for k, v in columns.items()}
    outs_p = {k: _profile(k, v, bins=bins, max_categories=max_categories)
              for k, v in outputs.items()}
    feats_p = with_importance(feats_p, columns, target, FROM_PREDICTION)
    return Reference(model, version, feats_p, outs_p, n, source, _now(), tuple(sample))


_NUMBERS = NUMBER_TYPES | {type(None)}


def _profile(name: str, values: list[Any], *, bins: int, max_categories: int,
             categorical: bool = False) -> FeatureProfile:
    """:func:`profile_values`, with numbers (and missing values) profiled in numpy: rolling
    references rebuild from 10,000 events every few windows, and the per-value type checks
    were most of the cost."""
    if not categorical:
        kinds = set(map(type, values))
        if kinds <= _NUMBERS and kinds - {type(None)}:
            import numpy as np

            arr = np.array(values, dtype=float)  # None -> NaN
            present = arr[~np.isnan(arr)]
            return profile_numeric(name, present, bins=bins, missing=int(arr.size - present.size))
    return profile_values(name, values, bins=bins, max_categories=max_categories, categorical=categorical)


def from_prediction_log(client: Any, model: str, version: str, *, first_n: int | None = None,
                        start: str | None = None, end: str | None = None, **kwargs: Any) -> Reference:
    """Build a reference from ``driftline.predictions``: the first N events and/or a time range."""
    where = ["model = {model:String}", "model_version = {version:String}"]
    params: dict[str, Any] = {"model": model, "version": version}
    if start:
        where.append("timestamp >= parseDateTime64BestEffort({start:String}, 6)")
        params["start"] = start
    if end:
        where.append("timestamp < parseDateTime64BestEffort({end:String}, 6)")
        params["end"] = end
    sql = ("SELECT features_num, features_str, features_bool, features_null, prediction "
           f"FROM driftline.{PREDICTION.table} WHERE {' AND '.join(where)} ORDER BY timestamp")
    if first_n:
        sql += f" LIMIT {int(first_n)}"
    rows = client.query(sql, parameters=params).result_rows

    def events() -> Iterable[dict[str, Any]]:
        for num, strs, bools, nulls, pred in rows:
            feats: dict[str, Any] = {**num, **strs, **{k: bool(v) for k, v in bools.items()}}
            feats.update({k: None for k in nulls})
            yield {"features": feats, "prediction": json.loads(pred) if pred else None}

    what = f"log:first={first_n}" if first_n else "log"
    if start or end:
        what += f":{start or ''}..{end or ''}"
    kwargs.setdefault("source", what)
    ref = from_events(events(), model, version, **kwargs)
    if ref.n_rows == 0:
        from driftline.sdk.errors import ConfigError
        raise ConfigError(f"no predictions of {model} {version} in that range: nothing to build a reference from")
    return ref
