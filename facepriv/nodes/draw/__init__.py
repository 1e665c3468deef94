"""draw nodes."""
