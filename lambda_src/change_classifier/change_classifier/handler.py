"""Lambda entry point: classify the release, approve or leave the approvals, audit, report to CodePipeline.

One classification at a time (`decide`), under the decision lock (decision_lock.py) instead of reserved
concurrency. An invocation that finds the lock held for the same job (a duplicate delivery) returns without
reporting: the holder reports that job. One that finds it held for another job (a stage retried while the old
classification still runs) raises, so Lambda's asynchronous retry runs it again 1 and then 2 minutes later, after
the holder has finished or its lease has run out, and the job is decided then: a job is never left unreported
because another was being classified. A lock table that cannot be read fails the job like any other error.

Intent before action (issue 14, defect 8): the decision is the job's one audit record (audit.py), written before
anything acts on it. CodePipeline invokes the function asynchronously ("Using AWS Lambda with AWS CodePipeline",
Lambda Developer Guide), so an invocation that fails after the record (an approval, the audit update, or
PutJobSuccessResult) is raised for Lambda's retry, which finds the record and completes that same decision instead
of writing a second, contradictory one. Neither result reported, the action "hangs until the action times out"
("AWS Lambda invoke action reference", CodePipeline User Guide): 20 minutes without a reply ("Quotas in AWS
CodePipeline"). So the last attempt fails the job explicitly rather than leave it to that timeout.
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
# Invocations of one job: CodePipeline invokes the function asynchronously ("Using AWS Lambda with AWS
# CodePipeline"), so a failed invocation is retried twice ("How Lambda handles errors and retries with asynchronous
# invocation"; PlatformFunction's retry_attempts).
FAILED = "failed"  # the decision recorded for a job that failed before deciding
ATTEMPTS = 1 + int(os.environ.get("LAMBDA_RETRY_ATTEMPTS", "2"))
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
            credentials = {
                "aws_access_key_id": c["AccessKeyId"],
                "aws_secret_access_key": c["SecretAccessKey"],
                "aws_session_token": c["SessionToken"],
            }
        return lambda region: boto3.client("cloudformation", region_name=region, config=_RETRY, **credentials)


def default_clients() -> Clients:
    return Clients(
        codepipeline=boto3.client("codepipeline", config=_RETRY), dynamodb=boto3.resource("dynamodb", config=_RETRY)
    )


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


def _approvals(job: Job, clients: Clients) -> PendingApprovals:
    return PendingApprovals(
        clients.codepipeline,
        job.parameters,
        attempts=int(os.environ.get("APPROVAL_WAIT_ATTEMPTS", "10")),
        delay_seconds=float(os.environ.get("APPROVAL_WAIT_SECONDS", "3")),
    )


def classify(job: Job, clients: Clients, approvals: PendingApprovals) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The decision (the audit record's content) and, when it is to approve, the approvals' tokens."""
    parameters = job.parameters
    comparisons, commit = _compare_all(job, clients)
    changed = [c for c in comparisons if c.changed]
    tokens = None if changed else approvals.wait_until_pending()
    execution_id = approvals.current_execution() if changed else approvals.execution_id
    if changed:
        decision = "left-for-humans"
        summary = (
            "model or inference change: approvals left for humans ("
            + "; ".join(f"{c.stack}: {', '.join(c.reasons[:3])}" for c in changed)
            + ")"
        )
    elif tokens is None:
        decision = "left-for-humans"
        summary = (
            f"no model or inference change, but approvals {', '.join(parameters.approval_actions)} "
            f"were not all pending after {approvals.attempts} checks: left for humans"
        )
    else:
        decision, summary = "auto-approving", AUTO_APPROVAL_SUMMARY
    record = {
        "pipeline": parameters.pipeline,
        "execution_id": execution_id or "unknown",
        "commit": commit or "unknown",
        "decision": decision,
        "summary": summary,
        "stacks_compared": [c.to_item() for c in comparisons],
        "approval_actions": list(parameters.approval_actions),
    }
    return record, tokens


