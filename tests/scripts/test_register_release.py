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
from tests.release_table import create_release_table

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


# ---- approvals as configured stages, the model package, the emergency override ------------------------------
IAM, STS = "arn:aws:iam::111111111111:", "arn:aws:sts::111111111111:"
EXECUTION = "6e4b6c33-0c0b-4c43-8e7a-1f1e1a6b3c11"
PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/mlapi-models/3"
STAGES = [
    {"stage": "data_science", "action": "DataScienceApproval", "reviewers": [f"{IAM}role/DataScientist"]},
    {"stage": "operations", "action": "OperationsApproval", "reviewers": [f"{IAM}user/ops"]},
    {"stage": "product", "action": "ProductApproval", "reviewers": []},
]


class StagedCodePipeline:
    """GetPipelineState of one prod execution with three approvals; GetPipelineExecution with its trigger."""

    def __init__(self, execution: str = EXECUTION, trigger: dict[str, str] | None = None) -> None:
        self.execution, self.trigger = execution, trigger or {"triggerType": "Webhook", "triggerDetail": "push"}

    def get_pipeline_state(self, name: str) -> dict[str, Any]:
        def approved(action: str, who: str | None, summary: str) -> dict[str, Any]:
            latest = {"status": "Succeeded", "summary": summary, **({"lastUpdatedBy": who} if who else {})}
            return {"actionName": action, "latestExecution": latest}

        return {
            "stageStates": [
                {
                    "stageName": "prod",
                    "latestExecution": {"pipelineExecutionId": self.execution, "status": "InProgress"},
                    "actionStates": [
                        approved("DataScienceApproval", f"{STS}assumed-role/DataScientist/alice", "AUC ok"),
                        approved("OperationsApproval", f"{IAM}user/mallory", "fine"),
                        approved("ProductApproval", None, "auto-approved: no model or inference change"),
                    ],
                }
            ]
        }

    def get_pipeline_execution(self, pipelineName: str, pipelineExecutionId: str) -> dict[str, Any]:
        return {"pipelineExecution": {"pipelineExecutionId": pipelineExecutionId, "trigger": self.trigger}}


def staged_argv(assembly: Path, *extra: str) -> list[str]:
    return [
        "--assembly", str(assembly), "--pipeline", "mlapi-pipeline-delivery", "--stage", "prod",
        "--approvals", "DataScienceApproval,OperationsApproval,ProductApproval", "--table", "mlapi-prod-releases",
        "--region", "eu-west-1", "--execution-id", EXECUTION, "--stages-json", json.dumps(STAGES), *extra,
    ]  # fmt: skip


@pytest.fixture
def release_table(monkeypatch) -> Any:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="eu-west-1")
        table = create_release_table(dynamodb, "mlapi-prod-releases")
        yield table


def use_codepipeline(monkeypatch, fake: Any) -> None:
    real_client = boto3.Session.client
    monkeypatch.setattr(
        boto3.Session,
        "client",
        lambda self, name, *a, **k: fake if name == "codepipeline" else real_client(self, name, *a, **k),
    )


def stored(table: Any) -> dict[str, Any]:
    key = {"pk": "ENDPOINT#mlapi-prod-endpoint", "sk": "RELEASE#mlapi-prod-endpoint-1-0-0-bf955875"}
    return table.get_item(Key=key)["Item"]


def test_the_release_links_its_model_package_and_each_approval_with_its_stage(
    assembly: Path, release_table, monkeypatch, capsys
) -> None:
    use_codepipeline(monkeypatch, StagedCodePipeline())
    monkeypatch.setenv("MODEL_PACKAGE_ARN", PACKAGE)
    assert register_release.main(staged_argv(assembly)) == 0
    assert json.loads(capsys.readouterr().out)["model_package_arn"] == PACKAGE
    item = stored(release_table)
    assert item["model_package_arn"] == PACKAGE
    by_action = {a["action"]: a for a in item["approvals"]}
    assert by_action["DataScienceApproval"]["stage"] == "data_science"
    # A session of the expected role is the expected reviewer; another user is recorded as unexpected.
    assert by_action["DataScienceApproval"]["by_expected_reviewer"] is True
    assert by_action["OperationsApproval"]["approved_by"] == f"{IAM}user/mallory"
    assert by_action["OperationsApproval"]["by_expected_reviewer"] is False
    assert by_action["ProductApproval"]["approved_by"] == "auto-classifier"
    assert by_action["ProductApproval"]["by_expected_reviewer"] is None  # the stage names no reviewers
    assert "emergency_override" not in item
    # The release tooling reads the package and the approvals back (`releases show` displays them).
    from lambda_src.releases.release_history.repository import ReleaseRepository

    release = ReleaseRepository(release_table, "mlapi-prod-endpoint").get("mlapi-prod-endpoint-1-0-0-bf955875")
    assert release is not None and release.model_version == "1.0.0" and len(release.approved_by) == 3
    assert release.model_package_arn == PACKAGE
    assert {a["action"] for a in release.approvals} == set(by_action)
    assert release.emergency_override is None


