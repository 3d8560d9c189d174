"""The pipeline's environment-touching steps, rehearsed in run order against moto (issue 13's check).

Each step's script runs through its main() with the arguments ml_constructs/delivery_pipeline.py gives it (the
model gate in the Checks wave; per stage the autoscaling guard before the deploy, the drift baseline and the
release registration after the environment's Data stack, the autoscaling guard and the bake check after the
inference deploy), from a source checkout whose model_container/dist is the build under test. Between steps the
test creates what each deploy would: the Data stack's KMS-encrypted artifacts bucket and release table (with its
status-index GSI), the Inference stack's endpoint, alarms and scalable target (with its role). Three runs:
(a) the first run on an empty account, (b) a second run with a live release and a changed instance type,
(c) a retraining run whose candidate is judged on a holdout with fresh labels. No synth; moto in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from lambda_src.releases.release_history.repository import ReleaseRepository, Status
from ml_constructs.endpoint_alarms import ROLLBACK_ALARMS  # the synthesized alarms' names
from model_container.card import ModelCard
from scripts import autoscaling_guard, bake_check, model_gate, publish_baseline, register_release
from tests.release_table import create_release_table

REPO = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "eu-west-1"
PIPELINE, EXECUTION = "mlapi-pipeline-delivery", "exec-1"
APPROVALS = ["DataScienceApproval", "OperationsApproval", "ProductApproval"]
TOLERANCE = "0.01"  # platform_config PipelineSettings default; the thresholds are the card's acceptance


def names(env: str) -> dict[str, str]:
    """The names DataStores, ReleaseHistoryTable and ModelEndpoint give an environment's resources."""
    prefix = f"mlapi-{env}"
    return {
        "prefix": prefix,
        "bucket": f"{prefix}-artifacts-{ACCOUNT}-{REGION}",
        "table": f"{prefix}-releases",
        "endpoint": f"{prefix}-endpoint",
        "stack": f"{prefix}-inference",
        "assembly": f"cdk.out/assembly-Pipeline-{env}",
    }


# ---- the steps, as ml_constructs/delivery_pipeline.py runs them ------------------------------------------------------
# Each environment step runs as the environment's step role through AWS_PROFILE=<environment> (a profile with
# role_arn and credential_source in AWS_CONFIG_FILE); RegisterRelease reads the pipeline with the step's own
# credentials and passes the profile for the release table only. Here the profiles hold moto's test keys.
@contextmanager
def as_environment(env: str) -> Iterator[None]:
    previous = os.environ.get("AWS_PROFILE")
    os.environ["AWS_PROFILE"] = env
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_PROFILE", None)
        else:
            os.environ["AWS_PROFILE"] = previous


def model_gate_step() -> int:
    prod = names("prod")
    with as_environment("prod"):
        return run_gate(prod)


def run_gate(prod: dict[str, str]) -> int:
    return model_gate.main(
        ["--dist", "model_container/dist", "--tolerance", TOLERANCE,
         "--endpoint", prod["endpoint"], "--table", prod["table"], "--artifacts-bucket", prod["bucket"],
         "--report", "reports/model-gate/model-gate.json"]
    )  # fmt: skip


def publish_baseline_step(env: str) -> int:
    with as_environment(env):
        return publish_baseline.main(["--bucket", names(env)["bucket"]])


def register_release_step(env: str) -> int:
    n = names(env)
    stages = json.dumps([{"stage": a, "action": a, "reviewers": []} for a in APPROVALS], separators=(",", ":"))
    return register_release.main(
        ["--assembly", n["assembly"], "--pipeline", PIPELINE, "--stage", env, "--approvals", ",".join(APPROVALS),
         "--table", n["table"], "--environment-profile", env, "--environment-region", REGION,
         "--execution-id", EXECUTION, "--stages-json", stages,
         "--emergency-override", "false", "--emergency-reason", ""]
    )  # fmt: skip


def autoscaling_step(env: str, phase: str) -> int:
    [template] = Path(names(env)["assembly"]).glob("*Inference*.template.json")
    with as_environment(env):
        return autoscaling_guard.main([phase, "--template", str(template)])


def bake_check_step(env: str) -> int:
    alarms = ",".join(f"{names(env)['prefix']}-{name}" for name in ROLLBACK_ALARMS)
    with as_environment(env):
        return bake_check.main(["--alarms", alarms, "--minutes", "30"])


