"""The SageMaker training runner's infrastructure (ml_constructs/training_runner.py), on a small stack with every nag
pack: the execution role scoped to the runner's prefixes and the data key, the security group, the training log
group, and the arguments that make scripts/training_job.py send a spot, network-isolated, VPC, KMS request with
checkpoints (SageMaker API reference, CreateTrainingJob)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms

from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.nag import add_rule_packs
from ml_constructs.training_runner import TrainingRunner
from model_container.card import ModelCard
from platform_config.settings import TrainingSettings
from scripts import training_job
from tests.infra.cfn_resolve import Resolver
from tests.infra.small_stacks import imported_vpc

PREFIX, BUCKET = "mlapi-prod", "mlapi-prod-artifacts-123456789012-eu-west-1"
# The interface endpoints' security group (ml_constructs/private_network.py `endpoint_security_group`).
ENDPOINT_GROUP = "sg-0e0d0c0b0a0908070"
# The inference stack's output the Synth step reads (ml_constructs/training_runner.py, scripts/training_job.py).
JOB_ARGUMENTS_OUTPUT = "TrainingJobArguments"
SETTINGS = TrainingSettings(runner="sagemaker", spot=True, max_runtime_seconds=1800, max_wait_seconds=2400)
# training.runner: sagemaker with waits that fit the Synth step (TrainingSettings refuses the defaults' 2 hours).
FITS = {"runner": "sagemaker", "max_runtime_seconds": 1800, "max_wait_seconds": 2400}
# What a retraining plan trains: the default source, at the next minor of the build's card.
SOURCE = {
    "train": "model_container.models.breast_cancer.train:train",
    "data": "model_container.models.breast_cancer.train:load",
}
_CARD = ModelCard.load(Path(__file__).resolve().parents[2] / "model_container" / "dist")
NEXT_VERSION = f"{_CARD.major}.{int(_CARD.version.split('.')[1]) + 1}.0"


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
    vpc = imported_vpc(stack)
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
        endpoint_security_group=ec2.SecurityGroup.from_security_group_id(
            stack, "Endpoints", ENDPOINT_GROUP, allow_all_outbound=False
        ),
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
    # kms:Encrypt: OutputDataConfig.KmsKeyId (SageMaker API Reference) requires it of the execution role.
    for action in ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant"):
        assert actions[action] == [data_key], action
    [grant] = [s for s in statements(small) if s["Action"] == "kms:CreateGrant"]
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}  # only for the volume
    assert actions["ecr:BatchGetImage"] == ["arn:aws:ecr:eu-west-1:123456789012:repository/mlapi-model-train"]
    assert actions["logs:PutLogEvents"] == [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/TrainingJobs:log-stream:mlapi-prod-train-*"
    ]
    assert "logs:CreateLogGroup" not in actions  # the stack owns the group


def test_the_jobs_network_interfaces_are_created_and_deleted_only_in_the_vpc(small: Small) -> None:
    """ec2:CreateNetworkInterface(Permission) and their Delete on `*` are held to the runner's VPC (ec2:Vpc): the
    security report's IAM check and checkov CKV_AWS_109 refuse them unconditioned."""
    [eni] = [s for s in statements(small) if "ec2:CreateNetworkInterfacePermission" in s["Action"]]
    assert {"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterfacePermission"} <= set(eni["Action"])
    vpc = "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0123456789abcdef0"
    assert eni["Condition"] == {"ArnEquals": {"ec2:Vpc": vpc}}


