"""paretoctl: channel_sim."""
