from __future__ import annotations

import pytest

from driftline.detectors.config import DetectorsConfig, load_config
from driftline.sdk.errors import ConfigError


@pytest.mark.parametrize("doc,key", [
    ({"model": "churn", "windw": {}}, "churn.windw"),
    ({"model": "churn", "window": {"size": 0}}, "churn.window.size"),
    ({"model": "churn", "window": {"kind": "sliding"}}, "churn.window.kind"),
    ({"model": "churn", "data_drift": {"thresholds": {"psy": 0.1}}}, "churn.data_drift.thresholds.psy"),
    ({"model": "churn", "data_drift": {"correction": "holm"}}, "churn.data_drift.correction"),
    ({"model": "churn", "data_drift": {"numeric_tests": ["psi"], "verdict_numeric": "ks"}}, "churn.data_drift"),
    ({"model": "churn", "concept": {"detectors": ["adwn"]}}, "churn.concept.detectors.0"),
    ({"model": "churn", "multivariate": {"backend": "mmd"}}, "churn.multivariate.backend"),
    ({"window": {}}, "model[0].model"),
])
def test_errors_name_the_key(doc, key):
    with pytest.raises(ConfigError) as exc:
        DetectorsConfig.from_mapping(doc)
    assert str(exc.value).startswith(key + ":"), str(exc.value)


def test_yaml_files_and_directories(tmp_path):
    (tmp_path / "churn.yaml").write_text("model: churn\nwindow: {kind: time, duration_s: 600}\n"
                                         "segments: {tags: [region]}\n")
    (tmp_path / "fraud.yml").write_text("model: fraud\nconcept: {task: classification}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    cfg = load_config(tmp_path)
    assert [m.model for m in cfg.models] == ["churn", "fraud"]
    assert cfg.for_model("churn").window.duration_s == 600 and cfg.for_model("nope") is None
    with pytest.raises(ConfigError, match="twice"):
        load_config(tmp_path / "churn.yaml", tmp_path / "churn.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_settings_are_frozen():
    cfg = DetectorsConfig.from_mapping({"model": "m"})
    with pytest.raises(Exception):
        cfg.models[0].window.size = 5  # type: ignore[misc]
