"""The decision lock (lambda_src/*/decision_lock.py) against moto's DynamoDB: two concurrent acquirers, expiry of a
crashed holder's lease, release on exception, a lost lease, and DynamoDB errors that are not a lost race.

Sources: DynamoDB Developer Guide, "Working with expired items" (TTL deletes late, so expiry must be checked by the
condition), "Condition expressions"; Lambda Developer Guide, "How Lambda handles errors and retries with asynchronous
invocation"; re:Post Knowledge Center "lambda-function-duplicate-invocations" (a retry keeps the request id).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

ROOT = Path(__file__).resolve().parents[2]
CANONICAL = ROOT / "lambda_src/change_classifier/change_classifier/decision_lock.py"
COPIES = sorted(ROOT.glob("lambda_src/*/*/decision_lock.py"))  # one per code asset that decides under a lock
if str(ROOT / "lambda_src/change_classifier") not in sys.path:
    sys.path.append(str(ROOT / "lambda_src/change_classifier"))

from change_classifier.decision_lock import DecisionLock, Lease, LockBusy  # noqa: E402

TABLE, REGION = "decision-locks", "eu-west-1"


class Clock:
    def __init__(self, now: float = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dynamodb() -> Iterator[Any]:
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
        yield client


def lock(dynamodb: Any, clock: Clock | None = None, name: str = "registry-trigger") -> DecisionLock:
    return DecisionLock(dynamodb, TABLE, name, lease_seconds=90, clock=clock or Clock())


def test_every_lambda_asset_carries_the_same_lock_module() -> None:
    assert CANONICAL in COPIES and len(COPIES) >= 2, COPIES
    differing = [str(c.relative_to(ROOT)) for c in COPIES if c.read_text() != CANONICAL.read_text()]
    assert not differing, f"copy {CANONICAL.relative_to(ROOT)} over {differing}"


def test_of_two_concurrent_acquirers_exactly_one_holds_the_lock(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # DynamoDB applies a conditional write atomically; moto's backend checks and writes without a lock, so the
    # test makes each backend write atomic, as the service is, and leaves the race to the condition expression.
    atomic, put_item = threading.Lock(), DynamoDBBackend.put_item

    def atomic_put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with atomic:
            return put_item(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "put_item", atomic_put_item)
    barrier, outcomes = threading.Barrier(8), {}

    def contend(request: str) -> None:
        barrier.wait()  # all eight put at once
        try:
            outcomes[request] = lock(dynamodb).acquire(holder=request, subject=f"event-{request}")
        except LockBusy as busy:
            outcomes[request] = busy

    threads = [threading.Thread(target=contend, args=(f"request-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [winner] = [r for r, o in outcomes.items() if isinstance(o, Lease)]
    losers = [o for o in outcomes.values() if isinstance(o, LockBusy)]
    assert len(losers) == 7 and all(b.holder == winner and b.subject == f"event-{winner}" for b in losers)


def test_a_crashed_holders_lease_expires(dynamodb: Any) -> None:
    clock = Clock()
    lock(dynamodb, clock).acquire(holder="crashed", subject="event-1")  # never released: the process died
    clock.now += 89
    with pytest.raises(LockBusy):
        lock(dynamodb, clock).acquire(holder="next", subject="event-2")
    clock.now += 1  # 90 s: the lease has run out, although TTL has not deleted the item
    assert lock(dynamodb, clock).acquire(holder="next", subject="event-2").holder == "next"


def test_lambdas_retry_of_the_same_request_takes_over_its_own_dead_lease(dynamodb: Any) -> None:
    lock(dynamodb).acquire(holder="request-1", subject="event-1")  # timed out before releasing
    assert lock(dynamodb).acquire(holder="request-1", subject="event-1").holder == "request-1"


def test_the_lock_is_released_when_the_decision_raises(dynamodb: Any) -> None:
    with pytest.raises(ZeroDivisionError), lock(dynamodb).held(holder="request-1", subject="event-1"):
        raise ZeroDivisionError("the decision failed")
    assert lock(dynamodb).current() is None
    with lock(dynamodb).held(holder="request-2", subject="event-2") as lease:
        assert lock(dynamodb).current() == lease
    assert lock(dynamodb).current() is None


def test_locks_of_different_names_are_independent(dynamodb: Any) -> None:
    lock(dynamodb, name="change-classifier").acquire(holder="a", subject="job-1")
    assert lock(dynamodb, name="registry-trigger").acquire(holder="b", subject="event-1").holder == "b"


def test_a_lease_that_ran_out_does_not_release_its_successors_lock(dynamodb: Any) -> None:
    clock = Clock()
    slow = lock(dynamodb, clock).acquire(holder="slow", subject="event-1")
    clock.now += 120
    successor = lock(dynamodb, clock).acquire(holder="next", subject="event-2")
    assert lock(dynamodb, clock).release(slow) is False
    assert lock(dynamodb, clock).current() == successor


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "AccessDeniedException", "ResourceNotFoundException"]
)
def test_other_dynamodb_errors_are_raised_not_taken_for_a_busy_or_free_lock(code: str) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("put_item", service_error_code=code, http_status_code=400)
        with pytest.raises(ClientError) as raised:
            lock(client).acquire(holder="request-1", subject="event-1")
    assert raised.value.response["Error"]["Code"] == code and not isinstance(raised.value, LockBusy)


def test_a_failing_release_is_raised(dynamodb: Any) -> None:
    lease = lock(dynamodb).acquire(holder="request-1", subject="event-1")
    client = boto3.client("dynamodb", region_name=REGION)
    with Stubber(client) as stub, pytest.raises(ClientError, match="InternalServerError"):
        stub.add_client_error("delete_item", service_error_code="InternalServerError", http_status_code=500)
        lock(client).release(lease)


def test_an_unconfigured_lock_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("DECISION_LOCK_TABLE", "DECISION_LOCK_NAME", "DECISION_LOCK_LEASE_SECONDS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DECISION_LOCK_TABLE", TABLE)
    with pytest.raises(RuntimeError, match="DECISION_LOCK_NAME, DECISION_LOCK_LEASE_SECONDS unset"):
        DecisionLock.from_environment(object())
