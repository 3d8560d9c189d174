"""Recorder Lambda: endpoint state changes -> release history; scheduled sweep -> promotion.

Handler: release_history.recorder.handler
Events:  {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Endpoint State Change"],
          "detail": {"EndpointName": ["<endpoint>"]}}
         and a schedule rule (rate(5 minutes)), whose events have detail-type "Scheduled Event".
"""

import os
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from .alarms import alarm_states, alarms_named_in
from .endpoint import normalize_status
from .repository import Release, Status
from .runtime import Runtime, get_runtime
from .timeutil import iso, parse_time, utcnow

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
    kind = event.get("detail-type")
    if kind == "Scheduled Event":
        result = promote_if_due(runtime)
    elif kind == "SageMaker Endpoint State Change":
        result = record_state_change(runtime, event)
    else:
        result = {"outcome": "ignored", "why": f"unexpected event {kind!r}"}
    logger.info("recorder done", extra=result)
    return result


def record_state_change(rt: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    detail = event.get("detail") or {}
    config = detail.get("EndpointConfigName")
    if detail.get("EndpointName") != rt.settings.endpoint_name or not config:
        return {"outcome": "ignored", "why": "other endpoint or no config name"}
    status = normalize_status(str(detail.get("EndpointStatus", "")))
    event_at = parse_time(detail.get("LastModifiedTime")) or parse_time(event.get("time")) or utcnow()
    release = rt.repo.ensure(config, iso(event_at), lambda: rt.endpoint.config_metadata(config))
    if status == "InService":
        return _on_in_service(rt, release, event_at)
    # Creating/Updating/Failed are audit entries only: SageMaker decides the update's fate, and the
    # following InService event says which config won.
    noted = rt.repo.note_event(release, event_time=iso(event_at), by=BY, reason=f"endpoint {status}")
    return {"outcome": "noted" if noted else "duplicate", "release": config, "status": status}


def _on_in_service(rt: Runtime, release: Release, event_at: datetime) -> dict[str, Any]:
    at = iso(event_at)
    newest, previous = rt.repo.record_in_service(release.release_id, at)
    if not newest:
        return {"outcome": "duplicate", "release": release.release_id}
    switched = previous != release.release_id
    attempted = _close_attempted(rt, release, event_at)
    if release.status == Status.DEPLOYING or (release.status == Status.SUPERSEDED and not release.live_at):
        bake_until = iso(event_at + timedelta(minutes=rt.settings.bake_minutes))
        rt.repo.transition(release, Status.BAKING, at=at, by=BY, reason="InService; baking", event_time=at,
                           updates={"deployed_at": at, "bake_until": bake_until})
        metrics.add_metric(name="ReleaseBaking", unit=MetricUnit.Count, value=1)
        outcome = "baking"
    elif release.status == Status.SUPERSEDED:
        rt.repo.transition(release, Status.LIVE, at=at, by=BY, reason="endpoint back on this release",
                           event_time=at, updates={"deployed_at": at})
        outcome = "restored"
    elif switched or attempted:
        # deployed_at moves so that alarms raised while the other release was tried count as stale.
        # Includes a rolled-back config put back by hand: recorded, never resurrected.
        why = "endpoint switched to this config" if switched else f"endpoint kept this config; {attempted} failed"
        rt.repo.note_event(release, event_time=at, by=BY, reason=why, updates={"deployed_at": at})
        outcome = "switched" if switched else "kept"
    else:
        outcome = "unchanged"  # e.g. autoscaling weight/capacity updates on the same config
    return {"outcome": outcome, "release": release.release_id, "rolled_back": attempted}


def _close_attempted(rt: Runtime, current: Release, event_at: datetime) -> list[str]:
    """Other in-flight releases lost: the endpoint is InService on `current` after they started."""
    state = rt.endpoint.describe()
    if state.busy or state.config_name != current.release_id:
        return []  # a newer update is already under way; its own events will settle it
    at, closed = iso(event_at), []
    is_new = current.status == Status.DEPLOYING or (current.status == Status.SUPERSEDED and not current.live_at)
    candidates = rt.repo.by_status(Status.DEPLOYING) + rt.repo.by_status(Status.BAKING)
    if current.status == Status.SUPERSEDED and current.live_at:
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
        alarms = alarms_named_in(state.failure_reason, rt.settings.alarm_names)
        reason = state.failure_reason or f"endpoint returned to {current.release_id}"
        if rt.repo.transition(other, Status.ROLLED_BACK, at=at, by=BY, reason=reason,
                              updates={"rolled_back_at": at, "rollback_reason": reason,
                                       "rollback_alarm": ",".join(alarms) or None}):
            metrics.add_metric(name="ReleaseRolledBack", unit=MetricUnit.Count, value=1)
            rt.notifier.notify(f"Release {other.release_id} rolled back by SageMaker",
                               release=other.release_id, endpoint=rt.settings.endpoint_name,
                               now_serving=current.release_id, alarms=alarms, reason=reason)
            closed.append(other.release_id)
    return closed


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
