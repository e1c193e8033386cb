"""Optional multivariate drift with alibi-detect (online MMD, online LSDD, classifier drift).

alibi-detect 0.12+ is licensed under the Business Source License 1.1: no production use without
a commercial licence from Seldon. It is therefore never a core dependency: install it with
``pip install "driftline[alibi]"`` and choose ``multivariate.backend: alibi_mmd`` (or
``alibi_lsdd`` / ``alibi_classifier``). Nothing here imports ``alibi_detect`` until such a
detector is built, so the rest of driftline neither needs nor loads it. It also pins numpy<2,
so it usually lives in its own environment.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any, Collection, Mapping, Sequence

from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.config import MultivariateSettings
from driftline.detectors.multivariate import RowEncoder
from driftline.sdk.errors import ConfigError

__all__ = ["AlibiDriftDetector", "LICENSE_NOTE"]

LICENSE_NOTE = ("alibi-detect is licensed under the Business Source License 1.1 (no production use "
                "without a commercial licence); driftline's core detectors do not need it")


def _import_cd() -> Any:
    try:
        import alibi_detect.cd as cd  # noqa: PLC0415 - optional, imported only when configured
    except ImportError as exc:
        raise ConfigError(
            "multivariate.backend: alibi backends need alibi-detect; install it with "
            f"pip install 'driftline[alibi]' ({LICENSE_NOTE}), or use backend: domain_classifier"
        ) from exc
    return cd


class AlibiDriftDetector(Detector):
    """Wraps an alibi-detect detector behind driftline's detector interface."""

    def __init__(self, reference_rows: Sequence[Mapping[str, Any]], settings: MultivariateSettings, *,
                 min_samples: int = 100, ert: float = 1000.0, window_size: int = 50,
                 exclude: Collection[str] = ()) -> None:
        super().__init__()
        import numpy as np

        cd = _import_cd()
        self.settings = settings
        self.min_samples = min_samples
        self.encoder = RowEncoder(reference_rows, exclude)
        x_ref = np.nan_to_num(np.asarray([self.encoder.encode(r) for r in reference_rows], dtype="float32"))
        self.backend = settings.backend
        self.name = f"multivariate.{settings.backend}"  # type: ignore[misc]
        if settings.backend == "alibi_mmd":
            self._cd = cd.MMDDriftOnline(x_ref, ert=ert, window_size=window_size, backend="pytorch", verbose=False)
        elif settings.backend == "alibi_lsdd":
            self._cd = cd.LSDDDriftOnline(x_ref, ert=ert, window_size=window_size, backend="pytorch", verbose=False)
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier
            self._cd = cd.ClassifierDrift(x_ref, model=HistGradientBoostingClassifier(max_iter=50),
                                          backend="sklearn", p_val=settings.alibi_p_value,
                                          n_folds=settings.folds)
        self._online = settings.backend != "alibi_classifier"
        self._clear()

    def _clear(self) -> None:
        self.n = 0
        self.detections = 0
        self.last_stat = 0.0
        self.last_threshold = 0.0
        self.batch: list[list[float]] = []

    def update(self, features: Mapping[str, Any]) -> None:  # type: ignore[override]
        import numpy as np

        x = np.nan_to_num(np.asarray(self.encoder.encode(features), dtype="float32"))
        self.n += 1
        if self._online:
            data = self._cd.predict(x, return_test_stat=True)["data"]
            self._drift = bool(data["is_drift"])
            self.detections += self._drift
            self.last_stat = float(data.get("test_stat") or 0.0)
            self.last_threshold = float(data.get("threshold") or 0.0)
        elif len(self.batch) < self.settings.sample_size:
            self.batch.append(list(x))

    def close_window(self) -> tuple[DetectorResult, ...]:
        import numpy as np

        out: tuple[DetectorResult, ...] = ()
        if self._online and self.n:
            out = (DetectorResult(self.name, "*", "test_stat", self.last_stat, None, self.last_threshold,
                                  self.detections > 0, 0, self.n, (("detections", self.detections),)),)
        elif self.n >= self.min_samples:
            data = self._cd.predict(np.asarray(self.batch, dtype="float32"))["data"]
            out = (DetectorResult(self.name, "*", "distance", float(data["distance"]), float(data["p_val"]),
                                  self.settings.alibi_p_value, bool(data["is_drift"]), 0, self.n),)
            self._drift = bool(data["is_drift"])
        self._clear()
        return self._judge(out)

    def get_state(self) -> dict[str, Any]:
        return {"cd": base64.b64encode(pickle.dumps(self._cd)).decode(), "n": self.n,
                "detections": self.detections, "batch": self.batch, "drift": self._drift,
                "names": list(self.encoder.names)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.n, self.detections = int(state["n"]), int(state["detections"])
        self._drift = bool(state["drift"])
        # Saved before the feature set changed (a new exclusion, a new reference)? Its detector
        # holds reference rows of another width and its rows other columns: keep the fresh ones.
        if list(state.get("names", ())) != list(self.encoder.names):
            self.batch = []
            return
        self._cd = pickle.loads(base64.b64decode(state["cd"]))
        self.batch = [list(r) for r in state["batch"]]

    def reset(self) -> None:
        if self._online:
            self._cd.reset_state()
        self._clear()
        self._drift = False
        self._verdicts = {}
