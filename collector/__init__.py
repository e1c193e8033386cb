"""driftline.collector."""
