"""paretoctl: optimizer."""
