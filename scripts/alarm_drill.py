"""Alarm drill: force one guard alarm to ALARM and show that the alarm loop works end to end.

    python -m scripts.alarm_drill --env-prefix mlapi-dev [--alarm container-error-rate] [--region R]
        [--profile P] [--wait 120] [--poll 5] [--allow-rollback]

What it does, with the names the constructs give (`{prefix}-{alarm}` in ml_constructs/endpoint_alarms.py, the
table `{prefix}-releases`, the endpoint `{prefix}-endpoint`, the controller `{prefix}-release-controller` in
ml_constructs/release_safety.py):

1. Reads the alarm (it must exist, have its actions enabled and not be in ALARM already: SetAlarmState only
   invokes the actions when the state changes) and lists the subscriptions of its SNS topic. A subscription
   still `PendingConfirmation` receives nothing: every `alarm_emails` address must confirm the e-mail SNS sent.
2. Refuses when the rollback controller could really roll the endpoint back (a release to go back to exists
   and rollback is not frozen), unless --allow-rollback: freeze first for a drill that changes nothing.
3. Sets the alarm to ALARM with the reason "alarm drill" (CloudWatch `SetAlarmState`).
4. Polls, until --wait seconds have passed, for
   (a) the alarm history's StateUpdate item of this change and its Action item for the topic:
       "Successfully executed action arn:aws:sns:..." or "Failed to execute action arn:aws:sns:... Received
       error: ..." (that is how a topic policy without `sns:Publish` for CloudWatch, "... is not authorized to
       perform: SNS:Publish ...", or a key policy without `kms:GenerateDataKey*` shows up);
   (b) the rollback controller's decision: the `ALARM#<alarm>#<state timestamp>` item it settles in the
       release table (`outcome`, `detail`; see lambda_src/releases/release_history/repository.py). Without a
       decision it prints what the controller logged about the alarm (`/aws/lambda/{prefix}-release-controller`).
5. Prints a verdict. The alarm returns to its real state at its next evaluation (an OK notification follows).

Exit codes: 0 the loop works; 1 it does not (the notification failed or was not attempted, nobody confirmed a
subscription, or no decision was recorded in time); 2 usage, or the drill cannot run (alarm missing, already in
ALARM, a rollback could happen); 3 AWS error (credentials, region, permissions).

Permissions: cloudwatch:DescribeAlarms, SetAlarmState, DescribeAlarmHistory; sns:ListSubscriptionsByTopic;
dynamodb:Query and GetItem on the release table and its status-index, with kms:Decrypt on the environment's data
key (the table is encrypted with it); logs:FilterLogEvents on the controller's log group.

AWS documentation this follows:
- CloudWatch API Reference, SetAlarmState (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/
  API_SetAlarmState.html): "Temporarily sets the state of an alarm for testing purposes. When the updated state
  differs from the previous value, the action configured for the appropriate state is invoked"; metric alarms
  return to their actual state quickly, so the change "is typically only visible in the alarm's History tab
  ... or through DescribeAlarmHistory". StateReasonData "for SNS ... alarm actions, this is just informational".
- CloudWatch API Reference, DescribeAlarmHistory and AlarmHistoryItem (https://docs.aws.amazon.com/
  AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html, .../API_AlarmHistoryItem.html):
  HistoryItemType `ConfigurationUpdate | StateUpdate | Action`, HistorySummary, HistoryData (JSON).
- CloudWatch User Guide, "Using Amazon CloudWatch alarms" (https://docs.aws.amazon.com/AmazonCloudWatch/latest/
  monitoring/AlarmThatSendsEmail.html) and "Alarm actions": actions run on state transitions; the topic must
  let CloudWatch publish (and use its KMS key).
- Amazon SNS: an e-mail endpoint receives messages only after it confirms the subscription; until then
  ListSubscriptionsByTopic shows its SubscriptionArn as `PendingConfirmation` (SNS API Reference, Subscribe /
  ConfirmSubscription).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# ml_constructs.endpoint_alarms.ROLLBACK_ALARMS (a test keeps them equal; importing it would load the CDK).
GUARD_ALARMS = ("endpoint-5xx", "model-latency-p99", "container-error-rate", "container-latency-p99")
REASON = "alarm drill"
PENDING = "PendingConfirmation"
# Local clock vs AWS timestamps: look a little before the drill started.
SKEW = timedelta(seconds=5)
# The controller's timestamps (lambda_src/releases/release_history/timeutil.py): fixed width, sort lexically.
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"
ROLLBACK_STATUSES = ("live", "superseded", "baking", "deploying")


class DrillRefused(Exception):
    """The drill cannot run as asked (exit 2)."""


@dataclass(frozen=True)
class Names:
    """The resource names of one environment, exactly as the constructs build them from the prefix."""

    prefix: str
    alarm: str

    @property
    def alarm_name(self) -> str:
        return f"{self.prefix}-{self.alarm}"

    @property
    def table(self) -> str:
        return f"{self.prefix}-releases"

    @property
    def endpoint(self) -> str:
        return f"{self.prefix}-endpoint"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.prefix}-release-controller"


@dataclass(frozen=True)
class Drill:
    """One run: its id (in StateReasonData) and when it started, less the clock skew allowance."""

    id: str
    since: datetime


@dataclass
class Progress:
    """What the polling has found so far."""

    state_update: dict[str, Any] | None = None
    action: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    attempts: int = 0
    printed: set[str] = field(default_factory=set)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(ISO)


# ---- before the drill ---------------------------------------------------------------------------------------
def describe_alarm(cloudwatch: Any, name: str) -> dict[str, Any]:
    alarms = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"]).get("MetricAlarms", [])
    if not alarms:
        raise DrillRefused(f"alarm {name} does not exist in this account and region (check --env-prefix, --region)")
    return alarms[0]


def sns_topics(alarm: dict[str, Any]) -> list[str]:
    return [arn for arn in alarm.get("AlarmActions", []) if arn.split(":")[2:3] == ["sns"]]


def subscriptions(sns: Any, topic_arn: str) -> list[dict[str, Any]]:
    found = []
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for sub in page.get("Subscriptions", []):
            found.append(
                {
                    "protocol": sub.get("Protocol"),
                    "endpoint": sub.get("Endpoint"),
                    "confirmed": sub.get("SubscriptionArn") != PENDING,
                }
            )
    return found


def rollback_risk(table: Any, names: Names) -> tuple[bool, list[str]]:
    """(frozen, releases the controller could choose between): two or more means it may really roll back."""
    try:
        freeze = table.get_item(
            Key={"pk": f"ENDPOINT#{names.endpoint}", "sk": "CONTROL#freeze"}, ConsistentRead=True
        ).get("Item")
        releases = []
        for status in ROLLBACK_STATUSES:
            items = table.query(
                IndexName="status-index",
                KeyConditionExpression="status_key = :k",
                ExpressionAttributeValues={":k": f"{names.endpoint}#{status}"},
            ).get("Items", [])
            # Only releases that went live can be rolled back to; a baking or deploying one can be rolled back.
            releases += [
                f"{item['release_id']} ({status})"
                for item in items
                if status in ("baking", "deploying") or item.get("live_at")
            ]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise DrillRefused(
                f"release table {names.table} does not exist (is the data stack of {names.prefix} deployed?)"
            ) from error
        raise
    return bool(freeze and freeze.get("frozen")), releases


def preflight(
    clients: dict[str, Any], names: Names, allow_rollback: bool, out: Callable[[str], None]
) -> tuple[list[str], list[str]]:
    """Checks before the alarm is touched; returns the topics it notifies and failures. Raises DrillRefused."""
    alarm = describe_alarm(clients["cloudwatch"], names.alarm_name)
    if alarm.get("StateValue") == "ALARM":
        raise DrillRefused(
            f"{names.alarm_name} is in ALARM already: SetAlarmState would change nothing and no action would run; "
            "wait until it is OK again or drill another guard alarm (--alarm)"
        )
    topics = sns_topics(alarm)
    enabled = alarm.get("ActionsEnabled", True)
    out(f"  state now: {alarm.get('StateValue')}; actions {'enabled' if enabled else 'DISABLED'}")
    failures = [] if enabled else [f"{names.alarm_name} has its actions disabled: no notification is sent"]
    frozen, releases = rollback_risk(clients["table"], names)
    state = "frozen (notify only)" if frozen else "not frozen"
    out(f"  rollback controller: {state}; releases it could choose between: {', '.join(releases) or 'none'}")
    if len(releases) >= 2 and not frozen and not allow_rollback:
        raise DrillRefused(
            f"the rollback controller may really roll {names.endpoint} back ({', '.join(releases)}). Freeze it "
            "first: python -m lambda_src.releases.release_history freeze --reason 'alarm drill' "
            f"--table {names.table} --endpoint {names.endpoint}, drill, then unfreeze; or pass --allow-rollback"
        )
    return topics, failures


def report_subscriptions(sns: Any, topics: list[str], out: Callable[[str], None]) -> list[str]:
    """Print each topic's subscriptions; return the failures (no topic, nobody confirmed)."""
    if not topics:
        return ["the alarm has no SNS action: nobody is notified"]
    failures = []
    for topic in topics:
        subs = subscriptions(sns, topic)
        out(f"  topic {topic}: {len(subs)} subscription(s)")
        for sub in subs:
            status = "confirmed" if sub["confirmed"] else "PENDING CONFIRMATION (receives nothing until confirmed)"
            out(f"    {sub['protocol']} {sub['endpoint']}: {status}")
        if not any(sub["confirmed"] for sub in subs):
            failures.append(
                f"topic {topic} has no confirmed subscription: the notification reaches nobody (set alarm_emails "
                "in cdk.json and confirm the e-mail SNS sends to each address)"
            )
    return failures


