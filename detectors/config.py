"""Detector configuration: one YAML file per model, validated once at start-up.

Settings are frozen pydantic models with ``extra="forbid"``: a misspelled key is an error that
names its path (``churn.data_drift.tresholds: Extra inputs are not permitted``).

Example ``churn.yaml``::

    model: churn
    window: {kind: count, size: 5000}
    min_samples: 500
    reference: {source: stored, bins: 20}
    data_drift: {correction: bh, thresholds: {psi: 0.2}}
    concept: {task: classification, label_horizon_s: 86400, detectors: [adwin, ddm]}
    segments: {tags: [region], max_segments: 20}

>>> cfg = DetectorsConfig.from_mapping({"model": "churn", "window": {"kind": "count", "size": 100}})
>>> cfg.models[0].window.size
100
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from driftline.detectors.histogram import DEFAULT_MAX_CATEGORIES
from driftline.sdk.errors import ConfigError

__all__ = [
    "Settings", "WindowSettings", "ReferenceSettings", "Thresholds", "AlarmBudgetSettings",
    "DataDriftSettings",
    "PredictionDriftSettings", "MultivariateSettings", "ConceptSettings", "ShadowSettings",
    "ABSettings", "QualitySettings", "SegmentSettings", "PerformanceEstimationSettings",
    "ModelConfig", "DetectorsConfig",
    "load_config", "DEFAULT_FIRST_EVENTS", "BUDGET_PERIODS_S", "RETIRE_VERSION_AFTER_S",
]

#: Size of the first-events reference of a model no configuration names (see ``default_for``):
#: ten default windows, so that the reference's own sampling error adds at most 10 % to the
#: variance of each window's comparison (see
#: :func:`driftline.detectors.reference.reference_size_needed`).
DEFAULT_FIRST_EVENTS = 10_000

NumericTest = Literal["psi", "ks", "wasserstein", "jensen_shannon"]
CategoricalTest = Literal["chi2", "jensen_shannon", "psi"]
#: calibrated tests of numeric features (categorical: chi2; every feature: missing)
CalibratedNumericTest = Literal["wilcoxon", "mood", "ks"]
#: Default ``retire_version_after_s``: a version idle for a week of event time is retired.
RETIRE_VERSION_AFTER_S = 7 * 86_400.0
#: seconds of each ``alarm_budget.per``
BUDGET_PERIODS_S = {"hour": 3600.0, "day": 86_400.0, "week": 604_800.0}


class Settings(BaseModel):
    """Base: frozen, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSettings(Settings):
    """Tumbling windows: every ``size`` prediction events, or every ``duration_s`` of event time."""

    kind: Literal["count", "time"] = "count"
    size: int = Field(1000, gt=0)
    duration_s: float = Field(3600.0, gt=0)
    # A quiet time window still closes once the clock passes its end by this much.
    grace_s: float = Field(60.0, ge=0)


