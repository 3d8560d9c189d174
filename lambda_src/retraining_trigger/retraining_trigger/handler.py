"""EventBridge → CodePipeline: a drift report starts the delivery pipeline as a retraining run.

The run carries pipeline variables RETRAINING=true and RETRAINING_REASON, which the model gate records.
One retraining run at a time: while one is in progress, further drift events are logged and dropped, since
that run already retrains on the newest data. The EventBridge event id is the request token (an event without a
usable id: a digest of the event, request_token.py), so a redelivered or retried event never starts a second run.
Malformed events (a string `detail`, a null `driftedFeatures`, a string `window`) are described with "?" for what
cannot be read, never a crash.

One decision at a time (`decide`): "no retraining run in progress → start one" is a check-then-act that two
concurrent events would both pass (a run started by the first is not listed yet when the second checks), so it
runs under the decision lock (decision_lock.py; it replaces reserved concurrency 1, issue 13 item 9). An
invocation that finds the lock busy returns without starting a run: the holder's decision stands for both, since
either it starts a run, which retrains on the newest data, or a run is already going, which absorbs this event
as it would have anyway. If the holder fails, Lambda retries the holder's event under its request id, which takes
the lock back ("How Lambda handles errors and retries with asynchronous invocation").
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError

from .decision_lock import DecisionLock, Lease, LockBusy
from .request_token import request_token

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "retraining-trigger"))
MAX_REASON = 1000  # CodePipeline variable values are limited to 1000 characters
RECENT_EXECUTIONS = 20
# Errors a retry cannot fix (the pipeline or lock table does not exist, the role may not call it, the request is
# invalid): reported once as "gave up" instead of failing the invocation three times into the dead-letter queue.
PERMANENT = frozenset(
    {
        "PipelineNotFoundException",
        "ValidationException",
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "ResourceNotFoundException",
    }
)


def _mapping(value: Any) -> dict[str, Any]:
    """A JSON object of the event as a dict; anything else (a string `detail`, a null) counts as empty."""
    return value if isinstance(value, dict) else {}


def _text(value: Any, default: str = "?") -> str:
    return default if value is None or value == "" else str(value)


def describe(event: Any) -> str:
    """One line saying what drifted, from either engine's event; malformed parts read as unknown ("?")."""
    event = _mapping(event)
    detail = _mapping(event.get("detail"))
    if event.get("source") == "aws.sagemaker":
        schedule = _text(detail.get("MonitoringScheduleArn")).rsplit("/", 1)[-1]
        status = _text(detail.get("ExitMessage") or detail.get("ProcessingJobStatus"))
        return f"Model Monitor {schedule}: {status}"[:MAX_REASON]
    drifted = detail.get("driftedFeatures")
    features = ", ".join(
        f"{_text(f.get('feature'))} (psi {_text(f.get('psi'))})"
        for f in (drifted if isinstance(drifted, list) else [])
        if isinstance(f, dict)
    )
    raw_window = detail.get("window")
    window = _mapping(raw_window)
    span = (
        f"[{_text(window.get('start'))}, {_text(window.get('end'))})"
        if window or raw_window is None
        else (f"[{_text(raw_window)}]")
    )
    return (
        f"drift on {_text(detail.get('endpointName'))} model {_text(detail.get('modelVersion'))} "
        f"in {span}: {features or 'no feature named'}"
    )[:MAX_REASON]


def _retraining(codepipeline: Any, pipeline: str, execution_id: str) -> bool:
    """Whether the execution is a retraining run; one that is gone (it ended and aged out between the list and
    this read, or the id is stale) is not running, so it is skipped rather than aborting the decision."""
    try:
        execution = codepipeline.get_pipeline_execution(pipelineName=pipeline, pipelineExecutionId=execution_id)
    except ClientError as error:
        if _code(error) != "PipelineExecutionNotFoundException":
            raise
        logger.info("execution listed as running is gone; skipped", extra={"execution": execution_id})
        return False
    variables = _mapping(execution.get("pipelineExecution")).get("variables") or []
    return any(
        _mapping(v).get("name") == "RETRAINING" and _mapping(v).get("resolvedValue") == "true" for v in variables
    )


