"""Recorder Lambda: endpoint state changes -> release history; scheduled sweep -> promotion.

Handler: release_history.recorder.handler
Events:  {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Endpoint State Change"],
          "detail": {"EndpointName": ["<endpoint>"]}}
         and a schedule rule (rate(5 minutes)), whose events have detail-type "Scheduled Event".
"""

import json
import os
import re
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from .alarms import alarm_states, alarms_named_in
from .endpoint import normalize_status
from .errors import MalformedEventError
from .repository import Release, Status
from .runtime import Runtime, get_runtime
from .timeutil import iso, safe_time, utcnow

# Explicit fallbacks so a missing POWERTOOLS_* variable degrades to a default, not a crash.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "release-recorder"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MlApi/Releases"))
tracer = Tracer()
BY = "recorder"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = get_runtime()
    before = runtime.notifier.failures
    try:
        result = handle_event(runtime, event)
    finally:
        failed = runtime.notifier.failures - before
        if failed:
            metrics.add_metric(name="NotificationFailed", unit=MetricUnit.Count, value=failed)
    logger.info("recorder done", extra=result)
    return result


def handle_event(rt: Runtime, event: Any) -> dict[str, Any]:
    kind = event.get("detail-type") if isinstance(event, dict) else None
    try:
        if kind == "Scheduled Event":
            return promote_if_due(rt)
        if kind == "SageMaker Endpoint State Change":
            return record_state_change(rt, event)
    except MalformedEventError as error:
        metrics.add_metric(name="MalformedEvent", unit=MetricUnit.Count, value=1)
        return {"outcome": "malformed", "why": str(error), "sample": json.dumps(event, default=str)[:500]}
    return {"outcome": "ignored", "why": f"unexpected event {str(kind)[:100]!r}"}


def _state_change(rt: Runtime, event: dict[str, Any]) -> tuple[str, str, datetime] | None:
    """(config, status, event time) of an event for our endpoint; None for another endpoint.

    Shape: SageMaker Developer Guide, "Events that Amazon SageMaker AI sends to Amazon EventBridge", endpoint
    state change: detail.EndpointName, EndpointConfigName, EndpointStatus, LastModifiedTime (epoch ms)."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MalformedEventError("detail is not an object")
    if detail.get("EndpointName") != rt.settings.endpoint_name:
        return None
    config, status = detail.get("EndpointConfigName"), detail.get("EndpointStatus")
    if not isinstance(config, str) or not config:
        raise MalformedEventError("detail.EndpointConfigName is not a non-empty string")
    if not isinstance(status, str) or not status:
        raise MalformedEventError("detail.EndpointStatus is not a non-empty string")
    event_at = safe_time(detail.get("LastModifiedTime")) or safe_time(event.get("time"))
    if event_at is None:
        raise MalformedEventError("neither detail.LastModifiedTime nor time is a timestamp")
    return config, normalize_status(status), event_at


def record_state_change(rt: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    change = _state_change(rt, event)
    if change is None:
        return {"outcome": "ignored", "why": "other endpoint"}
    config, status, event_at = change
    release = rt.repo.ensure(config, iso(event_at), lambda: rt.endpoint.config_metadata(config))
    if status == "InService":
        return _on_in_service(rt, release, event_at)
    # Creating/Updating/Failed are audit entries only: SageMaker decides the update's fate, and the
    # following InService event says which config won.
    noted = rt.repo.note_event(release, event_time=iso(event_at), by=BY, reason=f"endpoint {status}")
    return {"outcome": "noted" if noted else "duplicate", "release": config, "status": status}


def _status_before(release: Release, at: str) -> Status:
    """The status `release` had before the event at `at` (it may be applied already: this is a retry)."""
    if release.last_event_time == at:
        for entry in reversed(release.history):
            if entry.get("at") == at and "from" in entry:
                return Status(entry["from"])
    return release.status


def _on_in_service(rt: Runtime, release: Release, event_at: datetime) -> dict[str, Any]:
    at = iso(event_at)
    previous, last = rt.repo.position()
    if last and last >= at:
        return {"outcome": "duplicate", "release": release.release_id}
    prior = _status_before(release, at)
    is_new = prior == Status.DEPLOYING or (prior == Status.SUPERSEDED and not release.live_at)
    outcome = _settle_current(rt, release, prior, at, event_at, switched=previous != release.release_id)
    attempted = _close_attempted(rt, release, prior, is_new, event_at)
    if outcome == "unchanged" and attempted:
        rt.repo.note_event(release, event_time=at, by=BY, reason=f"endpoint kept this config; {attempted} failed",
                           updates={"deployed_at": at})
        outcome = "kept"
    # The position goes last: a retry after any failure above finds it older and redoes the (idempotent) rest.
    rt.repo.set_position(release.release_id, at)
    return {"outcome": outcome, "release": release.release_id, "rolled_back": attempted}


def _settle_current(rt: Runtime, release: Release, prior: Status, at: str, event_at: datetime, *,
                    switched: bool) -> str:
    """The InService release's own transition. On a retry the conditional write (event_time) is a no-op."""
    if prior == Status.DEPLOYING or (prior == Status.SUPERSEDED and not release.live_at):
        bake_until = iso(event_at + timedelta(minutes=rt.settings.bake_minutes))
        if rt.repo.transition(release, Status.BAKING, at=at, by=BY, reason="InService; baking", event_time=at,
                              updates={"deployed_at": at, "bake_until": bake_until}):
            metrics.add_metric(name="ReleaseBaking", unit=MetricUnit.Count, value=1)
        return "baking"
    if prior == Status.SUPERSEDED:
        rt.repo.transition(release, Status.LIVE, at=at, by=BY, reason="endpoint back on this release",
                           event_time=at, updates={"deployed_at": at})
        return "restored"
    if switched:
        # deployed_at moves so that alarms raised while the other release was tried count as stale.
        # Includes a rolled-back config put back by hand: recorded, never resurrected.
        rt.repo.note_event(release, event_time=at, by=BY, reason="endpoint switched to this config",
                           updates={"deployed_at": at})
        return "switched"
    return "unchanged"  # e.g. autoscaling weight/capacity updates on the same config


