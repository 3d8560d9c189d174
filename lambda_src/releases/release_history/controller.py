"""Rollback controller Lambda: a steady-state alarm on the serving release -> back to last known good.

Handler: release_history.controller.handler
Event:   {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
          "detail": {"alarmName": [<ALARM_NAMES>], "state": {"value": ["ALARM"]}}}
Intent before action (RELEASES.md): the decision is written before UpdateEndpoint; a retry that finds it open
completes it instead of deciding again. Raises RetryableError (endpoint busy, AWS still failing) so Lambda's
async retries take over; each alarm occurrence is retried at most MAX_ROLLBACK_ATTEMPTS times, then it ends in
an explicit "gave up" notice and the RollbackGaveUp metric. Notices go out after the outcome is stored, and a
failed notice is logged and counted (NotificationFailed), never a failed invocation.
"""

import json
import os
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from .alarms import AlarmEvent, parse_alarm_event
from .errors import EndpointBusyError, GaveUpError, MalformedEventError, RetryableError
from .repository import Freeze, Intent, IntentState, Release, Status
from .rollback import RollbackResult, complete, is_transient, roll_back
from .runtime import Runtime, get_runtime
from .timeutil import iso, safe_time, utcnow

# Explicit fallbacks so a missing POWERTOOLS_* variable degrades to a default, not a crash.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "rollback-controller"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MlApi/Releases"))
tracer = Tracer()
BY = "rollback-controller"
RUNBOOK = "roll back by hand: python -m lambda_src.releases.release_history rollback --to <release>"

Notice = tuple[str, dict[str, Any]]
Decision = tuple[str, str, Notice | None]  # outcome, detail, what to tell operators once it is stored


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = get_runtime()
    before = runtime.notifier.failures
    try:
        return _report(handle_event(runtime, event))
    finally:
        failed = runtime.notifier.failures - before
        if failed:
            metrics.add_metric(name="NotificationFailed", unit=MetricUnit.Count, value=failed)


def handle_event(rt: Runtime, event: Any) -> dict[str, Any]:
    try:
        alarm = parse_alarm_event(event)
    except MalformedEventError as error:
        metrics.add_metric(name="MalformedEvent", unit=MetricUnit.Count, value=1)
        return {"outcome": "malformed", "why": str(error), "sample": _sample(event)}
    if alarm is None or alarm.state != "ALARM":
        return {"outcome": "ignored", "why": "not an ALARM state change"}
    if not rt.settings.alarm_names:
        return {"outcome": "ignored", "why": "ALARM_NAMES is not set: no alarm is a release alarm"}
    if alarm.name not in rt.settings.alarm_names:
        return {"outcome": "ignored", "why": f"alarm {alarm.name} is not a release alarm"}
    # Bookkeeping failures (these two calls) fail the invocation: Lambda retries it, and an event whose retries
    # are all spent lands in the dead-letter queue, which alarms (ml_constructs/release_safety.py).
    if rt.repo.alarm_outcome(alarm.occurrence):
        return {"outcome": "duplicate", "alarm": alarm.name}
    outcome, detail, notice = _decide_bounded(rt, alarm)
    rt.repo.settle_alarm(alarm.occurrence, outcome, now=utcnow(), detail=detail)
    if notice:
        rt.notifier.notify(notice[0], **notice[1])
    with single_metric(name="AlarmHandled", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="outcome", value=outcome)
    return {"outcome": outcome, "alarm": alarm.name, "detail": detail}


