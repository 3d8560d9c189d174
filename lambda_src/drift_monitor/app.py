"""Lambda handler module for the drift monitor (configure the function with `app.handler`)."""

from drift_engine.handler import handler

__all__ = ["handler"]