# ---- after the drill ----------------------------------------------------------------------------------------
def history(cloudwatch: Any, name: str, kind: str, since: datetime) -> list[dict[str, Any]]:
    """The alarm's history items of one type since `since`, oldest first."""
    items = []
    paginator = cloudwatch.get_paginator("describe_alarm_history")
    for page in paginator.paginate(AlarmName=name, AlarmTypes=["MetricAlarm"], HistoryItemType=kind, StartDate=since):
        items += page.get("AlarmHistoryItems", [])
    return sorted(items, key=lambda item: item["Timestamp"])


def find_state_update(cloudwatch: Any, name: str, since: datetime, drill_id: str) -> dict[str, Any] | None:
    """The drill's change to ALARM, with the times of the state changes just before and after it."""
    updates = history(cloudwatch, name, "StateUpdate", since)
    for index in range(len(updates) - 1, -1, -1):
        new_state = json.loads(updates[index].get("HistoryData") or "{}").get("newState", {})
        data = new_state.get("stateReasonData")
        # The drill id is in StateReasonData when CloudWatch echoes it; the reason alone otherwise.
        ours = data.get("drill") == drill_id if isinstance(data, dict) and "drill" in data else True
        if new_state.get("stateValue") == "ALARM" and new_state.get("stateReason") == REASON and ours:
            return {
                "item": updates[index],
                "at": updates[index]["Timestamp"],
                "previous": updates[index - 1]["Timestamp"] if index > 0 else None,
                "next": updates[index + 1]["Timestamp"] if index + 1 < len(updates) else None,
            }
    return None