def _decide_bounded(rt: Runtime, alarm: AlarmEvent) -> Decision:
    """handle_alarm, with every failure ending in a retry (raise) or, when retrying cannot help or the attempts
    are spent, an explicit gave_up outcome with its notice."""
    try:
        return handle_alarm(rt, alarm)
    except GaveUpError as error:
        return _gave_up(rt, alarm, str(error))
    except (RetryableError, ClientError, BotoCoreError) as error:
        if isinstance(error, ClientError) and not is_transient(error):
            return _gave_up(rt, alarm, f"{error.operation_name} refused: {error}")
        try:
            attempts = rt.repo.count_alarm_attempt(alarm.occurrence, now=utcnow())
        except (ClientError, BotoCoreError):
            logger.warning("could not count the attempt; Lambda will retry", extra={"error": str(error)})
            raise error from None
        if attempts < rt.settings.max_rollback_attempts:
            metrics.add_metric(name="RollbackRetried", unit=MetricUnit.Count, value=1)
            logger.warning("rollback deferred; Lambda will retry", extra={"attempt": attempts, "error": str(error)})
            raise
        return _gave_up(rt, alarm, f"after {attempts} attempts: {error}")


def _gave_up(rt: Runtime, alarm: AlarmEvent, detail: str) -> Decision:
    metrics.add_metric(name="RollbackGaveUp", unit=MetricUnit.Count, value=1)
    logger.error("rollback gave up", extra={"alarm": alarm.name, "detail": detail})
    notice = (
        f"Rollback gave up on {rt.settings.endpoint_name}",
        {"alarm": alarm.name, "reason": alarm.reason, "detail": detail, "action": RUNBOOK},
    )
    return "gave_up", detail, notice


def handle_alarm(rt: Runtime, alarm: AlarmEvent) -> Decision:
    """Decide and act on one ALARM occurrence; returns (outcome, detail, notice)."""
    repo, now = rt.repo, utcnow()
    intent = repo.intent()
    if intent and intent.state == IntentState.OPEN:
        result = complete(repo, rt.endpoint, intent)  # an earlier decision, half done: finish it first
        if intent.episode == alarm.occurrence:
            return _acted(rt, intent, result)
        intent = repo.intent()
    elif intent and intent.episode == alarm.occurrence:
        # This alarm's rollback is already done (a retry after its outcome could not be stored).
        if intent.outcome not in set(RollbackResult):
            return _gave_up(rt, alarm, intent.note or f"rollback {intent.outcome}")
        return _acted(rt, intent, RollbackResult(intent.outcome))
    state = rt.endpoint.describe()
    if state.status == "Updating" and state.pending_config:
        # A blue/green update under way: SageMaker's deployment guardrails watch these same alarms and roll the
        # update back themselves ("Auto-Rollback Configuration and Monitoring"); the recorder notes their rollback.
        # A second rollback would fight theirs, and paging "roll back by hand" would be false.
        return "deployment_guardrail", f"update onto {state.pending_config} under way: SageMaker rolls it back", None
    if state.busy:
        raise EndpointBusyError(f"endpoint is {state.status}")
    # A config the history does not know is recorded as deployed when the endpoint last changed, not now.
    current = repo.ensure(
        state.config_name, iso(state.last_modified), lambda: rt.endpoint.config_metadata(state.config_name)
    )
    if current.status == Status.ROLLED_BACK:
        return "already_rolled_back", f"{current.release_id} is already rolled back", None
    facts: dict[str, Any] = {
        "alarm": alarm.name,
        "reason": alarm.reason,
        "endpoint": state.name,
        "bad_release": current.release_id,
    }
    if state.status != "InService":
        return (
            "endpoint_not_in_service",
            state.status,
            (f"Alarm {alarm.name}: endpoint is {state.status}, no rollback", facts),
        )
    if alarm.timestamp is None:
        return "undated", "the event has no usable time", (f"Alarm {alarm.name}: undated event, no rollback", facts)
    alarm_at = iso(alarm.timestamp)
    stale = _stale(current, alarm_at)
    if stale:
        return stale
    freeze = repo.get_freeze()
    target = repo.last_known_good(exclude=current.release_id)
    facts.update(alarm_time=alarm_at, target=target.release_id if target else None)
    held = _flap_guard(rt, intent, freeze, current, now)
    if held:
        return held[0], held[1], (f"Alarm {alarm.name}: {held[1]}; no automatic rollback", facts)
    if target is None:
        return (
            "no_last_known_good",
            f"no release to roll {current.release_id} back to",
            (f"Alarm {alarm.name}: no last known good release, nothing changed", facts),
        )
    if not rt.settings.auto_rollback:
        return (
            "notify_only",
            "AUTO_ROLLBACK=false",
            (f"Alarm {alarm.name}: auto rollback disabled, would roll back", facts),
        )
    if freeze.frozen:
        return (
            "frozen",
            f"frozen by {freeze.by}: {freeze.reason}",
            (
                f"Alarm {alarm.name}: rollback frozen, would roll back",
                {**facts, "frozen_by": freeze.by, "frozen_reason": freeze.reason},
            ),
        )
    decided = Intent(
        episode=alarm.occurrence,
        from_release=current.release_id,
        to_release=target.release_id,
        by=BY,
        reason=f"alarm {alarm.name} at {alarm_at}: {alarm.reason}",
        opened_at=iso(now),
        automatic=True,
        alarm=alarm.name,
    )
    result = roll_back(repo, rt.endpoint, decided)
    if result == RollbackResult.LOCKED:
        raise EndpointBusyError("another rollback is open")  # retry: it completes that one first
    return _acted(rt, decided, result)


