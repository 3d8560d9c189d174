"""CloudWatch alarm events and states."""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import MalformedEventError
from .timeutil import iso, safe_time

ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
ALARM_STATES = frozenset({"OK", "ALARM", "INSUFFICIENT_DATA"})


@dataclass(frozen=True)
class AlarmEvent:
    """The parts of a "CloudWatch Alarm State Change" event that the controller uses."""

    name: str
    state: str
    reason: str
    timestamp: datetime | None
    occurrence: str  # one alarm transition; EventBridge duplicates of it share this key


def parse_alarm_event(event: object) -> AlarmEvent | None:
    """None for other event types; MalformedEventError for an alarm event without the documented shape.

    Shape: CloudWatch User Guide, "Alarm events and EventBridge": detail.alarmName (string), detail.state
    (object with value, reason, timestamp).
    """
    if not isinstance(event, dict) or event.get("detail-type") != ALARM_DETAIL_TYPE:
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MalformedEventError("detail is not an object")
    name, state = detail.get("alarmName"), detail.get("state")
    if not isinstance(name, str) or not name:
        raise MalformedEventError("detail.alarmName is not a non-empty string")
    if not isinstance(state, dict) or not isinstance(state.get("value"), str) or state["value"] not in ALARM_STATES:
        raise MalformedEventError("detail.state is not an object with a known value")
    timestamp = safe_time(state.get("timestamp")) or safe_time(event.get("time"))
    return AlarmEvent(
        name=name,
        state=str(state["value"]),
        reason=str(state.get("reason") or ""),
        timestamp=timestamp,
        occurrence=_occurrence(name, state, event, timestamp),
    )


def _occurrence(name: str, state: dict[str, Any], event: dict[str, Any], timestamp: datetime | None) -> str:
    if safe_time(state.get("timestamp")) is not None:
        return f"{name}#{iso(timestamp)}" if timestamp else name
    # No usable transition time: EventBridge keeps the event id across redeliveries and retries.
    if isinstance(event.get("id"), str) and event["id"]:
        return f"{name}#event:{event['id']}"
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{name}#sha256:{digest}"


def alarm_states(cloudwatch: Any, names: tuple[str, ...]) -> dict[str, str]:
    """Current state per alarm name; names CloudWatch does not know are absent."""
    states: dict[str, str] = {}
    for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
        paginator = cloudwatch.get_paginator("describe_alarms")
        pages = paginator.paginate(
            AlarmNames=list(names[start : start + 100]), AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
        for page in pages:
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                states[alarm["AlarmName"]] = alarm["StateValue"]
    return states


def alarms_named_in(text: str | None, names: tuple[str, ...]) -> list[str]:
    """Which of our alarms a free-text reason (e.g. DescribeEndpoint FailureReason) mentions."""
    if not text:
        return []
    return [name for name in names if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]
