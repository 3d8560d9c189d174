"""The decision lock's construct side (ml_constructs/decision_lock.py), on a one-function stack under every nag pack:
the table, the environment the runtime reads, statements confined to the function's own lock item, and the lease
checks against Lambda's retry window.

Sources: Lambda Developer Guide, "Configuring reserved concurrency for a function" (why not reserve), "How Lambda
handles errors and retries with asynchronous invocation" (two retries, 1 and 2 minutes apart); DynamoDB Developer
Guide, "Using IAM policy conditions for fine-grained access control" (dynamodb:LeadingKeys), "Working with expired
items" (TTL).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from parliament import analyze_policy_string

from ml_constructs.decision_lock import DecisionLockTable
from ml_constructs.nag import add_rule_packs
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction
from tests.infra.small_stacks import outside_vpc

ROOT = Path(__file__).resolve().parents[2]


def _stack(app: App) -> tuple[Stack, DecisionLockTable, FunctionPlacement]:
    stack = Stack(app, "Locks", env={"account": "123456789012", "region": "eu-west-1"})
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    return stack, DecisionLockTable(stack, "Locks", key=key, removal_policy=RemovalPolicy.DESTROY), outside_vpc(key)


def _function(stack: Stack, placement: FunctionPlacement, name: str, **options: Any) -> PlatformFunction:
    return PlatformFunction(
        stack,
        name,
        function_name=name,
        code=lambda_.Code.from_asset(str(ROOT / "lambda_src/retraining_trigger")),
        handler="retraining_trigger.registry.handler",
        environment={},
        placement=placement,
        **options,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    app = App(outdir=str(tmp_path_factory.mktemp("locks")))
    stack, locks, placement = _stack(app)
    locks.attach(_function(stack, placement, "mlapi-registry-trigger", timeout_seconds=60), retried_when_busy=True)
    locks.attach(_function(stack, placement, "mlapi-drift-monitor", timeout_seconds=900), retried_when_busy=False)
    add_rule_packs(app)
    app.synth()  # every nag pack: the lock needs no acknowledgement
    return Template.from_stack(stack)


def _function_named(template: Template, name: str) -> dict[str, Any]:
    [function] = [
        f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["FunctionName"] == name
    ]
    return function


def test_the_table_expires_leases_by_ttl(template: Template) -> None:
    [table] = template.find_resources("AWS::DynamoDB::Table").values()
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [k["AttributeName"] for k in table["Properties"]["KeySchema"]] == ["pk", "sk"]


def test_each_function_gets_its_lock_and_a_lease_longer_than_its_timeout(template: Template) -> None:
    [table_id] = template.find_resources("AWS::DynamoDB::Table")
    for name, lease in (("mlapi-registry-trigger", "90"), ("mlapi-drift-monitor", "930")):
        function = _function_named(template, name)
        assert function["Environment"]["Variables"] == {
            "DECISION_LOCK_TABLE": {"Ref": table_id},
            "DECISION_LOCK_NAME": name,
            "DECISION_LOCK_LEASE_SECONDS": lease,
        }
        assert "ReservedConcurrentExecutions" not in function


def test_a_function_reaches_only_its_own_lock_item(template: Template) -> None:
    policies = template.find_resources("AWS::IAM::ManagedPolicy")
    for name in ("mlapi-registry-trigger", "mlapi-drift-monitor"):
        [document] = [
            p["Properties"]["PolicyDocument"]
            for p in policies.values()
            if name in json.dumps(p["Properties"]["PolicyDocument"])
        ]
        [statement] = [s for s in document["Statement"] if "dynamodb:PutItem" in s["Action"]]
        assert sorted(statement["Action"]) == ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"]
        assert statement["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [f"LOCK#{name}"]}}
        findings = analyze_policy_string(
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{**statement, "Resource": "arn:aws:dynamodb:eu-west-1:123456789012:table/locks"}],
                }
            )
        ).findings
        assert not findings, findings


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout_seconds": 300}, "timeout 300 s + 30 s"),
        ({"timeout_seconds": 60, "retry_attempts": 0}, "retry_attempts must be 2 (is 0)"),
    ],
)
def test_a_function_retried_when_busy_must_free_the_lock_within_lambdas_retries(
    options: dict[str, int], message: str
) -> None:
    stack, locks, placement = _stack(App())
    with pytest.raises(ValueError, match=re.escape(message)):
        locks.attach(_function(stack, placement, "mlapi-slow", **options), retried_when_busy=True)
