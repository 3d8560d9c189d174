"""The shared harness itself (tests/fault_injection.py), on a two-call DynamoDB/S3 story."""

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.fault_injection import (
    FAULTS,
    Scenario,
    ScenarioNotDeterministic,
    Step,
    count_pairs,
    fault_pairs,
    patched_env,
    run_scenario,
)

REGION = "eu-west-1"


def _provision() -> None:
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="harness-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="harness-bucket", Key="k", Body=b"x")


def _setup() -> dict[str, Any]:
    return {
        "ddb": boto3.client("dynamodb", region_name=REGION),
        "s3": boto3.client("s3", region_name=REGION),
        "errors": [],
    }


def _step(world: dict[str, Any]) -> bytes:
    try:
        world["ddb"].put_item(TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
    except world["ddb"].exceptions.ConditionalCheckFailedException as error:  # the modelled class: idempotent
        world["errors"].append(error)
    return bytes(world["s3"].get_object(Bucket="harness-bucket", Key="k")["Body"].read())


STORY = Scenario(
    name="harness-story",
    steps=(Step("put-then-get", _step),),
    setup=_setup,
    provision=_provision,
    environment=lambda: patched_env({"AWS_DEFAULT_REGION": REGION}),
)


def test_pairs_are_every_applicable_kind_of_every_call() -> None:
    kinds = {(c.fault.call, c.fault.kind.name) for c in fault_pairs([STORY])}
    every_call = {"throttle", "internal", "unavailable"}
    assert kinds == {(0, k) for k in every_call | {"conditional"}} | {(1, k) for k in every_call | {"no_such_key"}}
    assert count_pairs([STORY]) == len(kinds) and {k.name for k in FAULTS} >= every_call


@pytest.mark.parametrize("case", fault_pairs([STORY]), ids=lambda c: c.id)
def test_the_failed_call_raises_as_botocore_does_and_the_retry_runs_clean(case: Any) -> None:
    trace = run_scenario(case.scenario, case.fault)
    [step] = trace.steps
    assert str(trace.fired) == str(case.fault.expected) and trace.unhandled == []
    if case.fault.kind.name == "conditional":  # caught as the modelled exception class: no retry needed
        assert [a.result for a in step.attempts] == [b"x"]
        return
    first, retry = step.attempts  # the fault, then Lambda's retry without it
    assert isinstance(first.error, ClientError) and not retry.failed and retry.result == b"x"  # S3 body restored
    metadata = first.error.response["ResponseMetadata"]
    assert metadata.get("MaxAttemptsReached", False) is case.fault.kind.retryable
    assert first.error.response["Error"]["Code"] in str(first.error)


def test_a_run_that_never_reaches_the_call_is_reported() -> None:
    beyond = fault_pairs([STORY])[-1].fault.__class__(call=99, kind=FAULTS[0])
    with pytest.raises(ScenarioNotDeterministic):
        run_scenario(STORY, beyond)
