"""collector/config.py: CollectorSettings from flags and environment; the collector's own names."""

from __future__ import annotations

import logging

import pytest

from driftline.collector.config import CollectorSettings


def test_the_collector_reads_its_own_batch_variables() -> None:
    s = CollectorSettings.build(env={"DRIFTLINE_COLLECTOR_BATCH_SIZE": "1234",
                                     "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "0.7"})
    assert (s.batch_size, s.batch_timeout_s) == (1234, 0.7)


def test_flags_win_over_the_environment() -> None:
    s = CollectorSettings.build(env={"DRIFTLINE_COLLECTOR_BATCH_SIZE": "1234"}, batch_size=99)
    assert s.batch_size == 99


def test_the_sdks_batch_size_is_not_reinterpreted_and_the_new_name_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="driftline.collector"):
        s = CollectorSettings.build(env={"DRIFTLINE_BATCH_SIZE": "7"})
    assert s.batch_size == CollectorSettings().batch_size
    [record] = [r for r in caplog.records if "DRIFTLINE_BATCH_SIZE" in r.getMessage()]
    assert "SDK" in record.getMessage() and "DRIFTLINE_COLLECTOR_BATCH_SIZE" in record.getMessage()


def test_nothing_is_logged_when_both_batch_sizes_are_set(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="driftline.collector"):
        s = CollectorSettings.build(env={"DRIFTLINE_BATCH_SIZE": "7", "DRIFTLINE_COLLECTOR_BATCH_SIZE": "300"})
    assert s.batch_size == 300
    assert not [r for r in caplog.records if "BATCH" in r.getMessage()]


def test_the_old_batch_timeout_name_still_works_and_says_its_new_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="driftline.collector"):
        s = CollectorSettings.build(env={"DRIFTLINE_BATCH_TIMEOUT_S": "0.3"})
    assert s.batch_timeout_s == 0.3
    assert any("DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S" in r.getMessage() for r in caplog.records)
    new_wins = CollectorSettings.build(env={"DRIFTLINE_BATCH_TIMEOUT_S": "0.3",
                                            "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "0.9"})
    assert new_wins.batch_timeout_s == 0.9


def test_feature_detail_top_is_read_from_the_environment_and_checked() -> None:
    from driftline.sdk.errors import ConfigError

    assert CollectorSettings.build(env={}).feature_detail_top == 30
    assert CollectorSettings.build(env={"DRIFTLINE_FEATURE_DETAIL_TOP": "500"}).feature_detail_top == 500
    with pytest.raises(ConfigError, match="DRIFTLINE_FEATURE_DETAIL_TOP"):
        CollectorSettings.build(env={"DRIFTLINE_FEATURE_DETAIL_TOP": "-1"})


def test_the_idle_time_before_a_model_may_leave_memory_is_a_checked_setting() -> None:
    from driftline.collector.config import CollectorSettings
    from driftline.sdk.errors import ConfigError

    assert CollectorSettings.build(env={}).detector_park_after_s == 300.0
    assert CollectorSettings.build(env={"DRIFTLINE_DETECTOR_PARK_AFTER_S": "0"}).detector_park_after_s == 0.0
    with pytest.raises(ConfigError, match="DRIFTLINE_DETECTOR_PARK_AFTER_S"):
        CollectorSettings.build(env={"DRIFTLINE_DETECTOR_PARK_AFTER_S": "-5"})


def test_the_rollup_audit_interval_is_a_checked_setting_that_reaches_the_child() -> None:
    from driftline.collector.config import CollectorSettings
    from driftline.sdk.errors import ConfigError

    assert CollectorSettings.build(env={}).rollup_audit_s == 600.0
    settings = CollectorSettings.build(env={"DRIFTLINE_ROLLUP_AUDIT_S": "0"})
    assert settings.rollup_audit_s == 0.0  # off
    assert CollectorSettings.from_json(settings.to_json()).rollup_audit_s == 0.0
    for bad in ("-1", "nan", "often"):
        with pytest.raises(ConfigError, match="DRIFTLINE_ROLLUP_AUDIT_S"):
            CollectorSettings.build(env={"DRIFTLINE_ROLLUP_AUDIT_S": bad})


def test_how_long_held_events_keep_commits_back_is_a_checked_setting() -> None:
    from driftline.collector.config import CollectorSettings
    from driftline.detectors.stage import DetectorStage
    from driftline.sdk.errors import ConfigError

    settings = CollectorSettings.build(env={"DRIFTLINE_DETECTOR_HELD_ACK_AFTER_S": "45"})
    assert settings.detector_held_ack_after_s == 45.0
    assert CollectorSettings.from_json(settings.to_json()).detector_held_ack_after_s == 45.0  # to the child
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ConfigError, match="DRIFTLINE_DETECTOR_HELD_ACK_AFTER_S"):
            CollectorSettings.build(env={"DRIFTLINE_DETECTOR_HELD_ACK_AFTER_S": bad})
    assert CollectorSettings.build(env={"DRIFTLINE_DETECTOR_STATE_RETRY_S": "0"}).detector_state_retry_s == 0.0
    with pytest.raises(ConfigError, match="DRIFTLINE_DETECTOR_STATE_RETRY_S"):
        CollectorSettings.build(env={"DRIFTLINE_DETECTOR_STATE_RETRY_S": "-1"})
    # The detectors cannot import the collector (tests/test_import_graph.py): their defaults mirror
    # the settings', which the collector hands down, and must not drift apart.
    from driftline.detectors.stage import build_stage

    defaults, settings = build_stage.__kwdefaults__, CollectorSettings()
    assert DetectorStage.__init__.__kwdefaults__["held_ack_after_s"] == settings.detector_held_ack_after_s
    assert defaults["held_ack_after_s"] == settings.detector_held_ack_after_s
    assert defaults["state_retry_s"] == settings.detector_state_retry_s
    assert defaults["park_after_s"] == settings.detector_park_after_s
    assert defaults["reference_poll_s"] == settings.reference_poll_s
    assert defaults["save_interval_s"] == settings.detector_save_interval_s
    assert DetectorStage.__init__.__kwdefaults__["save_interval_s"] == settings.detector_save_interval_s


def test_the_interval_between_detector_saves_is_a_checked_setting_that_reaches_the_stage() -> None:
    from driftline.collector.config import CollectorSettings
    from driftline.sdk.errors import ConfigError

    assert CollectorSettings.build(env={}).detector_save_interval_s == 5.0
    settings = CollectorSettings.build(env={"DRIFTLINE_DETECTOR_SAVE_INTERVAL_S": "0"})
    assert settings.detector_save_interval_s == 0.0  # after every chunk
    assert CollectorSettings.from_json(settings.to_json()).detector_save_interval_s == 0.0  # to the child
    for bad in ("-1", "nan", "often"):
        with pytest.raises(ConfigError, match="DRIFTLINE_DETECTOR_SAVE_INTERVAL_S"):
            CollectorSettings.build(env={"DRIFTLINE_DETECTOR_SAVE_INTERVAL_S": bad})


def test_the_gauges_up_reads_are_the_ones_the_detector_stage_sets() -> None:
    from prometheus_client import CollectorRegistry

    from driftline.collector.metrics import HELD_GAUGE, UNWRITTEN_GAUGE
    from driftline.detectors.stage import _StageMetrics

    registry = CollectorRegistry()
    metrics = _StageMetrics(registry)
    metrics.held(7)
    metrics.watch_output(lambda: 42.0)
    assert registry.get_sample_value(HELD_GAUGE) == 7
    assert registry.get_sample_value(UNWRITTEN_GAUGE) == 42.0
