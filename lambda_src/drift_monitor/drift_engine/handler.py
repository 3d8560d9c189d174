"""Lambda entry point: scheduled hourly by EventBridge, or invoked with a window for backfills.

One run at a time, under the function's decision lock (decision_lock.py; it replaces reserved concurrency 1,
issue 13 item 9). A run that finds the lock held (the previous hour's run still going, or a backfill) skips: it
writes no report, publishes `RunsSkipped` and returns `"status": "skipped"`, without raising. Raising would only
make Lambda retry it one and two minutes later ("How Lambda handles errors and retries with asynchronous
invocation"), while the holder may run for its whole 15 minutes; a skipped window can be backfilled with
{"window_start": ...}. A retry of the holder itself keeps its request id and takes the lock back.

A run that fails (an AWS error once botocore's retries are spent, whatever the step) raises DriftRunFailed, which
names the window, the step and the error code, after publishing `RunsFailed` (best effort) and giving the lock
back: Lambda retries it twice, then sends the event to the function's dead-letter queue. Releasing the lock is
tried twice and never fails a finished run (a retry would re-send its events); a lock that still cannot be
released runs out with its lease, before the next hourly run.
"""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from drift_engine import metrics_publisher
from drift_engine.decision_lock import DecisionLock, Lease, LockBusy
from drift_engine.job import AwsClients, run_drift_job
from drift_engine.settings import RELEASES_TABLE_VARIABLE, Settings
from drift_engine.window import Window, resolve_window

logger = Logger(service="drift-monitor")


def _clients() -> AwsClients:
    table = os.environ.get(RELEASES_TABLE_VARIABLE)
    return AwsClients(
        s3=boto3.client("s3"),
        cloudwatch=boto3.client("cloudwatch"),
        events=boto3.client("events"),
        releases=boto3.resource("dynamodb").Table(table) if table else None,
        dynamodb=boto3.client("dynamodb"),
    )


RELEASE_ATTEMPTS = 2


class DriftRunFailed(RuntimeError):
    """A drift run that could not finish; Lambda retries the invocation, then dead-letters it."""


def _error_code(error: BaseException) -> str:
    """`GetObject: SlowDown` for an AWS error (the operation says which step), else the exception's type."""
    if isinstance(error, ClientError):
        return f"{error.operation_name}: {error.response.get('Error', {}).get('Code', 'ClientError')}"
    return type(error).__name__


def _publish_quietly(settings: Settings, clients: AwsClients, datum: dict[str, Any]) -> None:
    """A metric about the run itself: its own failure is logged, never raised over the outcome it reports."""
    try:
        metrics_publisher.publish(clients.cloudwatch, settings.metrics_namespace, [datum])
    except (ClientError, BotoCoreError):
        logger.exception("could not publish a run metric", extra={"metric": datum["MetricName"]})


def _failed(settings: Settings, window: Window, clients: AwsClients, step: str, error: Exception) -> DriftRunFailed:
    code = _error_code(error)
    logger.exception(
        "drift run failed; Lambda retries it, then dead-letters the event",
        extra={"window": window.as_dict(), "step": step, "error_code": code},
    )
    _publish_quietly(settings, clients, metrics_publisher.run_failed(settings.endpoint_name, window.start))
    return DriftRunFailed(f"drift run of {window.as_dict()} failed while {step}: {code}: {error}")


def _release(lock: DecisionLock, lease: Lease) -> None:
    """Give the lock back, trying twice; a refused delete is tried again only while the table says it is ours."""
    for attempt in range(1, RELEASE_ATTEMPTS + 1):
        try:
            if lock.release(lease) or lock.current() != lease:
                return  # released, or the lease ran out and it is someone else's (or nobody's) now
        except (ClientError, BotoCoreError):
            logger.warning(
                "could not release the decision lock",
                extra={"attempt": attempt, "expires_at": lease.expires_at},
                exc_info=True,
            )
    logger.error("decision lock left to run out with its lease", extra={"expires_at": lease.expires_at})


def _skipped(settings: Settings, window: Window, clients: AwsClients, busy: LockBusy) -> dict[str, Any]:
    logger.warning(
        "another drift run holds the lock; this window is skipped",
        extra={"window": window.as_dict(), "holder": busy.holder, "holder_window": busy.subject,
               "expires_at": busy.expires_at},
    )  # fmt: skip
    # As every metric, timestamped with the window start; a failure to publish it does not un-skip the window.
    _publish_quietly(settings, clients, metrics_publisher.run_skipped(settings.endpoint_name, window.start))
    return {
        "status": "skipped",
        "window": window.as_dict(),
        "rows_total": 0,
        "drift_detected": False,
        "events_sent": 0,
        "report_uri": None,
        "reason": f"run {busy.holder} holds the decision lock for {busy.subject} until {busy.expires_at}",
    }


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    """Event: a scheduled event (uses `time`), or {"window_start"|"window_end": ISO, "window_hours": n}."""
    settings = Settings.from_env()
    window = resolve_window(event or {}, settings.window_hours)
    clients = _clients()
    lock = DecisionLock.from_environment(clients.dynamodb)
    window_label = f"{window.as_dict()['start']}/{window.as_dict()['end']}"
    try:
        lease = lock.acquire(holder=context.aws_request_id, subject=window_label)
    except LockBusy as busy:
        return _skipped(settings, window, clients, busy)
    except (ClientError, BotoCoreError) as error:
        raise _failed(settings, window, clients, "taking the decision lock", error) from error
    try:
        summary = run_drift_job(settings, window, clients)
    except Exception as error:  # every failure of the run ends as DriftRunFailed, after the lock is given back
        _release(lock, lease)
        raise _failed(settings, window, clients, "running", error) from error
    _release(lock, lease)
    return {
        "status": summary["status"],
        "window": summary["window"],
        "rows_total": summary["rows_total"],
        "drift_detected": summary["drift_detected"],
        "events_sent": summary["events_sent"],
        "report_uri": summary["report_uri"],
    }