# ---- what the deploys and services do between the steps ---------------------------------------------------------
def inference_template(env: str, metadata: dict[str, Any], instance_type: str) -> dict[str, Any]:
    """The parts of the synthesized inference stack the steps read (ml_constructs/model_endpoint.py and the
    autoscaling construct): the endpoint config's name and tags, the endpoint, the scalable target with its role."""
    n, version, digest = names(env), metadata["model_version"], metadata["content_sha256"]
    tags = [
        {"Key": "model-version", "Value": version},
        {"Key": "model-hash", "Value": digest[:16]},
        {"Key": "commit", "Value": "rehearsal"},
    ]
    config_name = f"{n['endpoint']}-{version.replace('.', '-')}-{digest[:8]}-{instance_type.replace('.', '-')}"
    variant = {"VariantName": "primary", "InstanceType": instance_type, "InitialInstanceCount": 2}
    target_id = {"Ref": "AutoscalingTarget"}
    return {
        "Resources": {
            "ModelConfig": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {"EndpointConfigName": config_name, "ProductionVariants": [variant], "Tags": tags},
            },
            "ModelEndpoint": {"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointName": n["endpoint"]}},
            "AutoscalingTargetRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
            "AutoscalingTarget": {
                "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
                "Properties": {
                    "MaxCapacity": 4,
                    "MinCapacity": 2,
                    "ResourceId": f"endpoint/{n['endpoint']}/variant/primary",
                    "RoleARN": {"Fn::GetAtt": ["AutoscalingTargetRole", "Arn"]},
                    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                    "ServiceNamespace": "sagemaker",
                },
            },
            "AutoscalingTargetInvocations": {
                "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
                "Properties": {
                    "PolicyName": f"{env}-invocations",
                    "PolicyType": "TargetTrackingScaling",
                    "ScalingTargetId": target_id,
                    "TargetTrackingScalingPolicyConfiguration": {
                        "PredefinedMetricSpecification": {
                            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                        },
                        "TargetValue": 60000.0,
                    },
                },
            },
        }
    }


