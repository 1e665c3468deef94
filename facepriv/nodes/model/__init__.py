"""model nodes."""
