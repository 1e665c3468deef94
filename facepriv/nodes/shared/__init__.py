"""Settings several nodes share, written once: a node's YAML includes them (``include: [group]``)."""
