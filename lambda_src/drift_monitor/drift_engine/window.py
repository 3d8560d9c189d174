"""The hour-aligned time window a run analyses."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from drift_engine.settings import window_hours


@dataclass(frozen=True)
class Window:
    """Half-open interval [start, end) of whole UTC hours."""

    start: datetime
    end: datetime

    def hours(self) -> Iterator[datetime]:
        hour = self.start
        while hour < self.end:
            yield hour
            hour += timedelta(hours=1)

    def hour_prefixes(self, root: str) -> list[str]:
        """S3 prefixes `{root}yyyy/mm/dd/hh/` covering the window (SageMaker capture layout)."""
        return [f"{root}{hour:%Y/%m/%d/%H}/" for hour in self.hours()]

    def as_dict(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, key: str = "time") -> datetime:
    """An ISO 8601 time (UTC without an offset); ValueError naming `key` otherwise."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{key} must be an ISO 8601 time, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def resolve_window(event: Mapping[str, Any], default_hours: int, now: datetime | None = None) -> Window:
    """Window from a backfill event ({"window_start"|"window_end", "window_hours"}) or the schedule.

    A scheduled run analyses the last complete hours before the event's `time` (or now), so an
    hourly run at 13:05 covers 12:00-13:00, when the 12h capture files are all written. An event's
    `window_hours` must be 1..24: `0` or `48` is an error naming the key, never the default.
    """
    if not isinstance(event, Mapping):
        raise ValueError(f"the event must be an object, got {type(event).__name__}")
    given = event.get("window_hours")
    hours = default_hours if given is None else window_hours(given, "window_hours")
    if event.get("window_start"):
        start = _floor_hour(parse_time(event["window_start"], "window_start"))
        return Window(start, start + timedelta(hours=hours))
    if event.get("window_end"):
        end = _floor_hour(parse_time(event["window_end"], "window_end"))
    else:
        moment = parse_time(event["time"]) if event.get("time") else (now or datetime.now(UTC))
        end = _floor_hour(moment)
    return Window(end - timedelta(hours=hours), end)
