"""EventBridge → the delivery pipeline's model approval, both ways.

* `SageMaker Model Package State Change` (Approved or Rejected, in the project's group), decided in the registry
  (console or CLI) rather than by the pipeline (whose ApprovalDescription starts with "[pipeline]"):
  the run waiting at the model approval for this very package gets the decision (PutApprovalResult: an approval
  lets it on, a rejection stops it); otherwise an approval starts the pipeline when no run is in progress. That
  run passes every gate; its model approval is answered from the registry when it registers this same build.
* `CodePipeline Action Execution State Change` of the model approval with state FAILED (rejected in CodePipeline):
  the run's package becomes Rejected, with who rejected it and why.

The package of a run is the MODEL_PACKAGE_ARN its RegisterModelPackage action exported. Handler:
`retraining_trigger.registry.handler`.

One decision at a time (`decide`): the decision lock (decision_lock.py) is held while an event is routed, since
"no run in progress → start one" is a check-then-act that two concurrent events would both pass. An invocation
that finds the lock busy with another event raises, so Lambda's asynchronous retry runs it again 1 and then
2 minutes later (the lease is shorter than that) and it decides on the state the first decision left: every
event (an approval, a rejection) is decided, never dropped. One that finds its own event being handled (a
duplicate delivery) returns: the holder decides that event.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError

from .decision_lock import DecisionLock, LockBusy
from .request_token import request_token

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "registry-trigger"))
# The same marker as scripts/register_model_package.PIPELINE_MARKER (tests compare them).
PIPELINE_MARKER = "[pipeline]"
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ACTION_STATE_CHANGE = "CodePipeline Action Execution State Change"
RECENT_EXECUTIONS = 20
_SETTLED = {"ApprovalAlreadyCompletedException", "InvalidApprovalTokenException"}


@dataclass(frozen=True)
class Wiring:
    """Which pipeline, stage and actions this function connects to the registry (from its environment)."""

    pipeline: str
    stage: str
    approval_action: str
    register_action: str
    variable: str = "MODEL_PACKAGE_ARN"

    @classmethod
    def from_environment(cls) -> Wiring:
        env = os.environ
        return cls(env["PIPELINE_NAME"], env["APPROVAL_STAGE"], env["APPROVAL_ACTION"], env["REGISTER_ACTION"])


def action_executions(codepipeline: Any, wiring: Wiring, execution_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    request: dict[str, Any] = {"pipelineName": wiring.pipeline, "filter": {"pipelineExecutionId": execution_id}}
    while True:
        page = codepipeline.list_action_executions(**request)
        found += page.get("actionExecutionDetails", [])
        if not page.get("nextToken"):
            return found
        request["nextToken"] = page["nextToken"]


def registered_package(codepipeline: Any, wiring: Wiring, execution_id: str) -> str | None:
    """The package ARN a run's RegisterModelPackage action exported."""
    for detail in action_executions(codepipeline, wiring, execution_id):
        if detail.get("actionName") == wiring.register_action and detail.get("status") == "Succeeded":
            variables = (detail.get("output") or {}).get("outputVariables") or {}
            if variables.get(wiring.variable):
                return str(variables[wiring.variable])
    return None


def waiting_approval(codepipeline: Any, wiring: Wiring) -> tuple[str, str] | None:
    """(execution id, token) of the model approval while it waits for a decision."""
    state = codepipeline.get_pipeline_state(name=wiring.pipeline)
    stage = next((s for s in state.get("stageStates", []) if s.get("stageName") == wiring.stage), None) or {}
    for action in stage.get("actionStates", []):
        latest = action.get("latestExecution") or {}
        if action.get("actionName") == wiring.approval_action and latest.get("status") == "InProgress":
            execution = (stage.get("latestExecution") or {}).get("pipelineExecutionId")
            if execution and latest.get("token"):
                return str(execution), str(latest["token"])
    return None


def run_in_progress(codepipeline: Any, wiring: Wiring) -> str | None:
    summaries = codepipeline.list_pipeline_executions(pipelineName=wiring.pipeline, maxResults=RECENT_EXECUTIONS)
    for summary in summaries.get("pipelineExecutionSummaries", []):
        if summary.get("status") in ("InProgress", "Stopping"):
            return str(summary["pipelineExecutionId"])
    return None


def decided_by(package: dict[str, Any]) -> str:
    by = package.get("LastModifiedBy") or {}
    return str((by.get("IamIdentity") or {}).get("Arn") or by.get("UserProfileName") or "unknown")


