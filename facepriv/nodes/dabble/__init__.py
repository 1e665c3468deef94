"""dabble nodes."""
