"""dashboard/notices.py: the Model page says when a model version had no usable reference (issue 17)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from driftline.detectors.base import REFERENCE_NOTICE_DETECTOR, STAT_REFERENCE_MISSING, MetricRow
from driftline.detectors.sink import write_rows
from tests.dashboard.seed import SeedSpec, seed
from tests.dashboard.test_pages import app_env, assert_clean, open_page  # noqa: F401 - app_env is a fixture

pytestmark = pytest.mark.integration


def _notice(spec: SeedSpec, minutes_before_end: int, unchecked: int) -> MetricRow:
    end = spec.end - dt.timedelta(minutes=minutes_before_end)
    return MetricRow(spec.model, spec.version, REFERENCE_NOTICE_DETECTOR, "*", "", end - dt.timedelta(minutes=10),
                     end, STAT_REFERENCE_MISSING, float(unchecked), None, None, False, 0, unchecked,
                     '{"source": "stored"}')


def test_the_model_page_warns_of_a_missing_reference_and_only_then(app_env: str, ch_client: Any) -> None:  # noqa: F811
    small = dict(n_predictions=400, span_s=3600, window_s=600, alerts=False, detectors=False)
    missing = seed(ch_client, SeedSpec(model=f"noref-{uuid.uuid4().hex[:6]}", **small))
    fine = seed(ch_client, SeedSpec(model=f"hasref-{uuid.uuid4().hex[:6]}", **small))
    write_rows(ch_client, [_notice(missing, 20, 100), _notice(missing, 10, 50)])

    at = open_page("model", missing)
    assert_clean(at)
    said = [w.value for w in at.warning if "No usable reference" in w.value]
    assert len(said) == 1 and "version v1" in said[0] and "150 predictions" in said[0]
    assert f"--model {missing.model} --version v1" in said[0]

    at = open_page("model", fine)
    assert_clean(at)
    assert not [w.value for w in at.warning if "No usable reference" in w.value]


def test_the_model_page_says_when_label_joins_were_evicted_for_memory(
        app_env: str, ch_client: Any) -> None:  # noqa: F811
    from driftline.detectors.base import MEMORY_NOTICE_DETECTOR, STAT_JOINS_EVICTED

    small = dict(n_predictions=400, span_s=3600, window_s=600, alerts=False, detectors=False)
    squeezed = seed(ch_client, SeedSpec(model=f"evict-{uuid.uuid4().hex[:6]}", **small))
    fine = seed(ch_client, SeedSpec(model=f"roomy-{uuid.uuid4().hex[:6]}", **small))
    end = squeezed.end - dt.timedelta(minutes=10)
    write_rows(ch_client, [MetricRow(squeezed.model, "", MEMORY_NOTICE_DETECTOR, "*", "",
                                     end - dt.timedelta(minutes=10), end, STAT_JOINS_EVICTED, 1234.0, None, None,
                                     False, 0, 1234,
                                     '{"predictions":1200,"labels":34,"shadows":0,"outcomes":0}')])

    at = open_page("model", squeezed)
    assert_clean(at)
    said = [w.value for w in at.warning if "Label joins evicted" in w.value]
    assert len(said) == 1 and "1,234 pending joins" in said[0] and "1,200 predictions" in said[0], said
    assert "DRIFTLINE_DETECTOR_MEMORY_BUDGET_MB" in said[0]

    at = open_page("model", fine)
    assert_clean(at)
    assert not [w.value for w in at.warning if "Label joins evicted" in w.value]