class ReferenceSettings(Settings):
    """Where the baseline comes from.

    * ``stored``: the reference store (``driftline reference set``);
    * ``first_events``: the first ``first_events`` events of each version;
    * ``rolling``: the traffic of a trailing span, the last ``events`` events (and, with
      ``span_s``, only those of the last ``span_s`` seconds of event time), ending
      ``lag_windows`` windows before the current one so that slow drift is not absorbed at
      once; rebuilt every ``rebuild_windows`` windows;
    * ``sampled``: a uniform reservoir sample (algorithm R, seeded by ``seed``) of ``events``
      events, drawn from the first ``span_events`` events (``of: first``, then fixed) or from
      each period of ``rebuild_windows`` windows, which becomes the reference of the next
      period (``of: trailing``).

    With ``rolling`` and ``sampled`` a stored reference, if there is one, is used until the
    first one built from traffic replaces it. Every change of reference restarts the version's
    windows. The traffic kept for them is bounded (at most ``events`` events plus
    ``lag_windows + 1`` windows of at most ``events`` each) and saved with the model's state.
    """

    source: Literal["stored", "first_events", "rolling", "sampled"] = "stored"
    first_events: int = Field(DEFAULT_FIRST_EVENTS, gt=0)
    # first_events: once this many events are in, a provisional reference built from them is
    # used until the full one exists (0: none). Its windows are reported with "provisional":
    # true and never drift: a reference that small would spend the false-alarm budget.
    provisional_events: int = Field(0, ge=0)
    bins: int = Field(20, ge=2, le=1000)
    max_categories: int = Field(DEFAULT_MAX_CATEGORIES, ge=1, le=10_000)
    categorical: tuple[str, ...] = ()
    # rolling and sampled
    events: int = Field(DEFAULT_FIRST_EVENTS, gt=0, le=1_000_000)
    rebuild_windows: int = Field(10, ge=1)
    # rolling
    lag_windows: int = Field(1, ge=0, le=1000)
    span_s: float | None = Field(None, gt=0)
    # sampled
    of: Literal["first", "trailing"] = "first"
    span_events: int = Field(100_000, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _span_fits(self) -> "ReferenceSettings":
        if self.provisional_events and not (self.source == "first_events"
                                            and self.provisional_events < self.first_events):
            raise ValueError("provisional_events is a setting of source: first_events, below first_events")
        if self.span_s is not None and self.source != "rolling":
            raise ValueError("span_s is a setting of source: rolling")
        if self.source == "sampled" and self.of == "first" and self.span_events < self.events:
            raise ValueError(f"span_events ({self.span_events}) must be at least events ({self.events}): "
                             "the sample is drawn from the first span_events events")
        return self


class Thresholds(Settings):
    """Distance thresholds (drift when above) and the significance level of p-value tests."""

    psi: float = Field(0.2, gt=0)
    wasserstein: float = Field(0.1, gt=0)
    jensen_shannon: float = Field(0.1, gt=0, le=1)
    alpha: float = Field(0.05, gt=0, lt=1)


class AlarmBudgetSettings(Settings):
    """How many false drift verdicts a model may raise: ``false_verdicts`` per ``per`` at the
    model's observed traffic, or per ``windows`` windows while the traffic is unknown (count
    windows before ``min_observed_windows`` have closed with a time span).

    The probability of a false verdict per model and window is ``false_verdicts`` divided by
    the windows per period (at most ``max_window_alpha``), split evenly (Bonferroni) over every
    calibrated test of the model: features x tests x scales x segments x drift detectors.

    >>> AlarmBudgetSettings().false_verdicts, AlarmBudgetSettings().per
    (1.0, 'week')
    """

    false_verdicts: float = Field(1.0, gt=0)
    per: Literal["hour", "day", "week"] = "week"
    windows: int = Field(1000, ge=1)
    max_window_alpha: float = Field(0.01, gt=0, lt=1)
    min_observed_windows: int = Field(3, ge=1)


class DataDriftSettings(Settings):
    """Per-feature drift tests and how a feature's verdict is reached.

    ``calibration: budget`` (default): the verdict is any calibrated test of the feature
    (``calibrated_numeric`` or chi2, plus the missing-value rate) under the per-test level that
    keeps the model within ``alarm_budget``, on the window alone or pooled with the previous
    windows (``scales``: pooled window counts; slow shifts add up). The ``numeric_tests`` /
    ``categorical_tests`` distances (psi, jensen_shannon, wasserstein) are reported as
    magnitudes against their fixed ``thresholds``. ``calibration: fixed``: the verdict test per
    kind over its fixed threshold, and the corrected KS / chi2 p-value under ``thresholds.alpha``.
    """

    enabled: bool = True
    calibration: Literal["budget", "fixed"] = "budget"
    alarm_budget: AlarmBudgetSettings = AlarmBudgetSettings()
    calibrated_numeric: tuple[CalibratedNumericTest, ...] = ("wilcoxon", "mood", "ks")
    scales: tuple[int, ...] = (1, 2, 4, 8)
    numeric_tests: tuple[NumericTest, ...] = ("psi", "ks", "wasserstein", "jensen_shannon")
    categorical_tests: tuple[CategoricalTest, ...] = ("chi2", "jensen_shannon", "psi")
    verdict_numeric: NumericTest = "wasserstein"
    verdict_categorical: CategoricalTest = "jensen_shannon"
    thresholds: Thresholds = Thresholds()
    correction: Literal["bh", "bonferroni", "none"] = "bh"
    # A verdict needs the distance over its threshold AND the corrected KS / chi-squared test
    # under alpha (fewer false alarms on small windows; no effect on large ones).
    require_significance: bool = True
    dataset_drift_share: float = Field(0.5, gt=0, le=1)
    # Only these features are judged (empty: all); these never are. Either way a feature left
    # out is reported once per window as statistic "excluded" with the reason, never as drift.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # Features whose reference looks like an id or a timestamp are left out (they differ in
    # every window by construction); ``keep`` (or ``include``) names features judged anyway.
    auto_exclude: bool = True
    keep: tuple[str, ...] = ()
    # Feature -> importance to the model, used for impact (importance x drift magnitude) instead
    # of the estimate from the reference (detectors/impact.py); a feature not named weighs 0.
    importance: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}

    @model_validator(mode="after")
    def _verdict_is_computed(self) -> "DataDriftSettings":
        if not self.scales or min(self.scales) < 1 or max(self.scales) > 64 or 1 not in self.scales:
            raise ValueError("scales must include 1, each between 1 and 64 windows")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError("scales must not repeat")
        if self.verdict_numeric not in self.numeric_tests:
            raise ValueError(f"verdict_numeric {self.verdict_numeric!r} is not in numeric_tests")
        if self.verdict_categorical not in self.categorical_tests:
            raise ValueError(f"verdict_categorical {self.verdict_categorical!r} is not in categorical_tests")
        return self


