"""The retraining trigger starts one retraining run per drift episode, with the reason, against CodePipeline."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from retraining_trigger.handler import describe, trigger

PIPELINE = "mlapi-pipeline-delivery"
DRIFT = {
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "source": "ml-platform.drift-monitor",
    "detail-type": "Model Drift Detected",
    "detail": {
        "endpointName": "mlapi-prod-endpoint",
        "modelVersion": "1.0.0",
        "window": {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"},
        "driftedFeatures": [{"feature": "feature_3", "psi": 0.83}, {"feature": "feature_7", "psi": 0.4}],
    },
}
MONITOR = {
    "id": "e-2",
    "source": "aws.sagemaker",
    "detail-type": "SageMaker Processing Job State Change",
    "detail": {
        "MonitoringScheduleArn": "arn:aws:sagemaker:eu-west-1:111111111111:monitoring-schedule/mlapi-prod-data-quality",
        "ProcessingJobStatus": "Completed",
        "ExitMessage": "CompletedWithViolations: Job completed successfully with 3 violations.",
    },
}


@pytest.fixture
def codepipeline() -> Any:
    client = boto3.client("codepipeline", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def executions(*summaries: tuple[str, str]) -> dict[str, Any]:
    return {"pipelineExecutionSummaries": [{"pipelineExecutionId": i, "status": s} for i, s in summaries]}


def test_drift_starts_a_retraining_run_with_the_reason_and_the_event_id_as_token(codepipeline: Any) -> None:
    codepipeline.stubber.add_response(
        "list_pipeline_executions", executions(("old", "Succeeded")), {"pipelineName": PIPELINE, "maxResults": 20}
    )
    reason = (
        "drift on mlapi-prod-endpoint model 1.0.0 in [2026-11-25T12:00:00Z, 2026-11-25T13:00:00Z): "
        "feature_3 (psi 0.83), feature_7 (psi 0.4)"
    )
    codepipeline.stubber.add_response(
        "start_pipeline_execution",
        {"pipelineExecutionId": "new-run"},
        {
            "name": PIPELINE,
            "variables": [{"name": "RETRAINING", "value": "true"}, {"name": "RETRAINING_REASON", "value": reason}],
            "clientRequestToken": DRIFT["id"],
        },
    )
    assert trigger(DRIFT, codepipeline, PIPELINE) == {"started": True, "executionId": "new-run", "reason": reason}


def test_a_running_retraining_run_absorbs_further_drift_events(codepipeline: Any) -> None:
    codepipeline.stubber.add_response(
        "list_pipeline_executions", executions(("release", "InProgress"), ("retrain", "InProgress"))
    )
    codepipeline.stubber.add_response(
        "get_pipeline_execution",
        {"pipelineExecution": {"pipelineExecutionId": "release", "variables": [
            {"name": "RETRAINING", "resolvedValue": "false"}]}},
    )  # fmt: skip
    codepipeline.stubber.add_response(
        "get_pipeline_execution",
        {"pipelineExecution": {"pipelineExecutionId": "retrain", "variables": [
            {"name": "RETRAINING", "resolvedValue": "true"}]}},
    )  # fmt: skip
    result = trigger(MONITOR, codepipeline, PIPELINE)
    assert result["started"] is False and result["runningExecutionId"] == "retrain"


def test_an_ordinary_release_in_progress_does_not_block_retraining(codepipeline: Any) -> None:
    codepipeline.stubber.add_response("list_pipeline_executions", executions(("release", "InProgress")))
    codepipeline.stubber.add_response(
        "get_pipeline_execution", {"pipelineExecution": {"pipelineExecutionId": "release", "variables": []}}
    )
    codepipeline.stubber.add_response("start_pipeline_execution", {"pipelineExecutionId": "run-2"})
    assert trigger(MONITOR, codepipeline, PIPELINE)["executionId"] == "run-2"


def test_model_monitor_events_and_odd_events_are_described_without_failing() -> None:
    assert describe(MONITOR) == (
        "Model Monitor mlapi-prod-data-quality: CompletedWithViolations: Job completed successfully with 3 violations."
    )
    assert describe({"source": "ml-platform.drift-monitor", "detail": None}).startswith("drift on ? model ?")
    long = {"detail": {"driftedFeatures": [{"feature": "f" * 50, "psi": 1}] * 40}}
    assert len(describe(long)) == 1000


def test_a_codepipeline_error_propagates_so_eventbridge_retries(codepipeline: Any) -> None:
    codepipeline.stubber.add_client_error("list_pipeline_executions", "PipelineNotFoundException")
    with pytest.raises(codepipeline.exceptions.PipelineNotFoundException):
        trigger(DRIFT, codepipeline, PIPELINE)
