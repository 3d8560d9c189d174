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
from .errors import ConcurrentChangeError, MalformedEventError, TransientAwsError
from .repository import Release, Status
from .runtime import Runtime, get_runtime
from .timeutil import iso, safe_time, utcnow

# Explicit fallbacks so a missing POWERTOOLS_* variable degrades to a default, not a crash.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "release-recorder"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MlApi/Releases"))
tracer = Tracer()
BY = "recorder"
PROMOTE_TRIES = 3  # re-reads after a lost race on the promotion transaction


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
    # The entry (its last_event_time) is also the evidence that the endpoint tried this config (_attempted).
    at = iso(event_at)
    noted = _settled(
        rt,
        release,
        release.status,
        rt.repo.note_event(release, event_time=at, by=BY, reason=f"endpoint {status}"),
        event_time=at,
    )
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
    replaced, lost, reason = _in_flight(rt, release, prior, is_new, at)
    # Writes in an order a retry can redo: the InService release first (its conditional write carries the event
    # time, so a redo is a no-op), then the releases it settles, then the position last.
    outcome = _settle_current(
        rt, release, prior, at, event_at, switched=previous != release.release_id, lost=[r.release_id for r in lost]
    )
    for other in replaced:
        _settled(
            rt,
            other,
            Status.SUPERSEDED,
            rt.repo.transition(
                other,
                Status.SUPERSEDED,
                at=at,
                by=BY,
                reason=f"replaced by {release.release_id} before promotion",
                updates={"superseded_by": release.release_id},
            ),
        )
    closed = [other.release_id for other in lost if _roll_back_attempt(rt, other, release, reason, at)]
    rt.repo.set_position(release.release_id, at)
    return {"outcome": outcome, "release": release.release_id, "rolled_back": closed}


def _settled(rt: Runtime, release: Release, to: Status, written: bool, event_time: str | None = None) -> bool:
    """A conditional write that failed is fine when the record already shows it (a retry, a duplicate event);
    otherwise the record changed under us: retry the whole event with fresh reads."""
    if written:
        return True
    fresh = rt.repo.get(release.release_id)
    done = fresh is not None and (
        fresh.status == to if event_time is None else (fresh.last_event_time or "") >= event_time
    )
    if done:
        return False
    raise ConcurrentChangeError(f"release {release.release_id} changed while recording; retrying")


def _settle_current(
    rt: Runtime, release: Release, prior: Status, at: str, event_at: datetime, *, switched: bool, lost: list[str]
) -> str:
    """The InService release's own transition. On a retry the conditional write (event_time) is a no-op."""
    if prior == Status.DEPLOYING or (prior == Status.SUPERSEDED and not release.live_at):
        bake_until = iso(event_at + timedelta(minutes=rt.settings.bake_minutes))
        if _settled(
            rt,
            release,
            Status.BAKING,
            rt.repo.transition(
                release,
                Status.BAKING,
                at=at,
                by=BY,
                reason="InService; baking",
                event_time=at,
                updates={"deployed_at": at, "bake_until": bake_until},
            ),
            event_time=at,
        ):
            metrics.add_metric(name="ReleaseBaking", unit=MetricUnit.Count, value=1)
        return "baking"
    if prior == Status.SUPERSEDED:
        _settled(
            rt,
            release,
            Status.LIVE,
            rt.repo.transition(
                release,
                Status.LIVE,
                at=at,
                by=BY,
                reason="endpoint back on this release",
                event_time=at,
                updates={"deployed_at": at},
            ),
            event_time=at,
        )
        return "restored"
    if switched or lost:
        # deployed_at moves so that alarms raised while the other release was tried count as stale.
        # Includes a rolled-back config put back by hand: recorded, never resurrected.
        why = "endpoint switched to this config" if switched else f"endpoint kept this config; {lost} failed"
        _settled(
            rt,
            release,
            release.status,
            rt.repo.note_event(release, event_time=at, by=BY, reason=why, updates={"deployed_at": at}),
            event_time=at,
        )
        return "switched" if switched else "kept"
    return "unchanged"  # e.g. autoscaling weight/capacity updates on the same config


def _attempted(other: Release, failure_reason: str | None) -> bool:
    """Evidence that the endpoint tried `other`: it baked, an endpoint event named it, or SageMaker's failure
    reason does. A release that is only registered (the pipeline has not called UpdateEndpoint yet) is not."""
    if other.status != Status.DEPLOYING:
        return True
    named = (
        bool(failure_reason)
        and re.search(rf"(?<![\w-]){re.escape(other.release_id)}(?![\w-])", failure_reason or "") is not None
    )
    return other.last_event_time is not None or named


def _in_flight(
    rt: Runtime, current: Release, prior: Status, is_new: bool, at: str
) -> tuple[list[Release], list[Release], str | None]:
    """Other in-flight releases the endpoint left behind by being InService on `current`: (baking releases a
    new release replaced, attempts lost, SageMaker's failure reason). Reads only."""
    state = rt.endpoint.describe()
    if state.busy or state.config_name != current.release_id:
        return [], [], None  # a newer update is already under way; its own events will settle it
    candidates = rt.repo.by_status(Status.DEPLOYING) + rt.repo.by_status(Status.BAKING)
    if prior == Status.SUPERSEDED and current.live_at:
        # The endpoint went back to an earlier live release (an out-of-band update-endpoint, or a
        # rollback whose history write failed): the live release it replaced counts as rolled back.
        candidates += rt.repo.by_status(Status.LIVE)
    others = [o for o in candidates if o.release_id != current.release_id and o.registered_at < at]
    if is_new:
        # `current` is a new release, not a return to an earlier one: only a baking release it
        # replaced is settled (superseded, never live); older stuck registrations are left alone.
        return [o for o in others if o.status == Status.BAKING], [], state.failure_reason
    return [], [o for o in others if _attempted(o, state.failure_reason)], state.failure_reason


def _roll_back_attempt(rt: Runtime, other: Release, current: Release, failure_reason: str | None, at: str) -> bool:
    alarms = alarms_named_in(failure_reason, rt.settings.alarm_names)
    reason = failure_reason or f"endpoint returned to {current.release_id}"
    written = rt.repo.transition(
        other,
        Status.ROLLED_BACK,
        at=at,
        by=BY,
        reason=reason,
        updates={"rolled_back_at": at, "rollback_reason": reason, "rollback_alarm": ",".join(alarms) or None},
    )
    if not _settled(rt, other, Status.ROLLED_BACK, written):
        return False
    metrics.add_metric(name="ReleaseRolledBack", unit=MetricUnit.Count, value=1)
    by = "by SageMaker" if failure_reason else f"(endpoint returned to {current.release_id})"
    rt.notifier.notify(
        f"Release {other.release_id} rolled back {by}",
        release=other.release_id,
        endpoint=rt.settings.endpoint_name,
        now_serving=current.release_id,
        alarms=alarms,
        reason=reason,
    )
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
    for _ in range(PROMOTE_TRIES):
        if rt.repo.promote(release, at=iso(now), by=BY, reason="bake passed with alarms OK"):
            metrics.add_metric(name="ReleasePromoted", unit=MetricUnit.Count, value=1)
            return {"outcome": "promoted", "release": release.release_id}
        # A condition failed: a concurrent writer changed one of the releases. Re-read and decide again.
        fresh = rt.repo.get(release.release_id)
        if fresh is None or fresh.status != Status.BAKING:
            return {"outcome": "duplicate", "release": release.release_id}
        release = fresh
    raise TransientAwsError(f"promoting {release.release_id}: the history kept changing")