class PredictionDriftSettings(Settings):
    """Drift of the model output: label/value, top-class confidence and entropy."""

    enabled: bool = True


class MultivariateSettings(Settings):
    """Multivariate drift: PCA reconstruction error (the default), a domain classifier (on demand,
    scikit-learn) or an alibi-detect backend (optional extra). Every backend leaves out the
    features data drift does not judge (``data_drift.exclude`` / ``include``, ids, timestamps)."""

    enabled: bool = True
    backend: Literal["pca", "domain_classifier", "alibi_mmd", "alibi_lsdd", "alibi_classifier"] = "pca"
    # Rows kept per window (a reservoir sample beyond it) for the pca, domain_classifier and
    # alibi_classifier backends.
    sample_size: int = Field(1000, ge=50, le=100_000)
    # pca: probability of a false verdict per stationary window (one-sided test of the window's
    # mean reconstruction error against the reference's out-of-fold errors). With data drift's
    # false-alarm budget on (calibration: budget), the test counts as one of the model's tests and
    # runs at the smaller of this and the budget's per-test level.
    alpha: float = Field(1e-4, gt=0, lt=0.5)
    # pca: the fewest components explaining this share of the reference's variance, at most
    # max_components, always leaving one residual direction.
    pca_variance: float = Field(0.95, gt=0, lt=1)
    max_components: int = Field(50, ge=1, le=10_000)
    # pca: one-hot columns for at most this many of a categorical feature's most frequent
    # reference categories (0: categorical features are left out).
    top_categories: int = Field(5, ge=0, le=100)
    auc_threshold: float = Field(0.6, gt=0.5, lt=1)
    folds: int = Field(3, ge=2, le=10)
    seed: int = 0
    alibi_p_value: float = Field(0.05, gt=0, lt=1)


class ConceptSettings(Settings):
    """Labels joined to predictions, performance per window, sequential error detectors."""

    enabled: bool = True
    task: Literal["auto", "classification", "regression"] = "auto"
    label_horizon_s: float = Field(86_400.0, gt=0)
    max_pending: int = Field(200_000, gt=0)
    detectors: tuple[Literal["adwin", "page_hinkley", "kswin", "ddm"], ...] = ("adwin", "ddm")
    positive_label: str = "1"
    # Drift when a window's metric is worse than the first full window's by this fraction.
    degradation: float = Field(0.1, gt=0)
    # Expected metrics (accuracy, f1, roc_auc, mae, rmse), e.g. from validation; else the first
    # full window is the baseline.
    expected_metrics: dict[Literal["accuracy", "f1", "roc_auc", "mae", "rmse"], float] = {}
    adwin_delta: float = Field(0.002, gt=0, lt=1)
    ddm_warm_start: int = Field(500, ge=30)
    seed: int = 0


