"""tests/conftest.py: the fixture that re-raises errors the SDK swallowed (STYLE point 2).

The SDK never raises into a model server; it logs. The autouse fixture turns every ERROR record
of ``driftline.sdk`` into a test failure, with a traceback (``logger.exception``) or without one
(``logger.error("...: %s", exc)``). These tests prove both are caught, and that warnings (a broker
outage, a user's ``features_from`` failing) are not.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import SwallowedErrors

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
sdk_logger = logging.getLogger("driftline.sdk")


def _boom() -> ValueError:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc


def test_an_error_logged_with_a_traceback_is_caught(reraise_swallowed_sdk_errors: SwallowedErrors) -> None:
    try:
        raise _boom()
    except ValueError:
        sdk_logger.exception("driftline: exporter submit failed")
    with pytest.raises(AssertionError, match="exporter submit failed") as info:
        reraise_swallowed_sdk_errors.check()
    assert isinstance(info.value.__cause__, ValueError)
    reraise_swallowed_sdk_errors.records.clear()


def test_an_error_logged_without_a_traceback_is_caught(reraise_swallowed_sdk_errors: SwallowedErrors) -> None:
    logging.getLogger("driftline.sdk.some_module").error("driftline: could not encode: %s", _boom())
    with pytest.raises(AssertionError, match="could not encode: boom"):
        reraise_swallowed_sdk_errors.check()
    reraise_swallowed_sdk_errors.records.clear()


def test_warnings_and_other_loggers_are_not_swallowed_errors(reraise_swallowed_sdk_errors: SwallowedErrors) -> None:
    sdk_logger.warning("driftline: Kafka unavailable; events wait in the queue", exc_info=_boom())
    logging.getLogger("driftline.collector").error("not the SDK")
    assert reraise_swallowed_sdk_errors.records == []
    reraise_swallowed_sdk_errors.check()


def test_a_swallowed_error_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    # The real conftest in a fresh session: both kinds of record fail their test, a warning does not.
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_probe='''
import logging

log = logging.getLogger("driftline.sdk")


def test_with_traceback():
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("swallowed with a traceback")


def test_without_traceback():
    log.error("swallowed without a traceback: %s", "ZeroDivisionError")


def test_warning_only():
    log.warning("just a warning")
''')
    # A subprocess, so the probe's own errors do not reach this test's handler.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*the SDK swallowed an error*swallowed with a traceback*",
                                 "*the SDK swallowed an error*swallowed without a traceback*"])
