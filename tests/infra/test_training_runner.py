"""The SageMaker training runner's infrastructure (ml_constructs/training_runner.py), on a small stack with every nag
pack: the execution role scoped to the runner's prefixes and the data key, the security group, the training log
group, and the arguments that make scripts/training_job.py send a spot, network-isolated, VPC, KMS request with
checkpoints (SageMaker API reference, CreateTrainingJob)."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms

from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.nag import add_rule_packs
from ml_constructs.training_runner import TrainingRunner
from platform_config.settings import TrainingSettings
from scripts import training_job
from tests.infra.cfn_resolve import Resolver

PREFIX, BUCKET = "mlapi-prod", "mlapi-prod-artifacts-123456789012-eu-west-1"
SETTINGS = TrainingSettings(runner="sagemaker", spot=True, max_runtime_seconds=1800, max_wait_seconds=3600)


class Small:
    def __init__(self, stack: Stack, runner: TrainingRunner, template: dict[str, Any], report: dict[str, Any]):
        self.stack, self.runner, self.template, self.report = stack, runner, template, report
        self.resolver = Resolver(template)
        self.resources = {lid: self.resolver.resolve(r) for lid, r in template["Resources"].items()}

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources.values() if r["Type"] == resource_type]

    def logical_id(self, prefix: str) -> str:
        [lid] = [lid for lid in self.template["Resources"] if lid.startswith(prefix)]
        return lid


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    outdir = tmp_path_factory.mktemp("training-small")
    app = App(outdir=str(outdir))
    add_rule_packs(app)  # synth raises on any unacknowledged finding
    stack = Stack(app, "Training", env={"account": "123456789012", "region": "eu-west-1"})
    vpc = ec2.Vpc.from_vpc_attributes(
        stack,
        "Vpc",
        vpc_id="vpc-0123456789abcdef0",
        availability_zones=["eu-west-1a", "eu-west-1b"],
        isolated_subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        isolated_subnet_names=["inference"],
    )
    data_key = kms.Key(stack, "DataKey", enable_key_rotation=True)
    logs_key = kms.Key(stack, "LogsKey", enable_key_rotation=True)
    runner = TrainingRunner(
        stack,
        "Training",
        prefix=PREFIX,
        settings=SETTINGS,
        vpc=vpc,
        subnets=ec2.SubnetSelection(subnet_group_name="inference"),
        s3_prefix_list_id="pl-6da54004",
        data_key=data_key,
        bucket_name=BUCKET,
        repository=ecr.Repository.from_repository_name(stack, "Repo", "mlapi-model-train"),
        logs=LogPolicy(logs_key, 731, RemovalPolicy.RETAIN),
    )
    assembly = app.synth()
    report = json.loads((Path(outdir) / "validation-report.json").read_text())
    return Small(stack, runner, assembly.get_stack_by_name("Training").template, report)


def statements(small: Small) -> list[dict[str, Any]]:
    [policy] = small.of_type("AWS::IAM::ManagedPolicy")
    found: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def by_action(small: Small) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for statement in statements(small):
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            found.setdefault(action, []).extend(resources)
    return found


def test_no_nag_finding_is_left(small: Small) -> None:
    assert small.report  # the packs ran; synth would have raised on an unacknowledged finding


def test_only_sagemaker_of_this_account_assumes_the_role(small: Small) -> None:
    [role] = small.of_type("AWS::IAM::Role")
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_role_reads_and_writes_only_the_runners_prefixes_and_uses_only_the_data_key(small: Small) -> None:
    actions = by_action(small)
    training = f"arn:aws:s3:::{BUCKET}/training"
    assert sorted(actions["s3:GetObject"]) == sorted(f"{training}/{p}/*" for p in ("datasets", "jobs", "checkpoints"))
    assert sorted(actions["s3:PutObject"]) == sorted(f"{training}/{p}/*" for p in ("jobs", "checkpoints"))
    data_key = small.resolver.get_att(small.logical_id("DataKey"), "Arn")
    for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant"):
        assert actions[action] == [data_key], action
    [grant] = [s for s in statements(small) if s["Action"] == "kms:CreateGrant"]
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}  # only for the volume
    assert actions["ecr:BatchGetImage"] == ["arn:aws:ecr:eu-west-1:123456789012:repository/mlapi-model-train"]
    assert actions["logs:PutLogEvents"] == [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/TrainingJobs:log-stream:mlapi-prod-train-*"
    ]
    assert "logs:CreateLogGroup" not in actions  # the stack owns the group


def test_the_security_group_has_no_ingress_and_only_https_to_s3(small: Small) -> None:
    [group] = small.of_type("AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]
    # CDK writes a prefix-list rule as its own AWS::EC2::SecurityGroupEgress (there is exactly one rule either way).
    [egress] = group["Properties"].get("SecurityGroupEgress", []) + [
        r["Properties"] for r in small.of_type("AWS::EC2::SecurityGroupEgress")
    ]
    assert not small.of_type("AWS::EC2::SecurityGroupIngress")
    assert egress["DestinationPrefixListId"] == "pl-6da54004" and egress["FromPort"] == egress["ToPort"] == 443


def test_the_training_log_group_has_the_logs_key_and_the_environments_retention(small: Small) -> None:
    [group] = small.of_type("AWS::Logs::LogGroup")
    assert group["Properties"]["LogGroupName"] == "/aws/sagemaker/TrainingJobs"
    assert group["Properties"]["KmsKeyId"] == small.resolver.get_att(small.logical_id("LogsKey"), "Arn")
    assert group["Properties"]["RetentionInDays"] == 731


def test_the_job_arguments_make_a_spot_isolated_vpc_kms_request_with_checkpoints(small: Small) -> None:
    """The construct's arguments, parsed by scripts/training_job.py and turned into its CreateTrainingJob request."""
    runner = small.runner
    argv = [part for argument in runner.job_arguments("IMAGE") for part in shlex.split(argument)]
    args = training_job.build_parser().parse_args(["--dataset", "build/snapshot", *argv, "--commit", "c"])
    name = training_job.job_name(args.name_prefix, "ab" * 32, datetime(2026, 12, 1, tzinfo=UTC))
    class Snapshot:
        content_sha256 = "ab" * 32

    plan = training_job.Plan(snapshot=Snapshot(), parent=None, version="1.1.0")  # type: ignore[arg-type]
    request = training_job.training_job_request(args, name, plan, f"s3://{BUCKET}/training/datasets/x/", None)
    resolve = small.stack.resolve
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
    assert request["CheckpointConfig"]["S3Uri"] == f"{runner.checkpoint_uri}{name}/"
    assert request["EnableNetworkIsolation"] is True
    assert request["VpcConfig"]["SecurityGroupIds"] == [runner.security_group.security_group_id]
    assert len(request["VpcConfig"]["Subnets"]) == 2
    assert request["OutputDataConfig"]["KmsKeyId"] == request["ResourceConfig"]["VolumeKmsKeyId"]
    assert resolve(request["OutputDataConfig"]["KmsKeyId"]) == resolve(runner.data_key.key_arn)
    assert resolve(request["RoleArn"]) == resolve(runner.role.role_arn)
    assert name.startswith("mlapi-prod-train-") and len(name) <= 63


def test_the_caller_may_pass_only_the_training_role_and_start_only_this_runners_jobs(small: Small) -> None:
    runner = small.runner
    found = [small.stack.resolve(s.to_json()) for s in runner.caller_statements("aws", "eu-west-1", "123456789012")]
    [create] = [s for s in found if s["Action"] == "sagemaker:CreateTrainingJob"]
    assert create["Resource"] == "arn:aws:sagemaker:eu-west-1:123456789012:training-job/mlapi-prod-train-*"
    assert create["Condition"]["Bool"] == {"sagemaker:NetworkIsolation": "true"}
    [passing] = [s for s in found if s["Action"] == "iam:PassRole"]
    assert passing["Resource"] == small.stack.resolve(runner.role.role_arn)
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