class ShadowSettings(Settings):
    """Primary vs. shadow outputs paired by request id."""

    enabled: bool = True
    min_agreement: float = Field(0.95, ge=0, le=1)
    numeric_tolerance: float = Field(0.0, ge=0)
    max_mean_abs_diff: float | None = Field(None, ge=0)
    max_js: float = Field(0.1, gt=0, le=1)
    pairing_timeout_s: float = Field(600.0, gt=0)
    max_pending: int = Field(100_000, gt=0)


class ABSettings(Settings):
    """Experiment arms: per-variant prediction and outcome metrics with a significance test."""

    enabled: bool = False
    control: str = "primary"
    outcomes: tuple[str, ...] = ()
    alpha: float = Field(0.05, gt=0, lt=1)
    attribution_s: float = Field(86_400.0, gt=0)
    max_pending: int = Field(200_000, gt=0)


class QualitySettings(Settings):
    """Data-quality limits per feature per window (rates in [0, 1])."""

    enabled: bool = True
    max_missing_rate_increase: float = Field(0.1, ge=0, le=1)
    max_type_violation_rate: float = Field(0.01, ge=0, le=1)
    max_out_of_range_rate: float = Field(0.05, ge=0, le=1)
    max_new_category_rate: float = Field(0.05, ge=0, le=1)
    # Out-of-range and new-category rates are judged on present values only, and only when the
    # window and the reference each have at least this many: on ~50 values of a mostly-null
    # feature a 5 % limit is 3 values, crossed in a third of stationary windows.
    min_present: int = Field(100, ge=1)


EstimatedMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse"]