def test_the_security_group_has_no_ingress_and_only_https_to_s3_and_the_interface_endpoints(small: Small) -> None:
    """With a VpcConfig the job's logs, metrics and image go through the VPC's interface endpoints (train-vpc;
    re:Post sagemaker-access-network-isolation): HTTPS to their group as well as to S3's prefix list, nothing else."""
    [group] = small.of_type("AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]
    # CDK writes prefix-list and group rules as their own AWS::EC2::SecurityGroupEgress resources.
    rules = group["Properties"].get("SecurityGroupEgress", []) + [
        r["Properties"] for r in small.of_type("AWS::EC2::SecurityGroupEgress")
    ]
    assert not small.of_type("AWS::EC2::SecurityGroupIngress")
    assert all(r["IpProtocol"] == "tcp" and r["FromPort"] == r["ToPort"] == 443 for r in rules), rules
    destinations = sorted(r.get("DestinationPrefixListId") or r.get("DestinationSecurityGroupId") for r in rules)
    assert destinations == sorted(["pl-6da54004", ENDPOINT_GROUP])
    assert not any("CidrIp" in r for r in rules)  # not the whole VPC: only the endpoints' group


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

    plan = training_job.Plan(snapshot=Snapshot(), parent=None, version=NEXT_VERSION, source=SOURCE)  # type: ignore[arg-type]
    request = training_job.training_job_request(args, name, plan, f"s3://{BUCKET}/training/datasets/x/", None)
    resolve = small.stack.resolve
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 2400}
    assert request["CheckpointConfig"]["S3Uri"] == f"{runner.checkpoint_uri}{name}/"
    assert request["EnableNetworkIsolation"] is True
    assert request["VpcConfig"]["SecurityGroupIds"] == [runner.security_group.security_group_id]
    assert len(request["VpcConfig"]["Subnets"]) == 2
    assert request["OutputDataConfig"]["KmsKeyId"] == request["ResourceConfig"]["VolumeKmsKeyId"]
    assert resolve(request["OutputDataConfig"]["KmsKeyId"]) == resolve(runner.data_key.key_arn)
    assert resolve(request["RoleArn"]) == resolve(runner.role.role_arn)
    assert name.startswith("mlapi-prod-train-") and len(name) <= 63


def test_the_caller_may_pass_only_the_training_role_and_start_only_this_runners_jobs(small: Small) -> None:
    """The caller's grants are built from names (they deploy in the StepAccess stage, before this stack): the role
    they may pass is the runner's role by its name, the jobs they may start carry the runner's prefix, and
    CreateTrainingJob is held to network isolation, a VPC configuration, keys of the account and the instance type
    (Service Authorization Reference, Amazon SageMaker: CreateTrainingJob condition keys)."""
    runner = small.runner
    found = [small.stack.resolve(s.to_json()) for s in runner.caller_statements("aws", "eu-west-1", "123456789012")]
    [create] = [s for s in found if s["Action"] == "sagemaker:CreateTrainingJob"]
    assert create["Resource"] == "arn:aws:sagemaker:eu-west-1:123456789012:training-job/mlapi-prod-train-*"
    assert create["Condition"]["Bool"] == {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:InterContainerTrafficEncryption": "true",
    }
    assert set(create["Condition"]["Null"]) == {
        "sagemaker:VpcSubnets", "sagemaker:VpcSecurityGroupIds", "sagemaker:VolumeKmsKey", "sagemaker:OutputKmsKey",
    }  # fmt: skip
    assert set(create["Condition"]["Null"].values()) == {"false"}  # each must be in the request
    assert create["Condition"]["ForAllValues:StringEquals"] == {"sagemaker:InstanceTypes": [SETTINGS.instance_type]}
    [passing] = [s for s in found if s["Action"] == "iam:PassRole"]
    [role] = small.of_type("AWS::IAM::Role")
    assert passing["Resource"] == f"arn:aws:iam::123456789012:role/{role['Properties']['RoleName']}"
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    [describe] = [s for s in found if s["Action"] == "cloudformation:DescribeStacks"]
    assert describe["Resource"] == "arn:aws:cloudformation:eu-west-1:123456789012:stack/mlapi-prod-inference/*"


def test_job_names_sagemaker_cannot_take_are_refused_naming_the_runner_key() -> None:
    """CreateTrainingJob's TrainingJobName: at most 63 characters (API reference, CreateTrainingJob)."""
    from ml_constructs.training_runner import check_job_names
    from platform_config import ConfigError

    check_job_names("mlapi-prod")
    with pytest.raises(ConfigError, match=r"ml-platform\.pipeline\.training\.runner.*63 characters"):
        check_job_names("a-very-long-project-name-production")


