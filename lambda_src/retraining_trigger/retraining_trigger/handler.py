"""EventBridge → CodePipeline: a drift report starts the delivery pipeline as a retraining run.

The run carries pipeline variables RETRAINING=true and RETRAINING_REASON, which the model gate records.
One retraining run at a time: while one is in progress, further drift events are logged and dropped, since
that run already retrains on the newest data. The EventBridge event id is the request token, so a
redelivered event never starts a second run.

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

from .decision_lock import DecisionLock, LockBusy

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "retraining-trigger"))
MAX_REASON = 1000  # CodePipeline variable values are limited to 1000 characters
RECENT_EXECUTIONS = 20


def describe(event: dict[str, Any]) -> str:
    """One line saying what drifted, from either engine's event."""
    detail = event.get("detail") or {}
    if event.get("source") == "aws.sagemaker":
        schedule = str(detail.get("MonitoringScheduleArn", "?")).rsplit("/", 1)[-1]
        status = detail.get("ExitMessage") or detail.get("ProcessingJobStatus") or "?"
        return f"Model Monitor {schedule}: {status}"[:MAX_REASON]
    features = ", ".join(
        f"{f.get('feature')} (psi {f.get('psi')})" for f in detail.get("driftedFeatures", []) if isinstance(f, dict)
    )
    window = detail.get("window") or {}
    return (
        f"drift on {detail.get('endpointName', '?')} model {detail.get('modelVersion', '?')} "
        f"in [{window.get('start', '?')}, {window.get('end', '?')}): {features or 'no feature named'}"
    )[:MAX_REASON]


def retraining_in_progress(codepipeline: Any, pipeline: str) -> str | None:
    """The id of a running retraining execution, if any."""
    summaries = codepipeline.list_pipeline_executions(pipelineName=pipeline, maxResults=RECENT_EXECUTIONS)
    for summary in summaries.get("pipelineExecutionSummaries", []):
        if summary.get("status") not in ("InProgress", "Stopping"):
            continue
        execution = codepipeline.get_pipeline_execution(
            pipelineName=pipeline, pipelineExecutionId=summary["pipelineExecutionId"]
        )["pipelineExecution"]
        if any(
            v.get("name") == "RETRAINING" and v.get("resolvedValue") == "true" for v in execution.get("variables", [])
        ):
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
    response = codepipeline.start_pipeline_execution(
        name=pipeline,
        variables=[{"name": "RETRAINING", "value": "true"}, {"name": "RETRAINING_REASON", "value": reason}],
        clientRequestToken=str(event.get("id") or reason)[:128],
    )
    logger.info("retraining run started", extra={"execution": response["pipelineExecutionId"], "reason": reason})
    return {"started": True, "executionId": response["pipelineExecutionId"], "reason": reason}


def decide(
    event: dict[str, Any], lock: DecisionLock, request_id: str, codepipeline: Any, pipeline: str
) -> dict[str, Any]:
    """`trigger` under the decision lock; a busy lock returns without starting a run (the holder decides)."""
    subject = str(event.get("id") or request_id)
    try:
        with lock.held(holder=request_id, subject=subject):
            return trigger(event, codepipeline, pipeline)
    except LockBusy as busy:
        reason = describe(event)
        logger.info(
            "another drift event is being decided; its decision stands for this one",
            extra={"holder": busy.holder, "holder_event": busy.subject, "reason": reason},
        )
        return {"started": False, "decidedBy": busy.holder, "decidingEvent": busy.subject, "reason": reason}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = Config(retries={"max_attempts": 8, "mode": "standard"})
    lock = DecisionLock.from_environment(boto3.client("dynamodb", config=config))
    client = boto3.client("codepipeline", config=config)
    return decide(event, lock, context.aws_request_id, client, os.environ["PIPELINE_NAME"])
