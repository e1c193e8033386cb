"""STYLE point 1: every package's public surface is what the README documents, and it resolves."""

from __future__ import annotations

import importlib

import pytest

PROMISED = {
    "driftline.sdk": {"Monitor", "InMemoryExporter", "KafkaExporter", "SdkSettings", "SchemaError", "ConfigError",
                      "validate_event", "uuid7"},
    "driftline.collector": {"CollectorSettings", "run_collector", "start_chstore", "start_broker", "Scrubber",
                            "ScrubConfig", "delete_rows", "migrate", "connect"},
    "driftline.detectors": {"DetectorEngine", "MetricRow", "DetectorsConfig", "load_config", "Reference",
                            "ReferenceStore", "from_dataframe", "from_file"},
    "driftline.alerting": {"verify_signature", "sign", "SIGNATURE_HEADER"},
    "driftline.dashboard": {"DashboardSettings", "link"},
}


@pytest.mark.parametrize("package", sorted(PROMISED))
def test_all_lists_the_documented_names_and_each_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert PROMISED[package] <= set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
