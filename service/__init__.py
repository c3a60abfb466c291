"""paretoctl: service."""
