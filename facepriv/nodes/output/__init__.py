"""output nodes."""
