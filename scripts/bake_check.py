"""Bake check: fail if any guard alarm went to ALARM during a window or is in ALARM now.

    python -m scripts.bake_check (--alarms a,b,c | --alarm-prefix mlapi-staging-) (--since ISO | --minutes N)

Exit codes: 0 quiet, 1 an alarm fired (or a named alarm does not exist), 2 usage, 3 AWS error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]


def describe_alarms(cloudwatch: Any, names: list[str] | None, prefix: str | None) -> dict[str, str]:
    """{alarm name: current state} of the named alarms, or of every alarm under the prefix."""
    states: dict[str, str] = {}
    paginator = cloudwatch.get_paginator("describe_alarms")
    batches = [names[i : i + 100] for i in range(0, len(names), 100)] if names else [None]
    for batch in batches:
        query = {"AlarmNames": batch} if batch else {"AlarmNamePrefix": prefix}
        for page in paginator.paginate(AlarmTypes=ALARM_TYPES, **query):
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                states[alarm["AlarmName"]] = alarm["StateValue"]
    return states


def alarm_transitions(cloudwatch: Any, name: str, since: datetime, until: datetime) -> list[dict[str, str]]:
    """The alarm's state updates into ALARM between `since` and `until`."""
    fired = []
    paginator = cloudwatch.get_paginator("describe_alarm_history")
    for page in paginator.paginate(
        AlarmName=name, AlarmTypes=ALARM_TYPES, HistoryItemType="StateUpdate", StartDate=since, EndDate=until
    ):
        for item in page.get("AlarmHistoryItems", []):
            new_state = json.loads(item.get("HistoryData") or "{}").get("newState", {}).get("stateValue")
            if new_state == "ALARM":
                fired.append({"at": item["Timestamp"].isoformat(), "summary": item.get("HistorySummary", "")})
    return fired


def check(
    cloudwatch: Any, *, names: list[str] | None, prefix: str | None, since: datetime, now: datetime
) -> dict[str, Any]:
    states = describe_alarms(cloudwatch, names, prefix)
    failures = [f"alarm {name} does not exist" for name in (names or []) if name not in states]
    if not states and prefix:
        failures.append(f"no alarm is named {prefix}*: nothing to check")
    alarms = {}
    for name, state in sorted(states.items()):
        fired = alarm_transitions(cloudwatch, name, since, now)
        alarms[name] = {"state": state, "went_to_alarm": fired}
        if state == "ALARM":
            failures.append(f"alarm {name} is in ALARM now")
        if fired:
            failures.append(
                f"alarm {name} went to ALARM {len(fired)} time(s) since {since.isoformat()}, "
                f"first at {min(f['at'] for f in fired)}"
            )
    return {
        "passed": not failures,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "alarms": alarms,
        "failures": failures,
    }


def parse_since(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # naive means UTC, as in pipelines' logs


def main(argv: list[str] | None = None, cloudwatch: Any = None, now: datetime | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--alarms", help="comma-separated alarm names")
    which.add_argument("--alarm-prefix", help="every alarm whose name starts with this")
    window = parser.add_mutually_exclusive_group(required=True)
    window.add_argument("--since", type=parse_since, help="window start, ISO 8601 (UTC if no offset)")
    window.add_argument("--minutes", type=float, help="window = the last N minutes")
    parser.add_argument("--region")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.alarms.split(",") if n.strip()] if args.alarms else None
    if args.alarms is not None and not names:
        parser.error("--alarms names no alarm")
    now = now or datetime.now(UTC)
    since = args.since or now - timedelta(minutes=args.minutes)
    if since >= now:
        parser.error(f"the window starts at {since.isoformat()}, not before now")
    try:
        client = cloudwatch or boto3.client("cloudwatch", region_name=args.region)
        report = check(client, names=names, prefix=args.alarm_prefix, since=since, now=now)
    except (ClientError, BotoCoreError) as error:
        print(f"bake_check: CloudWatch: {error}", file=sys.stderr)
        return 3
    print(json.dumps(report, indent=2))
    for failure in report["failures"]:
        print(f"bake_check: FAILED {failure}", file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