def test_an_emergency_override_is_recorded_with_who_started_it_and_why(
    assembly: Path, release_table, monkeypatch, capsys
) -> None:
    person = f"{STS}assumed-role/Operations/oncall"
    use_codepipeline(
        monkeypatch, StagedCodePipeline(trigger={"triggerType": "StartPipelineExecution", "triggerDetail": person})
    )
    argv = staged_argv(assembly, "--emergency-override", "true", "--emergency-reason", " CVE-2026-1234 hotfix ")
    assert register_release.main(argv) == 0
    assert stored(release_table)["emergency_override"] == {
        "by": person,
        "trigger": "StartPipelineExecution",
        "reason": "CVE-2026-1234 hotfix",
        "execution_id": EXECUTION,
    }


def test_approvals_of_another_execution_are_not_recorded(assembly: Path, release_table, monkeypatch) -> None:
    use_codepipeline(monkeypatch, StagedCodePipeline(execution="an-older-execution"))
    assert register_release.main(staged_argv(assembly)) == 0
    item = stored(release_table)
    assert item["approved_by"] == [] and "approvals" not in item


@pytest.mark.parametrize(
    ("approver", "reviewer", "expected"),
    [
        (f"{IAM}user/ops", f"{IAM}user/ops", True),
        (f"{STS}assumed-role/DataScientist/alice", f"{IAM}role/DataScientist", True),
        (f"{STS}assumed-role/DataScientist/alice", f"{IAM}role/teams/DataScientist", True),
        ("arn:aws:sts::222222222222:assumed-role/DataScientist/alice", f"{IAM}role/DataScientist", False),
        (f"{STS}assumed-role/DataScientistAdmin/x", f"{IAM}role/DataScientist", False),
        (f"{IAM}user/opsx", f"{IAM}user/ops", False),
    ],
)
def test_reviewer_matching(approver: str, reviewer: str, expected: bool) -> None:
    assert register_release.reviewer_matches(approver, reviewer) is expected


# ---- first run and AWS errors -------------------------------------------------------------------------------------
@mock_aws
def test_a_release_table_that_does_not_exist_yet_is_named_with_the_step_order(
    assembly: Path, monkeypatch, capsys
) -> None:
    # DynamoDB API reference, PutItem errors: ResourceNotFoundException. On a first run the Data stack that creates
    # the table deploys in the same stage: RegisterRelease must come after it.
    use_codepipeline(monkeypatch, StagedCodePipeline())
    assert register_release.main(staged_argv(assembly)) == 1
    err = capsys.readouterr().err
    assert "release table mlapi-prod-releases does not exist (or is not ACTIVE yet)" in err
    assert "must run after that stack's deploy" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("service", "operation", "code", "named"),
    [
        ("dynamodb", "PutItem", "AccessDeniedException", "writing the release to DynamoDB table mlapi-prod-releases"),
        ("dynamodb", "PutItem", "ThrottlingException", "writing the release to DynamoDB table mlapi-prod-releases"),
    ],
)
def test_other_errors_name_what_was_written(
    assembly: Path,
    release_table,
    monkeypatch,
    capsys,
    aws_error: Any,
    service: str,
    operation: str,
    code: str,
    named: str,
) -> None:
    use_codepipeline(monkeypatch, StagedCodePipeline())
    aws_error(service, operation, code)
    assert register_release.main(staged_argv(assembly)) == 1
    err = capsys.readouterr().err
    assert f"{named}: {code}" in err and "Traceback" not in err


def test_a_retried_step_after_the_table_appeared_registers_once(assembly: Path, monkeypatch, capsys) -> None:
    use_codepipeline(monkeypatch, StagedCodePipeline())
    with mock_aws():
        assert register_release.main(staged_argv(assembly)) == 1  # before the Data stack
        table = create_release_table(boto3.resource("dynamodb", region_name="eu-west-1"), "mlapi-prod-releases")
        capsys.readouterr()
        assert register_release.main(staged_argv(assembly)) == 0
        assert register_release.main(staged_argv(assembly)) == 0
        outputs = [json.loads(line)["registered"] for line in capsys.readouterr().out.splitlines()]
        assert outputs == [True, False]
        assert stored(table)["status"] == "deploying"


def test_the_release_table_is_reached_through_the_environment_profile_and_the_pipeline_through_the_step(
    assembly: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    # The pipeline's command (ml_constructs/delivery_pipeline.py, RegisterRelease) sets no AWS_PROFILE: the step's
    # own credentials read CodePipeline; `--environment-profile` (role_arn + credential_source in AWS_CONFIG_FILE,
    # AWS SDKs and Tools Reference Guide, "Assume role credential provider") writes the environment's table.
    config = tmp_path / "aws-config"
    config.write_text("[profile prod]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    profiles: list[tuple[str, str | None]] = []
    real_client = boto3.Session.client

    def client(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        profiles.append((name, self.profile_name if self.profile_name != "default" else None))
        return StagedCodePipeline() if name == "codepipeline" else real_client(self, name, *args, **kwargs)

    monkeypatch.setattr(boto3.Session, "client", client)
    with mock_aws():
        table = create_release_table(boto3.resource("dynamodb", region_name="eu-central-1"), "mlapi-prod-releases")
        argv = staged_argv(assembly, "--environment-profile", "prod", "--environment-region", "eu-central-1")
        assert register_release.main(argv) == 0, capsys.readouterr().err
        assert stored(table)["status"] == "deploying"
    assert ("codepipeline", None) in profiles and ("dynamodb", "prod") in profiles
    assert ("codepipeline", "prod") not in profiles