class PerformanceEstimationSettings(Settings):
    """Performance estimated before the labels arrive (issue 18): CBPE for classifiers that log
    class probabilities, DLE for regressors, per window and segment, with a band at ``level``.

    The estimator comes with the version's reference (``driftline reference set ... --labels
    COLUMN``) or, when the reference has none and ``reference_labels`` is set, is fitted on the
    first ``reference_labels`` labelled predictions of the version in the stream. Each window
    keeps a uniform sample of at most ``sample`` rows per segment (reservoir, seeded): the
    estimate is computed on it at window close, while ``n`` counts every prediction.

    Verdicts ("estimated accuracy below 0.9"): a metric named in ``thresholds`` (a floor; for
    ``mae`` / ``rmse`` a ceiling), or in ``max_drop`` (a floor at the reference's own value minus
    the drop; ceiling: plus), is judged only when the whole band is past it, the band taken at
    the false-alarm budget's per-test level (``data_drift.alarm_budget``: each judged metric and
    segment counts as one calibrated test of the model). ``grade_windows``: closed windows per
    version and segment kept for grading as their labels arrive; labels of older windows are
    not graded. ``grade_max_rows``: labelled rows (a sample of at most ``sample`` per window)
    kept in all of the model's closed windows still awaiting labels; past it the oldest window
    stops awaiting, graded with the labels it has (counted in
    ``driftline_estimation_grading_evicted_total{model}``). A window also stops awaiting once
    ``concept.label_horizon_s`` has passed since its end.

    >>> PerformanceEstimationSettings(thresholds={"accuracy": 0.9}).level
    0.95
    """

    enabled: bool = True
    thresholds: dict[EstimatedMetric, Annotated[float, Field(allow_inf_nan=False)]] = {}
    max_drop: dict[EstimatedMetric, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = {}
    level: float = Field(0.95, gt=0.5, lt=1)
    sample: int = Field(5000, ge=100, le=100_000)
    min_labels: int = Field(200, ge=10)
    reference_labels: int = Field(0, ge=0, le=1_000_000)
    grade_windows: int = Field(48, ge=1, le=1000)
    grade_max_rows: int = Field(100_000, ge=100, le=10_000_000)
    seed: int = 0

    @model_validator(mode="after")
    def _labels_enough(self) -> "PerformanceEstimationSettings":
        if self.reference_labels and self.reference_labels < self.min_labels:
            raise ValueError(f"reference_labels ({self.reference_labels}) must be at least min_labels "
                             f"({self.min_labels}): the estimator is fitted on them")
        return self


class SegmentSettings(Settings):
    """Tags whose values become segments; at most ``max_segments`` values per tag are tracked."""

    tags: tuple[str, ...] = ()
    max_segments: int = Field(20, ge=1, le=1000)


class ModelConfig(Settings):
    """All detector settings of one model."""

    model: str = Field(min_length=1)
    window: WindowSettings = WindowSettings()
    min_samples: int = Field(100, ge=1)
    reference: ReferenceSettings = ReferenceSettings()
    data_drift: DataDriftSettings = DataDriftSettings()
    prediction_drift: PredictionDriftSettings = PredictionDriftSettings()
    multivariate: MultivariateSettings = MultivariateSettings()
    concept: ConceptSettings = ConceptSettings()
    shadow: ShadowSettings = ShadowSettings()
    ab: ABSettings = ABSettings()
    quality: QualitySettings = QualitySettings()
    segments: SegmentSettings = SegmentSettings()
    performance_estimation: PerformanceEstimationSettings = PerformanceEstimationSettings()
    # A version with no prediction for this long (event time, against the model's watermark) is
    # retired: its detectors and saved state are dropped, and it starts afresh if it gets events
    # again (detectors/retire.py). Never before concept.label_horizon_s: its labels can join
    # until then. 0 or null: never.
    retire_version_after_s: float | None = Field(RETIRE_VERSION_AFTER_S, ge=0)


class DetectorsConfig(Settings):
    """Configuration of every monitored model."""

    models: tuple[ModelConfig, ...] = ()

    def for_model(self, model: str) -> ModelConfig | None:
        for m in self.models:
            if m.model == model:
                return m
        return None

    def default_for(self, model: str) -> ModelConfig:
        """Settings of ``model``: its own, else the ``model: "*"`` document's, else the defaults.

        A model seen without any configuration is monitored with the defaults except its
        reference: a new user has no training data in the store yet, so it is built from the
        model's first :data:`DEFAULT_FIRST_EVENTS` events per version (a stored reference, if
        there is one, still wins) and drift is reported from then on.

        >>> DetectorsConfig().default_for("churn").reference.source
        'first_events'
        """
        own = self.for_model(model)
        if own is not None:
            return own
        template = self.for_model("*")
        if template is not None:
            return template.model_copy(update={"model": model})
        return ModelConfig(model=model, reference=ReferenceSettings(source="first_events"))

    @classmethod
    def from_mapping(cls, *docs: Mapping[str, Any]) -> "DetectorsConfig":
        """Validate one mapping per model; raise :class:`ConfigError` naming the bad key."""
        models = []
        for i, doc in enumerate(docs):
            where = str(doc.get("model") or f"model[{i}]") if isinstance(doc, Mapping) else f"model[{i}]"
            try:
                models.append(ModelConfig.model_validate(doc))
            except pydantic.ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
                raise ConfigError(f"{where}.{loc}: {err['msg']}") from None
        names = [m.model for m in models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"model: {sorted(dup)[0]!r} is configured twice")
        return cls(models=tuple(models))


def load_config(*paths: str | Path) -> DetectorsConfig:
    """Read YAML files or directories of ``*.yaml``/``*.yml`` files: one mapping per model, and
    several models per file as YAML documents separated by ``---``. A document with
    ``model: "*"`` holds the settings of every model no other document names."""
    import yaml

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml"))
        elif p.exists():
            files.append(p)
        else:
            raise ConfigError(f"detector config: no such file or directory: {p}")
    docs = []
    for f in files:
        try:
            found = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        except yaml.YAMLError as exc:
            raise ConfigError(f"{f}: not valid YAML: {exc}") from None
        if not found:
            raise ConfigError(f"{f}: empty; expected a mapping with a 'model' key")
        for i, doc in enumerate(found):
            if not isinstance(doc, Mapping):
                where = f"{f} (document {i + 1})" if len(found) > 1 else str(f)
                raise ConfigError(f"{where}: expected a mapping with a 'model' key")
        docs += found
    return DetectorsConfig.from_mapping(*docs)
