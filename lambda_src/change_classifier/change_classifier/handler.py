"""Lambda entry point: classify the release, approve or leave the approvals, audit, report to CodePipeline.

One classification at a time (`decide`), under the decision lock (decision_lock.py) instead of reserved
concurrency. An invocation that finds the lock held for the same job (a duplicate delivery) returns without
reporting: the holder reports that job. One that finds it held for another job (a stage retried while the old
classification still runs) raises, so Lambda's asynchronous retry runs it again 1 and then 2 minutes later, after
the holder has finished or its lease has run out, and the job is decided then: a job is never left unreported
because another was being classified. A lock table that cannot be read fails the job like any other error.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError

from .approvals import AUTO_APPROVAL_SUMMARY, PendingApprovals
from .assembly import synthesized_stacks
from .audit import AuditLog
from .comparison import MODEL_TYPE, StackComparison, compare
from .decision_lock import DecisionLock, Lease, LockBusy
from .job import Job, JobError, job_id, parse_job
from .template_diff import tag_value

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "change-classifier"))
_RETRY = Config(retries={"max_attempts": int(os.environ.get("AWS_API_MAX_ATTEMPTS", "8")), "mode": "standard"})


@dataclass
class Clients:
    """AWS clients; the artifact reader uses the job's own credentials, as CodePipeline intends."""

    codepipeline: Any
    dynamodb: Any  # boto3 resource

    def artifacts_s3(self, job: Job) -> Any:
        return boto3.client("s3", config=Config(signature_version="s3v4", retries=_RETRY.retries), **job.credentials)

    def cloudformation_for(self, job: Job) -> Any:
        role = job.parameters.cfn_role_arn
        credentials: dict[str, str] = {}
        if role:
            assumed = boto3.client("sts", config=_RETRY).assume_role(RoleArn=role, RoleSessionName="change-classifier")
            c = assumed["Credentials"]
            credentials = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                           "aws_session_token": c["SessionToken"]}
        return lambda region: boto3.client("cloudformation", region_name=region, config=_RETRY, **credentials)


def default_clients() -> Clients:
    return Clients(codepipeline=boto3.client("codepipeline", config=_RETRY),
                   dynamodb=boto3.resource("dynamodb", config=_RETRY))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _compare_all(job: Job, clients: Clients) -> tuple[list[StackComparison], str | None]:
    """Comparisons of every watched stack, and the source commit the templates were synthesized from."""
    with tempfile.TemporaryFile() as buffer:
        clients.artifacts_s3(job).download_fileobj(job.artifact_bucket, job.artifact_key, buffer)
        buffer.seek(0)
        try:
            archive = zipfile.ZipFile(buffer)
        except zipfile.BadZipFile:
            raise JobError(f"input artifact s3://{job.artifact_bucket}/{job.artifact_key} is not a zip") from None
        with archive:
            stacks = synthesized_stacks(archive, job.parameters.watched_stacks, job.parameters.assembly)
    # The synth step tags the model with -c commit=<source commit>; the synth output has no revision.
    commits = [tag_value(s.template, MODEL_TYPE, "commit") for s in stacks]
    commit = next((c for c in commits if c and c != "unknown"), None) or job.artifact_revision
    cloudformation_for = clients.cloudformation_for(job)
    return [compare(stack, cloudformation_for) for stack in stacks], commit


