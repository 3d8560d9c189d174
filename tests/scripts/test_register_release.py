"""The pipeline records the release it deploys, with its approvers, once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from scripts import register_release
from scripts.register_release import approvers, planned_release

TEMPLATE = {
    "Resources": {
        "Config": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {
                "EndpointConfigName": "mlapi-prod-endpoint-1-0-0-bf955875",
                "Tags": [
                    {"Key": "model-version", "Value": "1.0.0"},
                    {"Key": "model-hash", "Value": "bf9558756f5ead0c"},
                    {"Key": "commit", "Value": "abc123"},
                ],
            },
        },
        "Endpoint": {"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointName": "mlapi-prod-endpoint"}},
    }
}
STATE = {
    "stageStates": [
        {
            "stageName": "prod",
            "actionStates": [
                {
                    "actionName": "ModelApproval",
                    "latestExecution": {"status": "Succeeded", "lastUpdatedBy": "arn:aws:iam::1:user/ds"},
                },
                {
                    "actionName": "OperationsApproval",
                    "latestExecution": {"status": "Succeeded", "lastUpdatedBy": "arn:aws:iam::1:user/ops"},
                },
                {"actionName": "ChangeClassifier", "latestExecution": {"status": "Succeeded"}},
            ],
        }
    ]
}


class FakeCodePipeline:
    def get_pipeline_state(self, name: str) -> dict[str, Any]:
        assert name == "mlapi-pipeline-delivery"
        return STATE


@pytest.fixture
def assembly(tmp_path: Path) -> Path:
    (tmp_path / "PipelineprodInferenceABC.template.json").write_text(json.dumps(TEMPLATE))
    return tmp_path


def test_release_comes_from_the_synthesized_template(assembly: Path) -> None:
    release = planned_release(assembly)
    assert release.release_id == "mlapi-prod-endpoint-1-0-0-bf955875"
    assert (release.model_version, release.commit) == ("1.0.0", "abc123")


def test_approvers_are_the_approval_actions_only() -> None:
    assert approvers(
        FakeCodePipeline(), "mlapi-pipeline-delivery", "prod", ["ModelApproval", "OperationsApproval"]
    ) == ["ModelApproval: arn:aws:iam::1:user/ds", "OperationsApproval: arn:aws:iam::1:user/ops"]


@mock_aws
def test_registers_once_and_a_rerun_changes_nothing(assembly: Path, monkeypatch, capsys) -> None:
    dynamodb = boto3.resource("dynamodb", region_name="eu-west-1")
    dynamodb.create_table(
        TableName="mlapi-prod-releases",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
    )
    real_client = boto3.Session.client
    monkeypatch.setattr(
        boto3.Session,
        "client",
        lambda self, name, *a, **k: FakeCodePipeline() if name == "codepipeline" else real_client(self, name, *a, **k),
    )
    argv = [
        "--assembly",
        str(assembly),
        "--pipeline",
        "mlapi-pipeline-delivery",
        "--stage",
        "prod",
        "--approvals",
        "ModelApproval,OperationsApproval",
        "--table",
        "mlapi-prod-releases",
        "--region",
        "eu-west-1",
    ]
    assert register_release.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["registered"] is True
    assert register_release.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["registered"] is False
    item = dynamodb.Table("mlapi-prod-releases").get_item(
        Key={"pk": "ENDPOINT#mlapi-prod-endpoint", "sk": "RELEASE#mlapi-prod-endpoint-1-0-0-bf955875"}
    )["Item"]
    assert item["approved_by"] == [
        "ModelApproval: arn:aws:iam::1:user/ds",
        "OperationsApproval: arn:aws:iam::1:user/ops",
    ]
    assert item["status"] == "deploying"


def test_missing_template_is_a_usage_error(tmp_path: Path) -> None:
    argv = ["--assembly", str(tmp_path), "--pipeline", "p", "--stage", "prod", "--approvals", "A", "--table", "t"]
    assert register_release.main(argv) == 2
