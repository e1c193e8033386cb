"""driftline.sdk."""