def retraining_in_progress(codepipeline: Any, pipeline: str) -> str | None:
    """The id of a running retraining execution, if any."""
    summaries = codepipeline.list_pipeline_executions(pipelineName=pipeline, maxResults=RECENT_EXECUTIONS)
    for summary in summaries.get("pipelineExecutionSummaries", []):
        if summary.get("status") not in ("InProgress", "Stopping"):
            continue
        if _retraining(codepipeline, pipeline, str(summary["pipelineExecutionId"])):
            return str(summary["pipelineExecutionId"])
    return None


def trigger(event: dict[str, Any], codepipeline: Any, pipeline: str) -> dict[str, Any]:
    reason = describe(event)
    running = retraining_in_progress(codepipeline, pipeline)
    if running:
        logger.info(
            "retraining already in progress; drift event dropped", extra={"execution": running, "reason": reason}
        )
        return {"started": False, "runningExecutionId": running, "reason": reason}
    token = request_token(event)
    response = codepipeline.start_pipeline_execution(
        name=pipeline,
        # A value must not be empty (StartPipelineExecution: "values can be anything except an empty string").
        variables=[{"name": "RETRAINING", "value": "true"}, {"name": "RETRAINING_REASON", "value": reason or "?"}],
        clientRequestToken=token,
    )
    logger.info(
        "retraining run started", extra={"execution": response["pipelineExecutionId"], "reason": reason, "token": token}
    )
    return {"started": True, "executionId": response["pipelineExecutionId"], "reason": reason}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _gave_up(event: Any, error: ClientError) -> dict[str, Any]:
    """A ClientError retrying cannot fix: say so once, explicitly, instead of three identical failures."""
    reason = describe(event)
    logger.error(
        "gave up: retraining decision failed and retrying cannot fix it",
        extra={"error_code": _code(error), "error": str(error), "reason": reason},
    )
    return {"started": False, "outcome": "gave-up", "error": _code(error), "reason": reason}


def decide(
    event: dict[str, Any], lock: DecisionLock, request_id: str, codepipeline: Any, pipeline: str
) -> dict[str, Any]:
    """`trigger` under the decision lock; a busy lock returns without starting a run (the holder decides).

    Every AWS error ends in an outcome: a permanent one (wrong pipeline, no permission, invalid request) is
    logged as "gave up" and returned; any other propagates after a log line for Lambda's retry, which decides
    again with the same request token (one run per event whatever call failed); when Lambda's retries are spent,
    the event goes to the function's dead-letter queue (PlatformFunction's on-failure destination).
    """
    subject = request_token(event)
    try:
        lease = lock.acquire(holder=request_id, subject=subject)
    except LockBusy as busy:
        reason = describe(event)
        logger.info(
            "another drift event is being decided; its decision stands for this one",
            extra={"holder": busy.holder, "holder_event": busy.subject, "reason": reason},
        )
        return {"started": False, "decidedBy": busy.holder, "decidingEvent": busy.subject, "reason": reason}
    except Exception as error:  # every failure gets its outcome logged, then is re-raised or ends
        return _failed(event, error)
    try:
        return trigger(event, codepipeline, pipeline)
    except Exception as error:
        return _failed(event, error)
    finally:
        _release(lock, lease)


def _failed(event: Any, error: Exception) -> dict[str, Any]:
    if isinstance(error, ClientError) and _code(error) in PERMANENT:
        return _gave_up(event, error)
    code = _code(error) if isinstance(error, ClientError) else type(error).__name__
    logger.warning(
        "retraining decision failed; Lambda retries the event (same request token), then dead-letters it",
        extra={"error_code": code, "error": str(error)},
    )
    raise error


def _release(lock: DecisionLock, lease: Lease) -> None:
    try:
        released = lock.release(lease)
    except Exception:
        # The decision is made (a run started with this event's token, or none needed): raising would retry a
        # settled event. The lease runs out by itself.
        logger.exception(
            "releasing the decision lock failed; its lease expires", extra={"expires_at": lease.expires_at}
        )
        return
    if not released:
        logger.error("the decision lock's lease ran out before the decision ended: lengthen the lease")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = Config(retries={"max_attempts": 8, "mode": "standard"})
    lock = DecisionLock.from_environment(boto3.client("dynamodb", config=config))
    client = boto3.client("codepipeline", config=config)
    return decide(event, lock, context.aws_request_id, client, os.environ["PIPELINE_NAME"])