@dataclass
class Account:
    """The moto account, the source checkout the steps run in, and what the deploys created."""

    checkout: Path
    roles: dict[str, str]
    deregistered: set[str] = field(default_factory=set)
    guard: dict[str, list[str]] = field(default_factory=dict)

    def synth(self, build: Path, instance_type: str = "ml.c5.large") -> dict[str, Any]:
        """`make model` + `make synth`: the build in model_container/dist and each stage's cloud assembly."""
        dist = self.checkout / "model_container" / "dist"
        shutil.rmtree(dist, ignore_errors=True)
        shutil.copytree(build, dist)
        metadata: dict[str, Any] = json.loads((dist / "metadata.json").read_text())
        for env in ("staging", "prod"):
            n = names(env)
            assembly = self.checkout / n["assembly"]
            shutil.rmtree(assembly, ignore_errors=True)
            assembly.mkdir(parents=True)
            template = assembly / f"Pipeline{env}InferenceABCD1234.template.json"
            template.write_text(json.dumps(inference_template(env, metadata, instance_type)))
            manifest = {
                "artifacts": {
                    template.name.split(".")[0]: {
                        "type": "aws:cloudformation:stack",
                        "properties": {"templateFile": template.name, "stackName": n["stack"]},
                    }
                }
            }
            (assembly / "manifest.json").write_text(json.dumps(manifest))
        return metadata

    def deploy_data(self, env: str) -> None:
        """The Data stack: the artifacts bucket (SSE-KMS with the data key, a bucket key) and the release table."""
        n = names(env)
        s3 = boto3.client("s3")
        if n["bucket"] in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            return
        key = boto3.client("kms").create_key(Description=f"{n['prefix']} data key")["KeyMetadata"]["Arn"]
        s3.create_bucket(Bucket=n["bucket"], CreateBucketConfiguration={"LocationConstraint": REGION})
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
        s3.put_bucket_encryption(
            Bucket=n["bucket"], ServerSideEncryptionConfiguration={"Rules": [{**rule, "BucketKeyEnabled": True}]}
        )
        create_release_table(boto3.resource("dynamodb"), n["table"])

    def deploy_inference(self, env: str) -> str:
        """The Inference stack's update: model, endpoint config and endpoint, the guard alarms, the scalable target
        (CloudFormation leaves a target the guard deregistered out of band alone). Returns the config name."""
        n = names(env)
        [template_file] = (self.checkout / n["assembly"]).glob("*Inference*.template.json")
        resources = json.loads(template_file.read_text())["Resources"]
        config = resources["ModelConfig"]["Properties"]
        sagemaker, iam = boto3.client("sagemaker"), boto3.client("iam")
        if env not in self.roles:
            document = json.dumps({"Version": "2012-10-17", "Statement": []})
            role = iam.create_role(RoleName=f"{n['stack']}-AutoscalingTargetRole-1", AssumeRolePolicyDocument=document)
            self.roles[env] = role["Role"]["RoleName"]
            model_role = iam.create_role(RoleName=f"{n['prefix']}-model", AssumeRolePolicyDocument=document)
            self.roles[f"{env}-model"] = model_role["Role"]["Arn"]
        model = f"{config['EndpointConfigName']}-model"
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=self.roles[f"{env}-model"],
            PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/model:latest"},
        )
        variant = {**config["ProductionVariants"][0], "ModelName": model}
        sagemaker.create_endpoint_config(EndpointConfigName=config["EndpointConfigName"], ProductionVariants=[variant])
        # CloudFormation updates the endpoint in place (blue/green); moto has no UpdateEndpoint, so the rehearsal
        # replaces it: what the next steps read (the config it runs) is the same.
        if n["endpoint"] in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]:
            sagemaker.delete_endpoint(EndpointName=n["endpoint"])
        sagemaker.create_endpoint(EndpointName=n["endpoint"], EndpointConfigName=config["EndpointConfigName"])
        cloudwatch = boto3.client("cloudwatch")
        for name in ROLLBACK_ALARMS:
            cloudwatch.put_metric_alarm(
                AlarmName=f"{n['prefix']}-{name}", MetricName=name, Namespace="AWS/SageMaker", Statistic="Sum",
                Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
            )  # fmt: skip
        target = resources["AutoscalingTarget"]["Properties"]
        autoscaling = boto3.client("application-autoscaling")
        keys = {k: target[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension")}
        if (
            not autoscaling.describe_scalable_targets(
                ServiceNamespace=keys["ServiceNamespace"], ResourceIds=[keys["ResourceId"]]
            )["ScalableTargets"]
            and env not in self.deregistered
        ):
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/{self.roles[env]}"
            autoscaling.register_scalable_target(**keys, MinCapacity=2, MaxCapacity=4, RoleARN=role_arn)
        return str(config["EndpointConfigName"])

    def release_goes_live(self, env: str, release_id: str) -> None:
        """The release-history function: the endpoint went InService on the config, baked, and is live."""
        n = names(env)
        repository = ReleaseRepository(boto3.resource("dynamodb").Table(n["table"]), n["endpoint"])
        release = repository.get(release_id)
        assert release is not None, release_id
        repository.transition(release, Status.BAKING, at="2026-12-01T10:00:00Z", by="test", reason="InService")
        baking = repository.get(release_id)
        assert baking is not None and repository.promote(baking, at="2026-12-01T10:30:00Z", by="test", reason="baked")


class PipelineCodePipeline:
    """GetPipelineState of this execution: every approval of the stage approved (moto has no pipeline state)."""

    def get_pipeline_state(self, name: str) -> dict[str, Any]:
        approved = {"status": "Succeeded", "lastUpdatedBy": f"arn:aws:iam::{ACCOUNT}:user/reviewer"}
        actions = [{"actionName": a, "latestExecution": approved} for a in APPROVALS]
        stage = {"latestExecution": {"pipelineExecutionId": EXECUTION}, "actionStates": actions}
        return {"stageStates": [{"stageName": env, **stage} for env in ("staging", "prod")]}


class DeployedStacks:
    """CloudFormation DescribeStackResource of the inference stacks' target roles (moto's CloudFormation needs API
    Gateway extras this environment lacks); the roles themselves are moto IAM roles."""

    def __init__(self, roles: dict[str, str]) -> None:
        self.roles = roles

    def describe_stack_resource(self, StackName: str, LogicalResourceId: str) -> dict[str, Any]:
        env = StackName.split("-")[1]
        assert LogicalResourceId == "AutoscalingTargetRole", LogicalResourceId
        stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{StackName}/guid"
        return {"StackResourceDetail": {"StackId": stack_id, "PhysicalResourceId": self.roles[env]}}


@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("RETRAINING", raising=False)
    profiles = "".join(
        f"[profile {env}]\naws_access_key_id = testing\naws_secret_access_key = testing\nregion = {REGION}\n"
        for env in ("staging", "prod")
    )
    (tmp_path / "aws-config").write_text(profiles)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    checkout = tmp_path / "source"
    shutil.copytree(
        REPO / "model_container" / "contract", checkout / "model_container" / "contract",
        ignore=shutil.ignore_patterns("*.py", "__pycache__"),
    )  # fmt: skip
    monkeypatch.chdir(checkout)
    with mock_aws():
        rehearsal = Account(checkout, {})
        real_client = boto3.Session.client

        def client(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "codepipeline":
                return PipelineCodePipeline()
            if name == "cloudformation":
                return DeployedStacks(rehearsal.roles)
            return real_client(self, name, *args, **kwargs)

        monkeypatch.setattr(boto3.Session, "client", client)
        no_alarm_history(monkeypatch)
        yield rehearsal


def no_alarm_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto does not implement DescribeAlarmHistory: answer it with an empty history (no alarm fired)."""
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if (self.meta.service_model.service_name, operation) == ("cloudwatch", "DescribeAlarmHistory"):
            return {"AlarmHistoryItems": []}
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)


def gate_report() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(Path("reports/model-gate/model-gate.json").read_text())
    return report


def run_stage(account: Account, env: str, capsys: pytest.CaptureFixture[str]) -> str:
    """One stage in the pipeline's order; every step must exit 0. Returns the deployed release id."""
    capsys.readouterr()
    assert autoscaling_step(env, "before") == 0, capsys.readouterr().err
    account.guard[env] = [capsys.readouterr().out.strip()]
    if "deregistered" in account.guard[env][0]:
        account.deregistered.add(env)
    account.deploy_data(env)
    assert publish_baseline_step(env) == 0, capsys.readouterr().err
    assert register_release_step(env) == 0, capsys.readouterr().err
    release_id = account.deploy_inference(env)
    capsys.readouterr()
    assert autoscaling_step(env, "after") == 0, capsys.readouterr().err
    account.guard[env].append(capsys.readouterr().out.strip())
    account.deregistered.discard(env)
    if env == "staging":
        assert bake_check_step(env) == 0, capsys.readouterr().err
    account.release_goes_live(env, release_id)
    capsys.readouterr()
    return release_id


# ---- (a) the first run -----------------------------------------------------------------------------------------------
def test_a_first_run_on_an_empty_account_deploys(
    account: Account, dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata = account.synth(dist)
    # Checks wave: production has no release table and no bucket yet: no live release, thresholds alone.
    assert model_gate_step() == 0, capsys.readouterr().err
    live = gate_report()["live"]
    assert live["skipped"] == "release table mlapi-prod-releases does not exist (first run): no live release yet"
    assert live["judged_on"] == "thresholds alone: no live model to compare with"

    # A step placed before its Data stack fails for that reason, and says so.
    capsys.readouterr()
    assert publish_baseline_step("staging") == 1
    assert "the environment's Data stack creates it" in capsys.readouterr().err
    assert register_release_step("staging") == 1
    assert "must run after that stack's deploy" in capsys.readouterr().err

    for env in ("staging", "prod"):
        run_stage(account, env, capsys)
    s3 = boto3.client("s3")
    root = f"baselines/{metadata['content_sha256']}/"
    for env in ("staging", "prod"):
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=names(env)["bucket"])["Contents"]}
        assert {root + "metadata.json", root + "baseline.csv", root + "model.onnx"} <= keys
    # The retried gate now finds the live release and scores it on the candidate's holdout.
    assert model_gate_step() == 0
    assert gate_report()["live"]["metrics_source"].startswith("scored on the candidate's holdout")


# ---- (b) a second run with a live release ----------------------------------------------------------------------------
def test_a_second_run_compares_with_the_live_release_and_restores_autoscaling(
    account: Account, dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account.synth(dist)
    first = {env: run_stage(account, env, capsys) for env in ("staging", "prod")}

    # The next commit changes the instance type; the model is the same build.
    account.synth(dist, instance_type="ml.c5.xlarge")
    assert model_gate_step() == 0, capsys.readouterr().err
    live = gate_report()["live"]
    assert live["release_id"] == first["prod"]
    assert live["metrics"] == gate_report()["holdout_metrics"]  # the same model on the same rows
    second = {env: run_stage(account, env, capsys) for env in ("staging", "prod")}
    assert second != first
    autoscaling = boto3.client("application-autoscaling")
    for env in ("staging", "prod"):
        before, after = account.guard[env]
        assert before.endswith(
            f"instance type ml.c5.large -> ml.c5.xlarge: deregistered endpoint/{names(env)['endpoint']}/variant/primary"
        )
        assert after.startswith(f"registered endpoint/{names(env)['endpoint']}/variant/primary again")
        [target] = autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[f"endpoint/{names(env)['endpoint']}/variant/primary"]
        )["ScalableTargets"]
        assert target["RoleARN"] == f"arn:aws:iam::{ACCOUNT}:role/{account.roles[env]}"  # as the template says
    repository = ReleaseRepository(boto3.resource("dynamodb").Table("mlapi-prod-releases"), "mlapi-prod-endpoint")
    assert [r.release_id for r in repository.by_status(Status.LIVE)] == [second["prod"]]


# ---- (c) a retraining run --------------------------------------------------------------------------------------------
def retrained_build(dist: Path, tmp_path: Path) -> Path:
    """A retraining build (model_container/build_model.py with a dataset): the bundled rows plus 40 captured
    patients a little larger than the bundled ones, with their true labels; the parent's next minor version."""
    from model_container.build_model import build
    from model_container.contract import load_feature_schema
    from model_container.dataset import snapshot as snapshots
    from model_container.dataset.sources import FeatureContract, base_part, bundled_dataset
    from tests.model_packages import spread_rows

    contract_dir = tmp_path / "contract"
    shutil.copytree(REPO / "model_container" / "contract", contract_dir, ignore=shutil.ignore_patterns("*.py"))
    contract = FeatureContract.from_schema(load_feature_schema(contract_dir / "feature_schema.json"))
    _, features, labels = bundled_dataset()
    rows = np.array(spread_rows(40, len(labels)))
    captured = snapshots.Part("captured", np.asarray(features)[rows] * 1.03, np.asarray(labels)[rows])
    snapshot = snapshots.assemble(contract.names, [base_part(None, contract), captured], snapshots.Checks())
    snapshots.write(snapshot, tmp_path / "snapshot")
    parent = json.loads((dist / "metadata.json").read_text())
    build(
        tmp_path / "retrained",
        commit="retrain",
        contract_dir=contract_dir,
        dataset=tmp_path / "snapshot",
        parent=parent,
    )
    return tmp_path / "retrained"


def test_a_retraining_run_is_judged_on_fresh_labels_and_keeps_the_live_baseline(
    account: Account, dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    live_metadata = account.synth(dist)
    for env in ("staging", "prod"):
        run_stage(account, env, capsys)

    live = ModelCard.from_dict(live_metadata)
    monkeypatch.setenv("RETRAINING", "true")
    monkeypatch.setenv("RETRAINING_REASON", f"drift on mlapi-prod-endpoint model {live.version}")
    metadata = account.synth(retrained_build(dist, tmp_path / "retraining"))
    assert metadata["model_version"] == f"{live.major}.{int(live.version.split('.')[1]) + 1}.0"  # the next minor
    assert model_gate_step() == 0, capsys.readouterr().err
    report = gate_report()
    holdout_rows = len(Path("model_container/dist/holdout.csv").read_text().splitlines())
    assert report["trigger"]["retraining"] is True
    # The live model is measured on the retraining holdout (with the captured rows), not on its own old one.
    assert report["live"]["model_version"] == live.version
    assert report["live"]["metrics_source"] == (
        f"scored on the candidate's holdout ({holdout_rows} rows), as the candidate"
    )
    own = {k: live.holdout_metrics[k] for k in live.metrics}
    rescored = {k: report["live"]["metrics"][k] for k in live.metrics}
    # A model perfect on both holdouts (the wine example scores 1.0 on every metric) scores the same on either.
    if set(own.values()) != {1.0}:
        assert rescored != own

    # Prod's publication comes before the deploy: the live model's baseline stays as it was.
    prod = names("prod")
    s3 = boto3.client("s3")
    live_root = f"baselines/{live_metadata['content_sha256']}/"
    before = s3.get_object(Bucket=prod["bucket"], Key=live_root + "baseline.csv")["Body"].read()
    assert publish_baseline_step("prod") == 0
    assert register_release_step("prod") == 0
    assert s3.get_object(Bucket=prod["bucket"], Key=live_root + "baseline.csv")["Body"].read() == before

    # While the candidate deploys, the drift job attributes the live version's traffic to the live model's baseline,
    # and after it goes live, the candidate version's traffic to the candidate's.
    sys.path.append(str(REPO / "lambda_src" / "drift_monitor"))
    from drift_engine.baseline_store import load_baseline, served_content_hash

    table = boto3.resource("dynamodb").Table(prod["table"])

    def drift_baseline(version: str) -> str | None:
        served = served_content_hash(table, prod["endpoint"], version)
        return load_baseline(s3, prod["bucket"], "baselines/", version, content_hash=served).content_hash

    assert drift_baseline(live.version) == live_metadata["content_sha256"]
    release_id = account.deploy_inference("prod")
    account.release_goes_live("prod", release_id)
    assert drift_baseline(metadata["model_version"]) == metadata["content_sha256"]
    assert drift_baseline(live.version) == live_metadata["content_sha256"]  # superseded, still its own
