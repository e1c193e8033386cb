"""driftline.detectors."""