def classify(job: Job, clients: Clients) -> str:
    """Decide, audit, and approve when nothing relevant changed; returns the job summary."""
    parameters = job.parameters
    comparisons, commit = _compare_all(job, clients)
    changed = [c for c in comparisons if c.changed]
    attempts = int(os.environ.get("APPROVAL_WAIT_ATTEMPTS", "10"))
    approvals = PendingApprovals(clients.codepipeline, parameters, attempts=attempts,
                                 delay_seconds=float(os.environ.get("APPROVAL_WAIT_SECONDS", "3")))
    tokens = None if changed else approvals.wait_until_pending()
    execution_id = approvals.current_execution() if changed else approvals.execution_id
    if changed:
        decision = "left-for-humans"
        summary = "model or inference change: approvals left for humans (" + \
                  "; ".join(f"{c.stack}: {', '.join(c.reasons[:3])}" for c in changed) + ")"
    elif tokens is None:
        decision = "left-for-humans"
        summary = (f"no model or inference change, but approvals {', '.join(parameters.approval_actions)} "
                   f"were not all pending after {attempts} checks: left for humans")
    else:
        decision, summary = "auto-approving", AUTO_APPROVAL_SUMMARY
    record = {
        "pipeline": parameters.pipeline, "execution_id": execution_id or "unknown",
        "commit": commit or "unknown", "decision": decision, "summary": summary,
        "stacks_compared": [c.to_item() for c in comparisons], "approval_actions": list(parameters.approval_actions),
    }
    audit = AuditLog(clients.dynamodb.Table(parameters.audit_table), parameters.audit_partition)
    key = audit.record(_now(), job.id, record)  # before approving: no approval without an audit record
    logger.info("classified", extra={k: record[k] for k in ("decision", "execution_id", "commit", "summary")})
    if tokens:
        results = approvals.approve(tokens)
        audit.settle(key, results, "auto-approved")
        logger.info("approved", extra={"approvals": results})
        summary = f"{AUTO_APPROVAL_SUMMARY} ({', '.join(f'{a}: {r}' for a, r in results.items())})"
    return summary


def _failure_type(error: Exception) -> str:
    if isinstance(error, JobError | LookupError):  # bad parameters, artifact or pipeline/stage name
        return "ConfigurationError"
    if isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in {
            "AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
        return "PermissionError"
    return "JobFailed"


def _fail_job(clients: Clients, current_job: str, error: Exception) -> dict[str, str]:
    message = f"change classifier: {type(error).__name__}: {error}"[:5000]
    clients.codepipeline.put_job_failure_result(
        jobId=current_job, failureDetails={"type": _failure_type(error), "message": message})
    return {"job_id": current_job, "result": "failure", "message": message}


def _required_job_id(event: dict[str, Any]) -> str:
    current_job = job_id(event)
    if not current_job:
        raise ValueError("not a CodePipeline job event (no CodePipeline.job.id)")
    return current_job


def run(event: dict[str, Any], clients: Clients) -> dict[str, str]:
    current_job = _required_job_id(event)
    logger.append_keys(job_id=current_job)
    try:
        summary = classify(parse_job(event), clients)
    except Exception as error:
        logger.exception("classification failed")
        return _fail_job(clients, current_job, error)
    clients.codepipeline.put_job_success_result(
        jobId=current_job, executionDetails={"summary": summary[:2048], "percentComplete": 100})
    return {"job_id": current_job, "result": "success", "summary": summary}


def decide(event: dict[str, Any], clients: Clients, lock: DecisionLock, request_id: str) -> dict[str, str]:
    """`run` under the decision lock; LockBusy for another job propagates, for Lambda's retry."""
    current_job = _required_job_id(event)
    logger.append_keys(job_id=current_job)
    try:
        lease = lock.acquire(holder=request_id, subject=current_job)
    except LockBusy as busy:
        if busy.subject == current_job:
            logger.info("job already being classified by another invocation", extra={"holder": busy.holder})
            return {"job_id": current_job, "result": "duplicate", "message": f"{busy.holder} classifies this job"}
        logger.warning("another classification holds the lock; Lambda retries this job",
                       extra={"holder": busy.holder, "holder_job": busy.subject, "expires_at": busy.expires_at})
        raise
    except Exception as error:  # the lock cannot be checked: no decision, and the job says why
        logger.exception("decision lock unavailable")
        return _fail_job(clients, current_job, error)
    try:
        return run(event, clients)
    finally:
        _release(lock, lease)


def _release(lock: DecisionLock, lease: Lease) -> None:
    try:
        released = lock.release(lease)
    except Exception:
        # The job's result is reported already; raising would make Lambda re-run a settled job. The lease expires.
        logger.exception("releasing the decision lock failed", extra={"expires_at": lease.expires_at})
        return
    if not released:
        logger.error("the decision lock's lease ran out before the classification ended: lengthen the lease")


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    clients = default_clients()
    try:
        # A plain client: a resource's meta.client re-serializes typed attribute values.
        lock = DecisionLock.from_environment(boto3.client("dynamodb", config=_RETRY))
    except RuntimeError as error:  # not wired: fail the job rather than leave it hanging until its timeout
        logger.exception("decision lock not configured")
        return _fail_job(clients, _required_job_id(event), error)
    return decide(event, clients, lock, context.aws_request_id)
