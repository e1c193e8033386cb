"""driftline.alerting."""
