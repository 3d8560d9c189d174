"""Exceptions shared by the handlers and the CLI."""


class ReleaseError(Exception):
    """Base class for expected, explainable failures."""


class ConfigError(ReleaseError):
    """A required setting (environment variable or flag) is missing or invalid."""


class NotFoundError(ReleaseError):
    """A release, endpoint or table item does not exist."""


class RefusedError(ReleaseError):
    """An operation was refused for safety (not live, endpoint busy, not confirmed)."""


class RetryableError(ReleaseError):
    """Raised from a Lambda so that its retry / DLQ mechanics try again later."""


class EndpointBusyError(RetryableError):
    """The endpoint is Creating/Updating/RollingBack/SystemUpdating; a second update would fail."""


class TransientAwsError(RetryableError):
    """An AWS call still failed (throttling, 5xx) after botocore's own retries."""


class ConcurrentChangeError(RetryableError):
    """A conditional write failed because the record changed since it was read: retry with fresh reads."""


class MalformedEventError(ReleaseError):
    """An event that does not have the shape its source documents; counted and reported, never retried."""


class GaveUpError(ReleaseError):
    """Retrying cannot help (the target config is gone, access denied): operators are told and must act."""
