"""The Model Monitor baseline script drives the real SageMaker SDK; moto stands in for S3 and SageMaker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from model_container.card import ModelCard
from scripts import model_monitor_baseline
from scripts.model_monitor_baseline import main
from tests import model_packages

REGION, BUCKET, ENDPOINT = "eu-west-1", "mlapi-dev-monitoring-123456789012-eu-west-1", "mlapi-dev-endpoint"
KEY = f"arn:aws:kms:{REGION}:123456789012:key/0000"
ROLE = "arn:aws:iam::123456789012:role/mlapi-dev-model-monitor"
IMAGES = Path(__file__).resolve().parents[2] / "ml_constructs" / "model_monitor_images.json"
STACK = "mlapi-dev-inference"
STACK_OUTPUTS = [
    {"OutputKey": "ApiUrl", "OutputValue": "https://example"},
    {
        "OutputKey": "ModelMonitorBaseline",
        "OutputValue": json.dumps(
            {"bucket": BUCKET, "endpoint": ENDPOINT, "role_arn": ROLE, "kms_key_arn": KEY,
             "subnets": ["subnet-s1", "subnet-s2"], "security_group_ids": ["sg-s"], "instance_type": "ml.m5.large",
             "volume_size_gb": 30, "max_runtime_seconds": 1800}
        ),
    },
]  # fmt: skip


@pytest.fixture(scope="module")
def dist() -> Path:
    """The binary example package (the default model)."""
    return model_packages.example_package("breast_cancer")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    requests: list[dict[str, Any]] = []
    job_outcome: dict[str, str] = {}  # set by a test: how DescribeProcessingJob reports the job

    class RecordingSession(boto3.Session):
        """Records the CreateProcessingJob request exactly as the SDK sends it; CloudFormation is stubbed
        (moto's template engine needs packages the dev requirements do not pin)."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.events.register(
                "provide-client-params.sagemaker.CreateProcessingJob", lambda params, **_: requests.append(params)
            )
            self.events.register(
                "after-call.sagemaker.DescribeProcessingJob", lambda parsed, **_: parsed.update(job_outcome)
            )

        def client(self, service: str, *args: Any, **kwargs: Any) -> Any:
            client = super().client(service, *args, **kwargs)
            if service == "cloudformation":
                stubber = Stubber(client)
                stubber.add_response(
                    "describe_stacks",
                    {"Stacks": [{"StackName": STACK, "CreationTime": "2026-11-25T00:00:00Z",
                                 "StackStatus": "UPDATE_COMPLETE", "Outputs": STACK_OUTPUTS}]},
                    {"StackName": STACK},
                )  # fmt: skip
                stubber.activate()
            return client

    monkeypatch.setattr(model_monitor_baseline.boto3, "Session", RecordingSession)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield s3, requests, job_outcome


def run(dist: Path, *extra: str) -> int:
    return main(
        [
            "--dist", str(dist), "--environment", "dev", "--bucket", BUCKET, "--endpoint", ENDPOINT,
            "--role-arn", ROLE, "--kms-key-arn", KEY, "--subnets", "subnet-a, subnet-b",
            "--security-group-ids", "sg-1", "--region", REGION, *extra,
        ]
    )  # fmt: skip


def test_the_sdk_baseline_job_runs_on_the_builds_data_with_the_schedules_network_and_keys(
    aws: Any, dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, requests, _ = aws
    card = ModelCard.load(dist)
    assert run(dist) == 0
    summary = json.loads(capsys.readouterr().out)
    prefix = f"model-monitor/{ENDPOINT}/{card.version}"
    assert summary["statistics"] == f"s3://{BUCKET}/{prefix}/baseline/statistics.json"
    assert "monitoring.model_monitor.baselined_versions" in summary["next"]

    [request] = requests
    assert request["ProcessingJobName"] == f"mlapi-dev-endpoint-baseline-{card.version.replace('.', '-')}"
    assert request["RoleArn"] == ROLE
    account = json.loads(IMAGES.read_text())[REGION]
    assert request["AppSpecification"]["ImageUri"] == (
        f"{account}.dkr.ecr.{REGION}.amazonaws.com/sagemaker-model-monitor-analyzer"
    )
    [source] = request["ProcessingInputs"]
    assert source["S3Input"]["S3Uri"] == f"s3://{BUCKET}/{prefix}/input/baseline.csv"
    [output] = request["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == f"s3://{BUCKET}/{prefix}/baseline"
    assert request["ProcessingOutputConfig"]["KmsKeyId"] == KEY
    assert request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KEY
    assert request["NetworkConfig"] == {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]},
    }
    environment = request["Environment"]
    assert json.loads(environment["dataset_format"]) == {"csv": {"header": False, "output_columns_position": "START"}}
    assert environment["dataset_source"] == "/opt/ml/processing/input/baseline_dataset_input"

    uploaded = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/input/baseline.csv")
    assert uploaded["Body"].read() == (dist / "baseline.csv").read_bytes()
    assert uploaded["ServerSideEncryption"] == "aws:kms"
    script = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/record_preprocessor.py")["Body"].read().decode()
    assert script.rstrip().endswith(f"FEATURE_NAMES = {json.dumps(card.feature_names)}")


