"""CloudWatch alarm events and states."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .timeutil import iso, parse_time, utcnow


@dataclass(frozen=True)
class AlarmEvent:
    """The parts of a "CloudWatch Alarm State Change" event that the controller uses."""

    name: str
    state: str
    reason: str
    timestamp: datetime

    @property
    def occurrence(self) -> str:
        # One alarm transition; EventBridge duplicates of it share name and state timestamp.
        return f"{self.name}#{iso(self.timestamp)}"


def parse_alarm_event(event: dict[str, Any]) -> AlarmEvent | None:
    if event.get("detail-type") != "CloudWatch Alarm State Change":
        return None
    detail = event.get("detail") or {}
    state = detail.get("state") or {}
    timestamp = parse_time(state.get("timestamp")) or parse_time(event.get("time")) or utcnow()
    return AlarmEvent(name=str(detail.get("alarmName", "")), state=str(state.get("value", "")),
                      reason=str(state.get("reason", "")), timestamp=timestamp)


def alarm_states(cloudwatch: Any, names: tuple[str, ...]) -> dict[str, str]:
    """Current state per alarm name; names CloudWatch does not know are absent."""
    states: dict[str, str] = {}
    for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
        paginator = cloudwatch.get_paginator("describe_alarms")
        pages = paginator.paginate(AlarmNames=list(names[start:start + 100]),
                                   AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        for page in pages:
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                states[alarm["AlarmName"]] = alarm["StateValue"]
    return states


def alarms_named_in(text: str | None, names: tuple[str, ...]) -> list[str]:
    """Which of our alarms a free-text reason (e.g. DescribeEndpoint FailureReason) mentions."""
    if not text:
        return []
    return [name for name in names if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]
