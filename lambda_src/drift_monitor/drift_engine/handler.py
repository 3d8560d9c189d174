"""Lambda entry point: scheduled hourly by EventBridge, or invoked with a window for backfills."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from drift_engine.job import AwsClients, run_drift_job
from drift_engine.settings import Settings
from drift_engine.window import resolve_window

logger = Logger(service="drift-monitor")


def _clients() -> AwsClients:
    return AwsClients(s3=boto3.client("s3"), cloudwatch=boto3.client("cloudwatch"), events=boto3.client("events"))


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    """Event: a scheduled event (uses `time`), or {"window_start"|"window_end": ISO, "window_hours": n}."""
    settings = Settings.from_env()
    window = resolve_window(event or {}, settings.window_hours)
    summary = run_drift_job(settings, window, _clients())
    return {
        "status": summary["status"],
        "window": summary["window"],
        "rows_total": summary["rows_total"],
        "drift_detected": summary["drift_detected"],
        "events_sent": summary["events_sent"],
        "report_uri": summary["report_uri"],
    }