def test_an_unbuilt_model_is_refused_before_any_aws_call(aws: Any, tmp_path: Path) -> None:
    _, requests, _ = aws
    with pytest.raises(SystemExit, match="cannot read the build"):
        run(tmp_path)
    assert requests == []


def test_an_aws_error_exits_3_with_the_reason(aws: Any, dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s3, _, _ = aws
    s3.delete_bucket(Bucket=BUCKET)
    assert run(dist) == 3
    assert "NoSuchBucket" in capsys.readouterr().err


def test_the_inference_stack_output_supplies_the_network_keys_and_sizes(
    aws: Any, dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, requests, _ = aws
    code = main(
        [
            "--dist",
            str(dist),
            "--environment",
            "dev",
            "--stack",
            STACK,
            "--region",
            REGION,
            "--instance-type",
            "ml.c5.xlarge",
        ]
    )
    assert code == 0, capsys.readouterr().err
    [request] = requests
    assert request["RoleArn"] == ROLE
    assert request["NetworkConfig"]["VpcConfig"] == {
        "Subnets": ["subnet-s1", "subnet-s2"],
        "SecurityGroupIds": ["sg-s"],
    }
    cluster = request["ProcessingResources"]["ClusterConfig"]
    assert (cluster["InstanceType"], cluster["VolumeSizeInGB"]) == ("ml.c5.xlarge", 30)  # the command line wins
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 1800


def test_without_a_stack_every_input_is_required(aws: Any, dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--dist", str(dist), "--environment", "dev", "--region", REGION, "--bucket", BUCKET])
    assert "--endpoint, --role-arn, --kms-key-arn, --subnets, --security-group-ids required" in capsys.readouterr().err


def test_with_wait_a_failed_job_exits_1_and_a_finished_one_reports_completed(
    aws: Any, dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, job_outcome = aws
    assert run(dist, "--wait", "--job-name", "baseline-ok") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "completed"
    job_outcome.update(ProcessingJobStatus="Failed", FailureReason="ClientError: baseline.csv has 0 rows")
    assert run(dist, "--wait", "--job-name", "baseline-failed") == 1
    assert "the baseline job failed" in capsys.readouterr().err


def test_every_task_is_baselined_on_its_cards_features(
    aws: Any, model_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, requests, _ = aws
    card = ModelCard.load(model_package)
    assert run(model_package) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert (summary["task"], summary["features"], summary["model_version"]) == (card.task, card.width, card.version)
    prefix = f"model-monitor/{ENDPOINT}/{card.version}"
    uploaded = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/input/baseline.csv")["Body"].read()
    assert uploaded == (model_package / "baseline.csv").read_bytes()
    assert len(uploaded.splitlines()[0].split(b",")) == card.width
    script = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/record_preprocessor.py")["Body"].read().decode()
    assert script.rstrip().endswith(f"FEATURE_NAMES = {json.dumps(card.feature_names)}")
    assert len(requests) == 1


def test_a_baseline_of_another_width_than_the_card_is_refused_before_any_aws_call(
    aws: Any, dist: Path, tmp_path: Path
) -> None:
    _, requests, _ = aws
    package = tmp_path / "package"
    shutil.copytree(dist, package)
    (package / "baseline.csv").write_text("1.0,2.0\n")
    card = ModelCard.load(package)
    with pytest.raises(SystemExit, match=f"baseline.csv has 2 columns; the model card .* has {card.width} features"):
        run(package)
    assert requests == []
