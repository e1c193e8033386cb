"""driftline.dashboard."""