def _stale(current: Release, alarm_at: str) -> Decision | None:
    if current.restored_at and current.restored_at > (current.deployed_at or ""):
        if alarm_at < current.restored_at:
            return "stale", f"alarm predates the rollback to {current.release_id}", None
        # The endpoint is still moving onto `current` (its InService is not recorded): the alarm may be about
        # the release it is leaving. No automatic action; the alarm stays in ALARM for operators to see.
        return "unconfirmed", f"rollback to {current.release_id} not confirmed by SageMaker yet", None
    if alarm_at < (current.deployed_at or current.registered_at):
        return "stale", f"alarm predates the deployment of {current.release_id}", None
    return None


def _flap_guard(
    rt: Runtime, last: Intent | None, freeze: Freeze, current: Release, now: datetime
) -> tuple[str, str] | None:
    """After an automatic rollback: never a second step back, and nothing within the cooldown, until an
    operator acts (a CLI rollback replaces the intent; freeze/unfreeze after it counts too)."""
    if last is None or not last.automatic or last.outcome != RollbackResult.ROLLED_BACK or not last.completed_at:
        return None
    if freeze.at and freeze.at > last.completed_at:
        return None
    if current.release_id == last.to_release:
        return "walk_back_refused", (
            f"{current.release_id} was restored by the automatic rollback from "
            f"{last.from_release}; a further step back needs an operator"
        )
    completed = safe_time(last.completed_at)
    until = completed + timedelta(minutes=rt.settings.cooldown_minutes) if completed else now
    if now < until:
        return "cooldown", f"an automatic rollback ran at {last.completed_at}; cooldown until {iso(until)}"
    return None


def _acted(rt: Runtime, intent: Intent, result: RollbackResult) -> Decision:
    detail = f"{intent.from_release} -> {intent.to_release}"
    facts = {
        "alarm": intent.alarm,
        "endpoint": rt.settings.endpoint_name,
        "bad_release": intent.from_release,
        "target": intent.to_release,
        "reason": intent.reason,
    }
    if result == RollbackResult.ROLLED_BACK:
        metrics.add_metric(name="RollbackPerformed", unit=MetricUnit.Count, value=1)
        return (
            str(result),
            detail,
            (f"Rolled back {rt.settings.endpoint_name} from {intent.from_release} to {intent.to_release}", facts),
        )
    return str(result), detail, (f"Rollback {detail} {result}", facts)


def _sample(event: Any) -> str:
    return json.dumps(event, default=str)[:500]


def _report(result: dict[str, Any]) -> dict[str, Any]:
    logger.info("controller done", extra=result)
    return result