@pytest.mark.parametrize(
    ("pipeline", "environment", "expected"),
    [
        ({"production": "prod", "training": FITS}, "prod", "sagemaker"),
        ({"production": "prod", "training": FITS}, "staging", None),  # only production trains
        ({"production": "prod", "training": {"runner": "build"}}, "prod", None),
        ({"production": "prod"}, "prod", None),  # the default runner is the build
        (None, "prod", None),  # no pipeline: no retraining runs
    ],
)
def test_only_the_pipelines_production_gets_a_runner_and_only_with_sagemaker(
    pipeline: dict[str, Any] | None, environment: str, expected: str | None
) -> None:
    from ml_constructs.training_runner import pipeline_training

    context = {"ml-platform": {"pipeline": pipeline} if pipeline is not None else {}}
    found = pipeline_training(App(context=context), environment)
    assert (found.runner if found else None) == expected


# ---- the runner in an inference stack: image asset, output, and what the pipeline reads from it -----------
@dataclass
class Wired:
    stack: Stack
    runner: TrainingRunner
    template: dict[str, Any]
    images: dict[str, Any]


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> Wired:
    """add_training_runner as stacks/inference_stack.py calls it, on a small stack with every nag pack."""
    from ml_constructs.training_runner import add_training_runner

    outdir = tmp_path_factory.mktemp("training-wired")
    app = App(outdir=str(outdir))
    add_rule_packs(app)
    stack = Stack(app, "Inference", env={"account": "123456789012", "region": "eu-west-1"})
    vpc = imported_vpc(stack)
    network = SimpleNamespace(
        vpc=vpc,
        inference_subnets=ec2.SubnetSelection(subnet_group_name="inference"),
        gateway_prefix_lists=SimpleNamespace(ids={"s3": "pl-6da54004", "dynamodb": "pl-6fa54006"}),
        endpoint_security_group=ec2.SecurityGroup.from_security_group_id(stack, "Endpoints", ENDPOINT_GROUP),
    )
    settings = TrainingSettings(runner="sagemaker", spot=False, max_runtime_seconds=1200, owns_log_group=False)
    runner = add_training_runner(
        stack,
        prefix=PREFIX,
        settings=settings,
        network=network,  # type: ignore[arg-type]
        data_key=kms.Key(stack, "DataKey", enable_key_rotation=True),
        bucket_name=BUCKET,
        logs=LogPolicy(kms.Key(stack, "LogsKey", enable_key_rotation=True), 731, RemovalPolicy.RETAIN),
    )
    assembly = app.synth()
    manifest = json.loads((Path(outdir) / "Inference.assets.json").read_text())
    return Wired(stack, runner, assembly.get_stack_by_name("Inference").template, manifest["dockerImages"])


