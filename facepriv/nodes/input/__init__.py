"""input nodes."""
