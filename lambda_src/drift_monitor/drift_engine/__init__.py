"""Built-in model drift engine: capture parsing, drift statistics, reports, metrics and events."""