def test_the_training_image_is_the_dockerfiles_train_target_for_linux_amd64(wired: Wired) -> None:
    [image] = wired.images.values()
    assert image["source"]["dockerFile"] == "model_container/Dockerfile"
    assert image["source"]["dockerBuildTarget"] == "train"
    assert image["source"]["platform"] == "linux/amd64"  # SageMaker's ml.* x86 instances, whatever deploys
    dockerfile = (Path(__file__).resolve().parents[2] / "model_container" / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+ AS train$", dockerfile, re.M)
    [train] = re.findall(r"^FROM \S+ AS train$(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S)
    # "How Amazon SageMaker AI Runs Your Training Image": `docker run IMAGE train`, exec-form ENTRYPOINT.
    assert '\nENTRYPOINT ["python", "-m", "model_container.build_model"]' in train
    assert re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.M)[-1] == "runtime"  # `docker build` default: serving


def test_the_output_gives_the_synth_step_a_request_on_this_stacks_runner(wired: Wired) -> None:
    """The TrainingJobArguments output and the SSM parameter it names, as DescribeStacks and GetParameter return
    them after deploy, read by scripts/training_job.py stack_job_arguments and turned into its CreateTrainingJob
    request: this stack's role, group, subnets, image and key, the configured on-demand runtime, network isolation.
    The output is the parameter's name, made of no import (cfn-lint W6001 refuses an output of imports)."""
    resolver = Resolver(wired.template)
    output = resolver.resolve_str(wired.template["Outputs"][JOB_ARGUMENTS_OUTPUT]["Value"])
    [parameter] = [r for r in wired.template["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"]
    assert parameter["Properties"]["Name"] == output == "/mlapi-prod/training/job-arguments"
    assert parameter["Properties"]["Type"] == "String"  # ids and ARNs only, no secret

    class CloudFormation:
        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            outputs = [{"OutputKey": JOB_ARGUMENTS_OUTPUT, "OutputValue": output}]
            return {"Stacks": [{"StackName": StackName, "StackStatus": "UPDATE_COMPLETE", "Outputs": outputs}]}

    class Ssm:
        def get_parameter(self, Name: str) -> dict[str, Any]:
            assert Name == output
            return {"Parameter": {"Name": Name, "Value": resolver.resolve_str(parameter["Properties"]["Value"])}}

    argv = training_job.stack_job_arguments(CloudFormation(), Ssm(), "mlapi-prod-inference")
    args = training_job.build_parser().parse_args(["--dataset", "build/snapshot", *argv, "--commit", "c"])

    class Snapshot:
        content_sha256 = "ab" * 32

    plan = training_job.Plan(snapshot=Snapshot(), parent=None, version=NEXT_VERSION, source=SOURCE)  # type: ignore[arg-type]
    request = training_job.training_job_request(args, "mlapi-prod-train-x", plan, f"s3://{BUCKET}/training/d/", None)
    [role] = [r for r in wired.template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert request["RoleArn"] == f"arn:aws:iam::123456789012:role/{role['Properties']['RoleName']}"
    [group_id] = [lid for lid, r in wired.template["Resources"].items() if r["Type"] == "AWS::EC2::SecurityGroup"]
    assert request["VpcConfig"] == {
        "Subnets": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        "SecurityGroupIds": [resolver.get_att(group_id, "GroupId")],
    }
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/"
    )
    key = resolver.get_att(next(lid for lid in wired.template["Resources"] if lid.startswith("DataKey")), "Arn")
    assert request["OutputDataConfig"]["KmsKeyId"] == request["ResourceConfig"]["VolumeKmsKeyId"] == key
    assert request["EnableManagedSpotTraining"] is False and "MaxWaitTimeInSeconds" not in request["StoppingCondition"]
    assert request["EnableNetworkIsolation"] is True
    assert args.bucket == BUCKET and args.name_prefix == "mlapi-prod-train"


def test_without_owning_the_log_group_the_role_may_create_it(wired: Wired) -> None:
    """training.owns_log_group: false - /aws/sagemaker/TrainingJobs exists in the account already."""
    types = [r["Type"] for r in wired.template["Resources"].values()]
    assert "AWS::Logs::LogGroup" not in types
    [policy] = [r for r in wired.template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in _list(s["Action"])}
    assert "logs:CreateLogGroup" in actions


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_shipped_config_builds_no_runner(synthesized: Any) -> None:
    """training.runner is 'build' in cdk.json: production's inference stack has no training job resources."""
    template = synthesized.templates[("prod", "inference")]
    assert JOB_ARGUMENTS_OUTPUT not in template.get("Outputs", {})
    names = [r.get("Properties", {}).get("RoleName") for r in template["Resources"].values()]
    assert "mlapi-prod-training-jobs" not in names
    [directory] = synthesized.outdir.glob("assembly-*-StepAccess")
    steps = "".join(path.read_text() for path in directory.glob("*.template.json"))
    assert "ListModelPackages" in steps and "sagemaker:CreateTrainingJob" not in steps  # nor may Synth start jobs


@pytest.fixture(scope="module")
def step_access(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Production's and staging's StepAccess stacks (every nag pack) with training.runner: sagemaker, each with
    the Synth step's role as ml_constructs/delivery_pipeline.py grants it (its retraining reads)."""
    from aws_cdk import aws_iam as iam

    from ml_constructs.step_access import EnvironmentAccess
    from stacks.step_access_stack import StepAccessStage

    pipeline = {"production": "prod", "staging": "staging", "training": FITS}
    app = App(outdir=str(tmp_path_factory.mktemp("training-steps")), context={"ml-platform": {"pipeline": pipeline}})
    add_rule_packs(app)
    environments = []
    for name in ("staging", "prod"):
        access = EnvironmentAccess(f"{name}", f"mlapi-{name}", "123456789012", "eu-west-1", "aws", "111111111111")
        read = iam.PolicyStatement(actions=["dynamodb:Query"], resources=[access.arn("dynamodb", "table/t")])
        access.grant("Synth", f"mlapi-build-synth-{name}", [read], [])
        environments.append(access)
    stage = StepAccessStage(app, "StepAccess", project="mlapi", environments=environments)
    assembly = stage.synth()  # raises on any unacknowledged nag finding
    return {stack.stack_name.split("-")[1]: stack.template for stack in assembly.stacks}


def synth_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    [policy] = [
        r for lid, r in template["Resources"].items() if r["Type"] == "AWS::IAM::ManagedPolicy" and "Synth" in lid
    ]
    found: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_productions_synth_role_may_start_the_runners_jobs_and_read_its_output(step_access: Any) -> None:
    statements = synth_statements(step_access["prod"])
    actions = {a for s in statements for a in _list(s["Action"])}
    assert {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "iam:PassRole"} <= actions
    assert "dynamodb:Query" in actions  # the retraining reads stay
    [passing] = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert passing["Resource"] == "arn:aws:iam::123456789012:role/mlapi-prod-training-jobs"
    [describe] = [s for s in statements if s["Action"] == "cloudformation:DescribeStacks"]
    assert describe["Resource"] == "arn:aws:cloudformation:eu-west-1:123456789012:stack/mlapi-prod-inference/*"
    [parameter] = [s for s in statements if s["Action"] == "ssm:GetParameter"]
    assert parameter["Resource"] == "arn:aws:ssm:eu-west-1:123456789012:parameter/mlapi-prod/training/job-arguments"
    objects = [s for s in statements if s["Action"] == ["s3:PutObject", "s3:GetObject"]]
    assert [s["Resource"] for s in objects] == [[
        f"arn:aws:s3:::{BUCKET}/training/datasets/*",
        f"arn:aws:s3:::{BUCKET}/training/jobs/*",
    ]]  # fmt: skip


def test_staging_never_trains(step_access: Any) -> None:
    """Only production's data is retrained on: staging's Synth role gets no training grant."""
    assert "sagemaker:" not in json.dumps(synth_statements(step_access["staging"]))


def test_the_construct_and_the_script_name_the_same_output() -> None:
    from ml_constructs import training_runner

    assert training_runner.JOB_ARGUMENTS_OUTPUT == training_job.JOB_ARGUMENTS_OUTPUT == JOB_ARGUMENTS_OUTPUT


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({}, "max_wait_seconds"),  # the defaults: up to 2 hours of spot wait
        ({"max_runtime_seconds": 2400, "max_wait_seconds": 2401}, "max_wait_seconds"),
        ({"spot": False, "max_runtime_seconds": 1501}, "max_runtime_seconds"),  # + 900 s to start the instance
    ],
)
def test_a_job_the_synth_step_cannot_wait_for_is_refused_naming_the_key(values: dict[str, Any], key: str) -> None:
    """The retraining run's Synth step waits for the job within its CodeBuild timeout (60 minutes): a job that
    could outlast it would run on unwatched, its build never packaged."""
    from platform_config import ConfigError
    from platform_config.loader import build

    with pytest.raises(ConfigError) as raised:
        build(TrainingSettings, {"runner": "sagemaker", **values}, "ml-platform.pipeline.training")
    assert raised.value.key == f"ml-platform.pipeline.training.{key}"
    assert "60-minute CodeBuild timeout" in str(raised.value)
    build(TrainingSettings, {"runner": "build", **values}, "ml-platform.pipeline.training")  # the build never waits
    build(TrainingSettings, {"runner": "sagemaker", "spot": False, "max_runtime_seconds": 1500}, "k")


def test_the_budget_is_the_synth_steps_timeout(synthesized: Any) -> None:
    """SYNTH_STEP_MINUTES is the pipeline's Synth project's timeout (ml_constructs/delivery_pipeline.py)."""
    from platform_config.settings import SYNTH_STEP_MINUTES

    template = synthesized.templates[("pipeline", "pipeline")]
    [synth] = [
        r for lid, r in template["Resources"].items() if r["Type"] == "AWS::CodeBuild::Project" and "Synth" in lid
    ]
    assert synth["Properties"]["TimeoutInMinutes"] == SYNTH_STEP_MINUTES


# ---- wired into the environments' stacks (two stages of the app, not the whole app) -------------------------
@dataclass
class Stages:
    dev_inference: dict[str, Any]
    prod_inference: dict[str, Any]
    outdir: Path


@pytest.fixture(scope="module")
def stages(cdk_context: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Stages:
    """dev and prod as stacks/platform_stage.py builds them (every nag pack), with training.runner: sagemaker and
    dev's batch inference logging to an existing /aws/sagemaker/TransformJobs (batch.transform_log_group)."""
    import copy

    from platform_config import load_environments, load_pipeline
    from stacks.platform_stage import PlatformStage

    context = copy.deepcopy(cdk_context)
    context["ml-platform"]["pipeline"]["training"] = dict(FITS)
    context["ml-platform"]["environments"]["dev"]["batch"]["transform_log_group"] = "existing"
    environments = load_environments(context["ml-platform"], default_account="123456789012")
    assert load_pipeline(context["ml-platform"], environments) is not None  # the app's own validation passes
    outdir = tmp_path_factory.mktemp("training-stages")
    app = App(context=context, outdir=str(outdir))
    add_rule_packs(app)
    chosen = [env for env in environments if env.name in ("dev", "prod")]
    built = {env.name: PlatformStage(app, env.name, settings=env, commit="c") for env in chosen}
    templates = {}
    for name, stage in built.items():
        [stack] = [s for s in stage.synth().stacks if s.stack_name.endswith("-inference")]  # raises on nag findings
        templates[name] = stack.template
    return Stages(templates["dev"], templates["prod"], outdir)


def test_productions_inference_stack_has_the_runner_and_its_output(stages: Stages) -> None:
    """stacks/inference_stack.py with training.runner: sagemaker: the runner and the TrainingJobArguments output in
    production only (dev is not the pipeline's production), and the train target's image asset for linux/amd64."""
    assert JOB_ARGUMENTS_OUTPUT in stages.prod_inference["Outputs"]
    assert JOB_ARGUMENTS_OUTPUT not in stages.dev_inference.get("Outputs", {})
    roles = [r["Properties"].get("RoleName") for r in stages.prod_inference["Resources"].values()]
    assert "mlapi-prod-training-jobs" in roles
    images = [
        image["source"]
        for manifest in stages.outdir.glob("assembly-prod/*.assets.json")
        for image in json.loads(manifest.read_text()).get("dockerImages", {}).values()
    ]
    [train] = [source for source in images if source.get("dockerBuildTarget") == "train"]
    assert train["platform"] == "linux/amd64"
    groups = [r["Properties"].get("LogGroupName") for r in stages.prod_inference["Resources"].values()]
    assert "/aws/sagemaker/TrainingJobs" in groups  # training.owns_log_group defaults to true


def test_batch_logs_to_an_existing_transform_log_group_when_configured(stages: Stages) -> None:
    """batch.transform_log_group: existing - dev's stack does not create /aws/sagemaker/TransformJobs (one per
    account and region), and the model's role may create it as SageMaker does for a job's first log stream."""
    resources = stages.dev_inference["Resources"].values()
    assert "/aws/sagemaker/TransformJobs" not in [r["Properties"].get("LogGroupName") for r in resources]
    statements = [
        s
        for r in resources
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert any("logs:CreateLogGroup" in _list(s["Action"]) and "TransformJobs" in json.dumps(s) for s in statements)


def test_a_transform_log_group_setting_other_than_own_or_existing_names_the_key() -> None:
    from platform_config import ConfigError
    from platform_config.loader import build
    from platform_config.settings import BatchSettings

    assert build(BatchSettings, {"transform_log_group": "existing"}, "b").transform_log_group == "existing"
    assert BatchSettings().transform_log_group == "own"
    with pytest.raises(ConfigError) as raised:
        build(BatchSettings, {"transform_log_group": "shared"}, "ml-platform.environments.dev.batch")
    assert raised.value.key == "ml-platform.environments.dev.batch.transform_log_group"
    assert "must be one of 'own', 'existing'" in str(raised.value)
