"""detectors/reference.py: ReferenceStore against the real embedded store (the session's chDB)."""

from __future__ import annotations

import pytest

from driftline.detectors.reference import from_events
from driftline.detectors.reference_store import ReferenceStore
from tests.detectors.detector_streams import base_features, features_stream

pytestmark = pytest.mark.integration


def test_reference_store_save_replace_list_delete(ch_client):
    refs = ReferenceStore(ch_client)
    a = from_events(features_stream(300, 10**9, base_features, base_features), "shop", "v1")
    refs.save(a)
    b = from_events(features_stream(600, 10**9, base_features, base_features), "shop", "v1")
    refs.save(b)  # replaces
    loaded = refs.load("shop", "v1")
    assert loaded is not None and loaded.n_rows == 600 and loaded.features == b.features
    assert [(i.model, i.model_version, i.n_rows) for i in refs.list("shop")] == [("shop", "v1", 600)]
    assert refs.delete("shop", "v1") is True
    assert refs.load("shop", "v1") is None and refs.list("shop") == []
    assert refs.delete("shop", "v1") is False