def _decided(job: Job, clients: Clients, audit: AuditLog) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The job's decision: the one an earlier attempt recorded, or a new one, recorded before anything acts on it."""
    recorded = audit.resume(job.id, _now())
    if recorded is not None:
        logger.info(
            "resuming the recorded decision",
            extra={"decision": recorded.get("decision"), "attempts": len(recorded.get("attempts", []))},
        )
        return recorded, None
    approvals = _approvals(job, clients)
    record, tokens = classify(job, clients, approvals)
    stored, written = audit.record(_now(), job.id, record)  # before approving: no approval without an audit record
    logger.info(
        "classified" if written else "decided already: completing the recorded decision",
        extra={k: stored.get(k) for k in ("decision", "execution_id", "commit", "summary")},
    )
    return stored, tokens if written else None


def _approve(job: Job, clients: Clients, audit: AuditLog, record: dict[str, Any], tokens: dict[str, str] | None) -> str:
    """Approve what the record decided to approve; a retry reads the tokens again and skips what is answered."""
    approvals = _approvals(job, clients)
    if tokens is None:
        tokens = approvals.pending()
    results = approvals.approve(tokens)
    for action in record.get("approval_actions") or job.parameters.approval_actions:
        # Answered before this attempt: by the attempt that failed after approving it, or by a human.
        results.setdefault(action, f"already settled: {approvals.statuses.get(action, 'unknown')}")
    summary = f"{AUTO_APPROVAL_SUMMARY} ({', '.join(f'{a}: {r}' for a, r in sorted(results.items()))})"
    audit.settle(job.id, results, "auto-approved", summary)
    logger.info("approved", extra={"approvals": results})
    return summary


def _report_success(clients: Clients, current_job: str, summary: str) -> None:
    try:
        clients.codepipeline.put_job_success_result(
            jobId=current_job, executionDetails={"summary": summary[:2048], "percentComplete": 100}
        )
    except ClientError as error:
        # An earlier attempt's report went through although its response was lost: the job is no longer open.
        if _code(error) != "InvalidJobStateException":
            raise
        logger.warning("job already reported (InvalidJobStateException): nothing left to do")


def _complete(
    job: Job, clients: Clients, audit: AuditLog, record: dict[str, Any], tokens: dict[str, str] | None
) -> dict[str, str]:
    """Act on the recorded decision and report it. A failure here is left to Lambda's retry, which resumes this
    same record (never decides again); on the last attempt the job is failed explicitly ("gave up")."""
    try:
        summary = str(record.get("summary", ""))
        if record.get("decision") == FAILED:  # a failure is a decision too: a redelivery reports it again
            _report_failure(clients, job.id, str(record.get("failure_type") or "JobFailed"), summary)
            return {"job_id": job.id, "result": "failure", "message": summary}
        if record.get("decision") == "auto-approving":
            summary = _approve(job, clients, audit, record, tokens)
        _report_success(clients, job.id, summary)
    except Exception as error:
        attempt, last = len(record.get("attempts") or [1]), ATTEMPTS
        if attempt < last:
            logger.exception(
                "completing the recorded decision failed: Lambda's retry completes it",
                extra={"decision": record.get("decision"), "attempt": attempt, "attempts": last},
            )
            raise
        return _give_up(clients, audit, job.id, record, error, attempt)
    return {"job_id": job.id, "result": "success", "summary": summary}


def _give_up(
    clients: Clients, audit: AuditLog, current_job: str, record: dict[str, Any], error: Exception, attempt: int
) -> dict[str, str]:
    outcome = (
        f"gave up after {attempt} attempts completing decision {record.get('decision')}: "
        f"{type(error).__name__}: {error}"
    )[:1000]
    logger.error("gave up: the recorded decision could not be completed", extra={"outcome": outcome})
    for step, call in (
        ("audit outcome", lambda: audit.note_outcome(current_job, outcome)),
        ("job failure report", lambda: _fail_job(clients, current_job, RuntimeError(outcome))),
    ):
        try:
            call()
        except Exception:
            # Nothing retries any more: CodePipeline times the action out (20 minutes without a reply, "Quotas in
            # AWS CodePipeline") and the stage can be retried by hand.
            logger.exception(f"gave up: the {step} failed too")
    return {"job_id": current_job, "result": "gave-up", "message": outcome}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _failure_type(error: Exception) -> str:
    if isinstance(error, JobError | LookupError):  # bad parameters, artifact or pipeline/stage name
        return "ConfigurationError"
    if isinstance(error, ClientError) and _code(error) in {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
    }:
        return "PermissionError"
    return "JobFailed"


def _failure_message(error: Exception) -> str:
    return f"change classifier: {type(error).__name__}: {error}"[:5000]


