"""The retraining trigger decides one drift event at a time under its decision lock (moto DynamoDB), instead of
reserved concurrency 1 (issue 13 item 9): two drift events arriving together start one retraining run; the event
that finds the lock busy returns without starting one, as the holder's decision (a run started, or one already
running) stands for both."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend
from retraining_trigger import handler
from retraining_trigger.decision_lock import DecisionLock

TABLE, REGION, PIPELINE = "decision-locks", "eu-west-1", "mlapi-pipeline-delivery"


def drift(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "source": "ml-platform.drift-monitor", "detail-type": "Model Drift Detected",
            "detail": {"endpointName": "mlapi-prod-endpoint", "modelVersion": "1.0.0"}}  # fmt: skip


class Pipeline:
    """CodePipeline where a started run is a running retraining run; slow to list, to widen the race."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def list_pipeline_executions(self, pipelineName: str, maxResults: int) -> dict[str, Any]:
        time.sleep(0.2)  # both events would pass "no retraining in progress" without the lock
        return {"pipelineExecutionSummaries": [{"pipelineExecutionId": e, "status": "InProgress"}
                                               for e in self.started]}  # fmt: skip

    def get_pipeline_execution(self, pipelineName: str, pipelineExecutionId: str) -> dict[str, Any]:
        return {"pipelineExecution": {"variables": [{"name": "RETRAINING", "resolvedValue": "true"}]}}

    def start_pipeline_execution(self, name: str, variables: list[Any], clientRequestToken: str) -> dict[str, Any]:
        self.started.append(f"run-for-{clientRequestToken}")
        return {"pipelineExecutionId": self.started[-1]}


def _locked(atomic: threading.Lock, put_item: Any, *args: Any, **kwargs: Any) -> Any:
    with atomic:
        return put_item(*args, **kwargs)


@pytest.fixture
def lock(monkeypatch: pytest.MonkeyPatch) -> Iterator[DecisionLock]:
    # DynamoDB's conditional writes are atomic; moto's are not: make its backend's writes atomic, as the service is.
    atomic, put_item = threading.Lock(), DynamoDBBackend.put_item
    monkeypatch.setattr(DynamoDBBackend, "put_item", lambda self, *a, **k: _locked(atomic, put_item, self, *a, **k))
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        client.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])  # fmt: skip
        yield DecisionLock(client, TABLE, f"{PIPELINE}-retraining-trigger", lease_seconds=90)


def test_two_drift_events_at_once_start_one_run_and_the_other_returns(lock: DecisionLock) -> None:
    pipeline, outcomes = Pipeline(), {}

    def invoke(event_id: str, request_id: str) -> None:
        outcomes[request_id] = handler.decide(drift(event_id), lock, request_id, pipeline, PIPELINE)

    threads = [threading.Thread(target=invoke, args=(f"event-{n}", f"request-{n}")) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pipeline.started) == 1, pipeline.started
    [winner] = [r for r, o in outcomes.items() if o["started"]]
    [loser] = [o for r, o in outcomes.items() if r != winner]  # returned, not raised: no retry, no second run
    assert loser["started"] is False and loser["decidedBy"] == winner
    assert lock.current() is None  # the winner released


def test_a_busy_lock_starts_nothing_and_leaves_the_holders_lease(lock: DecisionLock) -> None:
    lease = lock.acquire(holder="request-1", subject="event-1")
    pipeline = Pipeline()
    result = handler.decide(drift("event-2"), lock, "request-2", pipeline, PIPELINE)
    assert result["started"] is False and (result["decidedBy"], result["decidingEvent"]) == ("request-1", "event-1")
    assert pipeline.started == [] and lock.current() == lease


def test_the_lock_is_released_when_the_decision_fails_and_the_retry_decides(lock: DecisionLock) -> None:
    class Broken(Pipeline):
        def start_pipeline_execution(self, name: str, variables: list[Any], clientRequestToken: str) -> Any:
            raise RuntimeError("CodePipeline unavailable")

    with pytest.raises(RuntimeError, match="CodePipeline unavailable"):  # propagates: Lambda retries the event
        handler.decide(drift("event-1"), lock, "request-1", Broken(), PIPELINE)
    assert lock.current() is None
    pipeline = Pipeline()
    assert handler.decide(drift("event-1"), lock, "request-1", pipeline, PIPELINE)["started"] is True
    assert pipeline.started == ["run-for-event-1"]


def test_the_handler_takes_its_lock_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("DECISION_LOCK_TABLE", "DECISION_LOCK_NAME", "DECISION_LOCK_LEASE_SECONDS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIPELINE_NAME", PIPELINE)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)

    class Context:
        aws_request_id, function_name, memory_limit_in_mb = "request-1", "trigger", 128
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:trigger"

    with pytest.raises(RuntimeError, match="decision lock not configured"):  # never decides without the lock
        handler.handler(drift("event-1"), Context())
