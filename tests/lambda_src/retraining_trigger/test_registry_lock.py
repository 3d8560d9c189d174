"""The registry trigger decides one event at a time under its decision lock (moto DynamoDB), instead of reserved
concurrency: two approvals arriving together start one run, and the other event is retried, not dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend
from retraining_trigger import registry
from retraining_trigger.decision_lock import DecisionLock, LockBusy

TABLE, REGION, PIPELINE = "decision-locks", "eu-west-1", "mlapi-pipeline-delivery"
WIRING = registry.Wiring(PIPELINE, "prod", "DataScienceApproval", "RegisterModelPackage")


def approved(event_id: str, version: int) -> dict[str, Any]:
    arn = f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/mlapi-models/{version}"
    return {"id": event_id, "detail-type": registry.PACKAGE_STATE_CHANGE, "detail": {"ModelPackageArn": arn}}


class Registry:
    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:
        return {
            "ModelApprovalStatus": "Approved",
            "ApprovalDescription": "looks good",
            "LastModifiedBy": {"UserProfileName": "data-scientist"},
        }


class Pipeline:
    """CodePipeline with no run in progress until one is started; slow to answer, to widen the race."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def get_pipeline_state(self, name: str) -> dict[str, Any]:
        return {"stageStates": []}

    def list_pipeline_executions(self, pipelineName: str, maxResults: int) -> dict[str, Any]:
        time.sleep(0.2)  # both events would pass "no run in progress" without the lock
        return {
            "pipelineExecutionSummaries": [{"pipelineExecutionId": e, "status": "InProgress"} for e in self.started]
        }

    def start_pipeline_execution(self, name: str, clientRequestToken: str) -> dict[str, Any]:
        self.started.append(f"run-for-{clientRequestToken}")
        return {"pipelineExecutionId": self.started[-1]}


@pytest.fixture
def lock(monkeypatch: pytest.MonkeyPatch) -> Iterator[DecisionLock]:
    # DynamoDB's conditional writes are atomic; moto's are not: make its backend's writes atomic, as the service is.
    atomic, put_item = threading.Lock(), DynamoDBBackend.put_item
    monkeypatch.setattr(DynamoDBBackend, "put_item", lambda self, *a, **k: _locked(atomic, put_item, self, *a, **k))
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
        )
        yield DecisionLock(client, TABLE, "mlapi-pipeline-delivery-registry-trigger", lease_seconds=90)


def _locked(atomic: threading.Lock, put_item: Any, *args: Any, **kwargs: Any) -> Any:
    with atomic:
        return put_item(*args, **kwargs)


def test_two_approvals_at_once_start_one_run_and_the_other_event_is_retried(lock: DecisionLock) -> None:
    pipeline, outcomes = Pipeline(), {}

    def invoke(event: dict[str, Any], request_id: str) -> None:
        try:
            outcomes[request_id] = registry.decide(event, lock, request_id, Registry(), pipeline, WIRING)
        except LockBusy as busy:
            outcomes[request_id] = busy

    threads = [threading.Thread(target=invoke, args=(approved(f"event-{n}", n), f"request-{n}")) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pipeline.started) == 1, pipeline.started
    [busy] = [o for o in outcomes.values() if isinstance(o, LockBusy)]  # raised: Lambda retries that event
    [retried] = [r for r, o in outcomes.items() if o is busy]
    assert lock.current() is None  # the winner released
    event = approved(f"event-{retried[-1]}", int(retried[-1]))
    again = registry.decide(event, lock, retried, Registry(), pipeline, WIRING)  # Lambda's retry, same request id
    assert again["action"] == "none" and "in progress" in again["reason"] and len(pipeline.started) == 1


def test_a_duplicate_delivery_of_the_event_being_decided_returns_without_deciding(lock: DecisionLock) -> None:
    lock.acquire(holder="request-1", subject="event-1")
    pipeline = Pipeline()
    result = registry.decide(approved("event-1", 1), lock, "request-2", Registry(), pipeline, WIRING)
    assert result == {"action": "none", "reason": "duplicate delivery: request-1 decides event event-1"}
    assert pipeline.started == []


def test_another_event_being_decided_makes_this_invocation_fail_for_a_retry(lock: DecisionLock) -> None:
    lock.acquire(holder="request-1", subject="event-1")
    pipeline = Pipeline()
    with pytest.raises(LockBusy, match="held by request-1 for event-1"):
        registry.decide(approved("event-2", 2), lock, "request-2", Registry(), pipeline, WIRING)
    assert pipeline.started == []


def test_the_lock_is_released_when_the_decision_fails(lock: DecisionLock) -> None:
    class Broken(Registry):
        def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:
            raise RuntimeError("registry unavailable")

    with pytest.raises(RuntimeError, match="registry unavailable"):
        registry.decide(approved("event-1", 1), lock, "request-1", Broken(), Pipeline(), WIRING)
    assert lock.current() is None
