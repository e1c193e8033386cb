"""driftline.alerting: rules over ClickHouse → Slack, PagerDuty, webhooks, retraining triggers.

``verify_signature`` is what a retraining endpoint needs to check a request came from driftline.
"""

from __future__ import annotations

from driftline.alerting.signing import SIGNATURE_HEADER, sign, verify_signature

__all__ = ["SIGNATURE_HEADER", "sign", "verify_signature"]