def on_package_decision(event: dict[str, Any], sagemaker: Any, codepipeline: Any, wiring: Wiring) -> dict[str, Any]:
    arn = str((event.get("detail") or {}).get("ModelPackageArn", ""))
    # The event may be older than the package's state: decide on what the registry says now.
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    status, description = package.get("ModelApprovalStatus"), package.get("ApprovalDescription") or ""
    if status not in ("Approved", "Rejected") or description.startswith(PIPELINE_MARKER):
        return {"package": arn, "status": status, "action": "none", "reason": "not a registry decision"}
    who = decided_by(package)
    waiting = waiting_approval(codepipeline, wiring)
    if waiting and registered_package(codepipeline, wiring, waiting[0]) == arn:
        summary = f"{status} in the model registry by {who}: {description}"[:512]
        try:
            codepipeline.put_approval_result(
                pipelineName=wiring.pipeline,
                stageName=wiring.stage,
                actionName=wiring.approval_action,
                result={"summary": summary, "status": status},
                token=waiting[1],
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _SETTLED:
                raise
            return {"package": arn, "status": status, "action": "none", "reason": "approval already settled"}
        logger.info("model approval answered from the registry", extra={"package": arn, "execution": waiting[0]})
        return {"package": arn, "status": status, "action": "answered", "execution": waiting[0]}
    if status != "Approved":
        return {"package": arn, "status": status, "action": "none", "reason": "no run waits for this package"}
    running = run_in_progress(codepipeline, wiring)
    if running:
        return {"package": arn, "status": status, "action": "none", "reason": f"run {running} in progress"}
    started = codepipeline.start_pipeline_execution(name=wiring.pipeline, clientRequestToken=request_token(event))
    logger.info("approved in the registry: run started", extra={"package": arn, "by": who})
    return {"package": arn, "status": status, "action": "started", "execution": started["pipelineExecutionId"]}


def on_pipeline_rejection(event: dict[str, Any], sagemaker: Any, codepipeline: Any, wiring: Wiring) -> dict[str, Any]:
    detail = event.get("detail") or {}
    execution = str(detail.get("execution-id", ""))
    arn = registered_package(codepipeline, wiring, execution)
    if arn is None:
        return {"execution": execution, "action": "none", "reason": "the run registered no package"}
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    if package.get("ModelApprovalStatus") != "PendingManualApproval":
        return {"package": arn, "action": "none", "reason": f"already {package.get('ModelApprovalStatus')}"}
    rejection = next(
        (
            d
            for d in action_executions(codepipeline, wiring, execution)
            if d.get("actionName") == wiring.approval_action
        ),
        {},
    )
    who = str(rejection.get("updatedBy") or "unknown")
    why = str((((rejection.get("output") or {}).get("executionResult")) or {}).get("externalExecutionSummary") or "")
    properties = {**(package.get("CustomerMetadataProperties") or {}), "decided-by": who[:256]}
    sagemaker.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Rejected",
        ApprovalDescription=(
            f"{PIPELINE_MARKER} {wiring.approval_action} rejected by {who} in {wiring.pipeline} "
            f"execution {execution}: {why}"
        )[:1024],
        CustomerMetadataProperties=properties,
    )
    logger.info("rejected in CodePipeline: package rejected", extra={"package": arn, "by": who})
    return {"package": arn, "action": "rejected", "by": who}


def route(event: dict[str, Any], sagemaker: Any, codepipeline: Any, wiring: Wiring) -> dict[str, Any]:
    kind = event.get("detail-type")
    if kind == PACKAGE_STATE_CHANGE:
        return on_package_decision(event, sagemaker, codepipeline, wiring)
    if kind == ACTION_STATE_CHANGE and (event.get("detail") or {}).get("state") == "FAILED":
        return on_pipeline_rejection(event, sagemaker, codepipeline, wiring)
    return {"action": "none", "reason": f"not handled: {kind}"}


def decide(
    event: dict[str, Any], lock: DecisionLock, request_id: str, sagemaker: Any, codepipeline: Any, wiring: Wiring
) -> dict[str, Any]:
    """`route` under the decision lock; LockBusy (another event is being decided) propagates for a retry."""
    subject = str(event.get("id") or request_id)
    try:
        with lock.held(holder=request_id, subject=subject):
            return route(event, sagemaker, codepipeline, wiring)
    except LockBusy as busy:
        if busy.subject == subject:
            logger.info("event already being decided by another invocation", extra={"holder": busy.holder})
            return {"action": "none", "reason": f"duplicate delivery: {busy.holder} decides event {subject}"}
        logger.warning(
            "another decision holds the lock; Lambda retries this event",
            extra={"holder": busy.holder, "holder_subject": busy.subject, "expires_at": busy.expires_at},
        )
        raise


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = Config(retries={"max_attempts": 8, "mode": "standard"})
    sagemaker = boto3.client("sagemaker", region_name=os.environ.get("REGISTRY_REGION"), config=config)
    lock = DecisionLock.from_environment(boto3.client("dynamodb", config=config))
    codepipeline = boto3.client("codepipeline", config=config)
    return decide(event, lock, context.aws_request_id, sagemaker, codepipeline, Wiring.from_environment())
