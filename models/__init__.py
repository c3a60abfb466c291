"""paretoctl: models."""
