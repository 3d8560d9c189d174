"""Rollback controller Lambda: a steady-state alarm on the serving release -> back to last known good.

Handler: release_history.controller.handler
Event:   {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
          "detail": {"alarmName": [<ALARM_NAMES>], "state": {"value": ["ALARM"]}}}
Raises RetryableError (endpoint busy, AWS still failing) so Lambda's async retries / DLQ take over;
each alarm occurrence is retried at most MAX_ROLLBACK_ATTEMPTS times, then operators are notified.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from .alarms import AlarmEvent, parse_alarm_event
from .errors import EndpointBusyError, RetryableError
from .repository import Status
from .rollback import RollbackRequest, RollbackResult, roll_back
from .runtime import Runtime, get_runtime
from .timeutil import iso, utcnow

# Explicit fallbacks so a missing POWERTOOLS_* variable degrades to a default, not a crash.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "rollback-controller"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MlApi/Releases"))
tracer = Tracer()
BY = "rollback-controller"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = get_runtime()
    alarm = parse_alarm_event(event)
    if alarm is None or alarm.state != "ALARM":
        return _report({"outcome": "ignored", "why": "not an ALARM state change"})
    if runtime.settings.alarm_names and alarm.name not in runtime.settings.alarm_names:
        return _report({"outcome": "ignored", "why": f"alarm {alarm.name} is not a release alarm"})
    if runtime.repo.alarm_outcome(alarm.occurrence):
        return _report({"outcome": "duplicate", "alarm": alarm.name})
    request_id = getattr(context, "aws_request_id", "") or iso(utcnow())
    try:
        outcome, detail = handle_alarm(runtime, alarm, holder=f"{BY}:{request_id}")
    except RetryableError as error:
        attempts = runtime.repo.count_alarm_attempt(alarm.occurrence, now=utcnow())
        if attempts < runtime.settings.max_rollback_attempts:
            metrics.add_metric(name="RollbackRetried", unit=MetricUnit.Count, value=1)
            logger.warning("rollback deferred; Lambda will retry", extra={"attempt": attempts,
                                                                       "error": str(error)})
            raise
        outcome, detail = "gave_up", f"after {attempts} attempts: {error}"
        runtime.notifier.notify(f"Rollback gave up on {runtime.settings.endpoint_name}",
                                alarm=alarm.name, reason=alarm.reason, detail=detail,
                                action="roll back by hand: python -m lambda_src.releases.release_history "
                                       "rollback --to <release>")
    runtime.repo.settle_alarm(alarm.occurrence, outcome, now=utcnow(), detail=detail)
    with single_metric(name="AlarmHandled", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="outcome", value=outcome)
    return _report({"outcome": outcome, "alarm": alarm.name, "detail": detail})


def handle_alarm(rt: Runtime, alarm: AlarmEvent, holder: str) -> tuple[str, str]:
    """Decide and act on one ALARM occurrence; returns (outcome, human-readable detail)."""
    settings, repo = rt.settings, rt.repo
    state = rt.endpoint.describe()
    current = repo.ensure(state.config_name, iso(utcnow()),
                          lambda: rt.endpoint.config_metadata(state.config_name))
    if current.status == Status.ROLLED_BACK:
        return "already_rolled_back", f"{current.release_id} is already rolled back"
    if state.busy:
        raise EndpointBusyError(f"endpoint is {state.status}")
    if state.status != "InService":
        rt.notifier.notify(f"Alarm {alarm.name}: endpoint is {state.status}, no rollback",
                           alarm=alarm.name, reason=alarm.reason, endpoint=state.name)
        return "endpoint_not_in_service", state.status
    alarm_at = iso(alarm.timestamp)
    if current.restored_at and current.restored_at > (current.deployed_at or ""):
        if alarm_at < current.restored_at:
            return "stale", f"alarm predates the rollback to {current.release_id}"
        # A rollback to `current` was issued but its InService is not recorded yet: wait for it.
        raise EndpointBusyError(f"rollback to {current.release_id} not confirmed yet")
    if alarm_at < (current.deployed_at or current.registered_at):
        return "stale", f"alarm predates the deployment of {current.release_id}"

    target = repo.last_known_good(exclude=current.release_id)
    details = {"alarm": alarm.name, "reason": alarm.reason, "alarm_time": alarm_at,
               "endpoint": state.name, "bad_release": current.release_id,
               "target": target.release_id if target else None}
    if target is None:
        rt.notifier.notify(f"Alarm {alarm.name}: no last known good release, nothing changed", **details)
        return "no_last_known_good", f"no release to roll {current.release_id} back to"
    if target.release_id == state.config_name:
        return "already_on_good", f"endpoint already on {target.release_id}"
    if not settings.auto_rollback:
        rt.notifier.notify(f"Alarm {alarm.name}: auto rollback disabled, would roll back", **details)
        return "notify_only", "AUTO_ROLLBACK=false"
    freeze = repo.get_freeze()
    if freeze.frozen:
        rt.notifier.notify(f"Alarm {alarm.name}: rollback frozen, would roll back", **details,
                           frozen_by=freeze.by, frozen_reason=freeze.reason)
        return "frozen", f"frozen by {freeze.by}: {freeze.reason}"

    reason = f"alarm {alarm.name} at {alarm_at}: {alarm.reason}"
    result, _ = roll_back(repo, rt.endpoint, RollbackRequest(
        target=target, by=BY, reason=reason, alarm=alarm.name, lock_seconds=settings.lock_seconds),
        holder=holder)
    if result == RollbackResult.LOCKED:
        raise EndpointBusyError("another rollback holds the lock")  # retry: it may fail and release
    if result == RollbackResult.ROLLED_BACK:
        metrics.add_metric(name="RollbackPerformed", unit=MetricUnit.Count, value=1)
        rt.notifier.notify(f"Rolled back {state.name} from {current.release_id} to {target.release_id}",
                           **details)
    return str(result), f"{current.release_id} -> {target.release_id}"


def _report(result: dict[str, Any]) -> dict[str, Any]:
    logger.info("controller done", extra=result)
    return result
