"""The public surface of driftline.alerting is what the docs promise."""

from __future__ import annotations

import driftline.alerting as alerting


def test_all():
    assert alerting.__all__ == ["SIGNATURE_HEADER", "sign", "verify_signature"]
    assert all(callable(getattr(alerting, n)) or isinstance(getattr(alerting, n), str)
               for n in alerting.__all__)
