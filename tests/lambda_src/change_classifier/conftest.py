"""Offline world for the change classifier: moto for S3 (the input artifact) and DynamoDB (the audit
table), botocore Stubbers for CodePipeline (moto has no approvals) and CloudFormation (moto's template
parsing needs openapi-spec-validator, which the dev requirements do not pin)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

# The Lambda code root is lambda_src/change_classifier (handler change_classifier.handler.handler), so the
# tests import the package the same way; classifier_world sits next to this file.
for _path in (Path(__file__).resolve().parents[3] / "lambda_src" / "change_classifier", Path(__file__).parent):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

from classifier_world import ARTIFACT_BUCKET, AUDIT_TABLE, LOCK_TABLE, REGION, StubbedClients, World  # noqa: E402


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "APPROVAL_WAIT_ATTEMPTS": "3",
        "APPROVAL_WAIT_SECONDS": "0",
        "AWS_API_MAX_ATTEMPTS": "1",
        "POWERTOOLS_SERVICE_NAME": "change-classifier",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=ARTIFACT_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        table, _ = (
            dynamodb.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
            )
            for name in (AUDIT_TABLE, LOCK_TABLE)
        )
        codepipeline = boto3.client("codepipeline", region_name=REGION)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        with Stubber(codepipeline) as pipeline_stub, Stubber(cloudformation) as cfn_stub:
            yield World(StubbedClients(codepipeline, dynamodb, cloudformation), pipeline_stub, cfn_stub, s3, table)
            pipeline_stub.assert_no_pending_responses()
            cfn_stub.assert_no_pending_responses()
