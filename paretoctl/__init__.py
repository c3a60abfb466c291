"""paretoctl: paretoctl."""