def _attempted(other: Release, failure_reason: str | None) -> bool:
    """Evidence that the endpoint tried `other`: it baked, an endpoint event named it, or SageMaker's failure
    reason does. A release that is only registered (the pipeline has not called UpdateEndpoint yet) is not."""
    if other.status != Status.DEPLOYING:
        return True
    named = bool(failure_reason) and re.search(rf"(?<![\w-]){re.escape(other.release_id)}(?![\w-])",
                                               failure_reason or "") is not None
    return other.last_event_time is not None or named


def _close_attempted(rt: Runtime, current: Release, prior: Status, is_new: bool, event_at: datetime) -> list[str]:
    """Other in-flight releases lost: the endpoint is InService on `current` after they started."""
    state = rt.endpoint.describe()
    if state.busy or state.config_name != current.release_id:
        return []  # a newer update is already under way; its own events will settle it
    at, closed = iso(event_at), []
    candidates = rt.repo.by_status(Status.DEPLOYING) + rt.repo.by_status(Status.BAKING)
    if prior == Status.SUPERSEDED and current.live_at:
        # The endpoint went back to an earlier live release (an out-of-band update-endpoint, or a
        # rollback whose history write failed): the live release it replaced counts as rolled back.
        candidates += rt.repo.by_status(Status.LIVE)
    for other in candidates:
        if other.release_id == current.release_id or other.registered_at >= at:
            continue
        if is_new:
            # `current` is a new release, not a return to an earlier one: only a baking release it
            # replaced is settled (superseded, never live); older stuck registrations are left alone.
            if other.status == Status.BAKING:
                rt.repo.transition(other, Status.SUPERSEDED, at=at, by=BY,
                                   reason=f"replaced by {current.release_id} before promotion",
                                   updates={"superseded_by": current.release_id})
            continue
        if not _attempted(other, state.failure_reason):
            continue
        if _roll_back_attempt(rt, other, current, state.failure_reason, at):
            closed.append(other.release_id)
    return closed


def _roll_back_attempt(rt: Runtime, other: Release, current: Release, failure_reason: str | None, at: str) -> bool:
    alarms = alarms_named_in(failure_reason, rt.settings.alarm_names)
    reason = failure_reason or f"endpoint returned to {current.release_id}"
    if not rt.repo.transition(other, Status.ROLLED_BACK, at=at, by=BY, reason=reason,
                              updates={"rolled_back_at": at, "rollback_reason": reason,
                                       "rollback_alarm": ",".join(alarms) or None}):
        return False
    metrics.add_metric(name="ReleaseRolledBack", unit=MetricUnit.Count, value=1)
    by = "by SageMaker" if failure_reason else f"(endpoint returned to {current.release_id})"
    rt.notifier.notify(f"Release {other.release_id} rolled back {by}", release=other.release_id,
                       endpoint=rt.settings.endpoint_name, now_serving=current.release_id, alarms=alarms,
                       reason=reason)
    return True


def promote_if_due(rt: Runtime) -> dict[str, Any]:
    """Promote the release on the endpoint from baking to live once its bake passed with alarms OK."""
    state = rt.endpoint.describe()
    if state.status != "InService":
        return {"outcome": "waiting", "why": f"endpoint is {state.status}"}
    release = rt.repo.get(state.config_name)
    if release is None or release.status != Status.BAKING:
        return {"outcome": "nothing_to_promote", "release": state.config_name}
    now = utcnow()
    if release.bake_until and iso(now) < release.bake_until:
        return {"outcome": "baking", "release": release.release_id, "bake_until": release.bake_until}
    states = alarm_states(rt.cloudwatch, rt.settings.alarm_names)
    # ALARM and alarms CloudWatch does not know block promotion (better stuck than promoted blind);
    # INSUFFICIENT_DATA does not, since a quiet endpoint has no datapoints.
    blocking = {n: states.get(n, "MISSING") for n in rt.settings.alarm_names if states.get(n) != "OK"}
    blocking = {n: s for n, s in blocking.items() if s != "INSUFFICIENT_DATA"}
    if blocking:
        metrics.add_metric(name="PromotionBlocked", unit=MetricUnit.Count, value=1)
        return {"outcome": "blocked", "release": release.release_id, "alarms": blocking}
    if not rt.repo.promote(release, at=iso(now), by=BY, reason="bake passed with alarms OK"):
        return {"outcome": "duplicate", "release": release.release_id}
    metrics.add_metric(name="ReleasePromoted", unit=MetricUnit.Count, value=1)
    return {"outcome": "promoted", "release": release.release_id}