def find_action(cloudwatch: Any, name: str, change: dict[str, Any], topics: list[str]) -> dict[str, Any] | None:
    """The action on one of `topics` logged for the drill's change: at or after it, before the next change
    (the return to OK runs the OK action on the same topic)."""
    for item in history(cloudwatch, name, "Action", change["at"]):
        if change["next"] is not None and item["Timestamp"] >= change["next"]:
            break
        summary = item.get("HistorySummary", "")
        data = json.loads(item.get("HistoryData") or "{}")
        if not any(topic in summary or topic == data.get("notificationResource") for topic in topics):
            continue
        failed = summary.startswith("Failed") or data.get("actionState") == "Failed"
        error = data.get("error") or ""
        return {"at": item["Timestamp"], "ok": not failed, "summary": summary, "error": error}
    return None


def find_decision(table: Any, names: Names, change: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """The controller's settled decision on the drill's alarm occurrence, and how often it was deferred.

    The occurrence key carries the state-change timestamp of the event; an earlier occurrence is at or before
    the change that preceded the drill's, so that bounds the search from below.
    """
    low = change["at"] - timedelta(seconds=1)
    if change["previous"] is not None:
        low = max(low, change["previous"] + timedelta(microseconds=1))
    prefix = f"ALARM#{names.alarm_name}#"
    items = table.query(
        KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
        ExpressionAttributeValues={
            ":pk": f"ENDPOINT#{names.endpoint}",
            ":low": prefix + iso(low),
            ":high": prefix + "~",
        },
        ConsistentRead=True,
    ).get("Items", [])
    settled = [item for item in items if item.get("outcome")]
    attempts = max((int(item.get("attempts", 0)) for item in items), default=0)
    return (settled[0] if settled else None), attempts


def controller_log(logs: Any, names: Names, since: datetime) -> list[str]:
    """What the controller logged about the alarm since `since` (for a drill without a decision)."""
    try:
        events = logs.filter_log_events(
            logGroupName=names.log_group,
            startTime=int(since.timestamp() * 1000),
            filterPattern=f'"{names.alarm_name}"',
            limit=20,
        ).get("events", [])
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            return [f"log group {names.log_group} does not exist: the controller has never run"]
        return [f"cannot read {names.log_group}: {error}"]
    if not events:
        return [
            f"{names.log_group} has nothing about {names.alarm_name} since the drill: the controller was not "
            "invoked (check the GuardAlarms EventBridge rule and the controller's dead-letter queue)"
        ]
    return [event.get("message", "").strip() for event in events]


def poll(clients: dict[str, Any], names: Names, topics: list[str], drill: Drill, found: Progress) -> bool:
    """One round of checks; True when everything the drill waits for has been found."""
    cloudwatch = clients["cloudwatch"]
    if found.action is None or found.state_update is None:  # re-read: the change after ours bounds the action
        found.state_update = find_state_update(cloudwatch, names.alarm_name, drill.since, drill.id)
    if found.state_update is None:
        return False
    if found.action is None and topics:
        found.action = find_action(cloudwatch, names.alarm_name, found.state_update, topics)
    if found.decision is None:
        found.decision, found.attempts = find_decision(clients["table"], names, found.state_update)
    return (found.action is not None or not topics) and found.decision is not None


def show_progress(found: Progress, elapsed: float, out: Callable[[str], None]) -> None:
    lines = {}
    if found.state_update:
        lines["state"] = f"state change in history: {found.state_update['item'].get('HistorySummary')}"
    if found.action:
        lines["action"] = f"action: {found.action['summary']}"
    if found.decision:
        item = found.decision
        lines["decision"] = (
            f"controller decision: {item['outcome']} - {item.get('detail', '')} (settled {item.get('settled_at')})"
        )
    elif found.attempts:
        lines[f"attempt-{found.attempts}"] = f"controller deferred {found.attempts} time(s), Lambda retries"
    for key, line in lines.items():
        if key not in found.printed:
            found.printed.add(key)
            out(f"  [{elapsed:5.1f} s] {line}")


def verdict(found: Progress, names: Names, wait: float, topics: list[str]) -> list[str]:
    failures = []
    if found.state_update is None:
        failures.append(f"no StateUpdate to ALARM with reason {REASON!r} in the history of {names.alarm_name}")
    if topics and found.action is None:
        failures.append(f"no action on {', '.join(topics)} in the alarm history within {wait:g} s")
    elif found.action is not None and not found.action["ok"]:
        summary, error = found.action["summary"], found.action["error"]
        failures.append(f"notification failed: {summary}" + ("" if error in summary else f" ({error})"))
    if found.decision is None:
        failures.append(f"no rollback-controller decision on {names.alarm_name} in {names.table} within {wait:g} s")
    return failures


# ---- the drill ----------------------------------------------------------------------------------------------
def utcnow() -> datetime:
    return datetime.now(UTC)


def wait_for(
    clients: dict[str, Any],
    names: Names,
    topics: list[str],
    drill: Drill,
    *,
    wait: float,
    interval: float,
    out: Callable[[str], None],
    sleep: Callable[[float], None],
) -> Progress:
    started, found = time.monotonic(), Progress()
    while True:
        done = poll(clients, names, topics, drill, found)
        elapsed = time.monotonic() - started
        show_progress(found, elapsed, out)
        if done or elapsed >= wait:
            return found
        sleep(min(interval, max(wait - elapsed, 0)))


def run(
    clients: dict[str, Any],
    names: Names,
    *,
    wait: float,
    interval: float,
    allow_rollback: bool,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    out(f"alarm drill: {names.alarm_name}")
    topics, failures = preflight(clients, names, allow_rollback, out)
    failures += report_subscriptions(clients["sns"], topics, out)
    drill = Drill(id=uuid.uuid4().hex, since=utcnow() - SKEW)
    clients["cloudwatch"].set_alarm_state(
        AlarmName=names.alarm_name,
        StateValue="ALARM",
        StateReason=REASON,
        StateReasonData=json.dumps({"drill": drill.id}),
    )
    out(f"set {names.alarm_name} to ALARM ({REASON!r}, drill {drill.id}); waiting up to {wait:g} s")
    found = wait_for(clients, names, topics, drill, wait=wait, interval=interval, out=out, sleep=sleep)
    failures += verdict(found, names, wait, topics)
    if found.decision is None:
        out(f"  controller log ({names.log_group}):")
        for line in controller_log(clients["logs"], names, drill.since):
            out(f"    {line}")
        return fail(failures, out)
    if failures:
        return fail(failures, out)
    out(
        f"VERDICT: PASS - {names.alarm_name} notified its topic and the rollback controller decided "
        f"{found.decision['outcome']!r} (the alarm returns to its real state at its next evaluation)"
    )
    return 0


def fail(failures: list[str], out: Callable[[str], None]) -> int:
    out("VERDICT: FAIL")
    for failure in failures:
        out(f"  - {failure}")
    return 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.alarm_drill", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env-prefix", required=True, help="the environment's resource prefix, e.g. mlapi-dev")
    parser.add_argument("--alarm", default="container-error-rate", choices=GUARD_ALARMS, help="the guard alarm")
    parser.add_argument("--region")
    parser.add_argument("--profile")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the decision (default 120)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between checks (default 5)")
    parser.add_argument(
        "--allow-rollback", action="store_true", help="drill even if the controller may really roll back"
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)+", args.env_prefix):
        parser.error(f"--env-prefix {args.env_prefix!r} is not a resource prefix like mlapi-dev (<project>-<env>)")
    if args.wait < 0 or args.poll <= 0:
        parser.error("--wait must be >= 0 and --poll > 0 seconds")
    return args


def clients_for(session: Any, names: Names) -> dict[str, Any]:
    return {
        "cloudwatch": session.client("cloudwatch"),
        "sns": session.client("sns"),
        "logs": session.client("logs"),
        "table": session.resource("dynamodb").Table(names.table),
    }


def main(argv: list[str] | None = None, session: Any = None, sleep: Callable[[float], None] = time.sleep) -> int:
    args = parse_args(argv)
    names = Names(args.env_prefix, args.alarm)
    try:
        session = session or boto3.Session(profile_name=args.profile, region_name=args.region)
        return run(
            clients_for(session, names),
            names,
            wait=args.wait,
            interval=args.poll,
            allow_rollback=args.allow_rollback,
            sleep=sleep,
        )
    except DrillRefused as error:
        print(f"alarm_drill: {error}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:
        print(f"alarm_drill: AWS error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
