"""UTC timestamps stored as fixed-width ISO 8601 strings, so they sort lexically."""

from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse_time(value: object) -> datetime | None:
    """Accept datetimes, ISO strings (incl. CloudWatch's '+0000') and epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        # SageMaker events carry CreationTime/LastModifiedTime as epoch milliseconds.
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"unsupported timestamp: {value!r}")


def safe_time(value: object) -> datetime | None:
    """parse_time for untrusted event fields: junk (a bad string, a list, 1e999 ms) is None, never a crash."""
    try:
        return parse_time(value)
    except (ValueError, TypeError, OverflowError, OSError):
        return None