def _report_failure(clients: Clients, current_job: str, failure_type: str, message: str) -> None:
    try:
        clients.codepipeline.put_job_failure_result(
            jobId=current_job, failureDetails={"type": failure_type, "message": message}
        )
    except ClientError as report_error:
        if _code(report_error) != "InvalidJobStateException":
            logger.exception("reporting the job's failure failed: Lambda retries the job")
            raise
        logger.warning("job already reported (InvalidJobStateException): nothing left to do")


def _fail_job(clients: Clients, current_job: str, error: Exception) -> dict[str, str]:
    """Report the job failed. If the report itself fails, raise: Lambda's retry runs the job again."""
    message = _failure_message(error)
    _report_failure(clients, current_job, _failure_type(error), message)
    return {"job_id": current_job, "result": "failure", "message": message}


def _record_failure(job: Job, audit: AuditLog, error: Exception) -> dict[str, Any] | None:
    """Record that the job failed before deciding, so a redelivery reports the same failure instead of deciding
    after CodePipeline has closed the job; returns the job's record as stored (an earlier decision stands), or
    None when the table cannot take it (the failure report still goes out)."""
    record = {
        "pipeline": job.parameters.pipeline,
        "decision": FAILED,
        "summary": _failure_message(error),
        "failure_type": _failure_type(error),
        "approval_actions": list(job.parameters.approval_actions),
    }
    try:
        stored, _ = audit.record(_now(), job.id, record)
    except Exception:
        logger.exception("recording the job's failure in the audit table failed")
        return None
    return stored


def _fail_before_deciding(job: Job, clients: Clients, audit: AuditLog, error: Exception) -> dict[str, str]:
    stored = _record_failure(job, audit, error)
    if stored is None or stored.get("decision") == FAILED:
        return _fail_job(clients, job.id, error)
    # A decision was recorded after all (by the attempt whose record this one could not read): it stands.
    return _complete(job, clients, audit, stored, None)


def _failed_unlocked(event: dict[str, Any], clients: Clients, current_job: str, error: Exception) -> dict[str, str]:
    """The lock could not be taken: nothing was decided. The failure is recorded like any other, unless another
    invocation of this job recorded a decision meanwhile: then that one reports it."""
    try:
        job = parse_job(event)
    except JobError:
        return _fail_job(clients, current_job, error)
    audit = AuditLog(clients.dynamodb.Table(job.parameters.audit_table), job.parameters.audit_partition)
    stored = _record_failure(job, audit, error)
    if stored is None or stored.get("decision") == FAILED:
        return _fail_job(clients, current_job, error)
    logger.info("another invocation decided this job; it reports it", extra={"decision": stored.get("decision")})
    return {"job_id": current_job, "result": "duplicate", "message": "decided by another invocation"}


def _required_job_id(event: dict[str, Any]) -> str:
    current_job = job_id(event)
    if not current_job:
        raise ValueError("not a CodePipeline job event (no CodePipeline.job.id)")
    return current_job


def run(event: dict[str, Any], clients: Clients) -> dict[str, str]:
    """Decide (or resume the recorded decision), then act and report.

    Until the decision is recorded nothing has acted, so any error fails the job (PutJobFailureResult says why).
    After it, a failure (PutApprovalResult, the audit update, PutJobSuccessResult) propagates for Lambda's retry,
    which finds the record and completes the same decision: one audit record per job, never a second one.
    """
    current_job = _required_job_id(event)
    logger.append_keys(job_id=current_job)
    try:
        job = parse_job(event)
    except JobError as error:
        logger.exception("malformed job")
        return _fail_job(clients, current_job, error)
    audit = AuditLog(clients.dynamodb.Table(job.parameters.audit_table), job.parameters.audit_partition)
    try:
        record, tokens = _decided(job, clients, audit)
    except Exception as error:
        logger.exception("classification failed")
        return _fail_before_deciding(job, clients, audit, error)
    return _complete(job, clients, audit, record, tokens)


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
        logger.warning(
            "another classification holds the lock; Lambda retries this job",
            extra={"holder": busy.holder, "holder_job": busy.subject, "expires_at": busy.expires_at},
        )
        raise
    except Exception as error:  # the lock cannot be checked: no decision, and the job says why
        logger.exception("decision lock unavailable")
        return _failed_unlocked(event, clients, current_job, error)
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
