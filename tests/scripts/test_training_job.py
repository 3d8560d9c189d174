"""The SageMaker training runner: the exact CreateTrainingJob request (spot, waits, checkpoints, VPC, network
isolation, KMS), the wait, and the artefact. moto stands in for S3 and SageMaker; a hook on CreateTrainingJob plays
SageMaker's part, running the image's `train` command (build_model.sagemaker_train) on the job's channels."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from model_container.build_model import CONTRACT_DIR, TrainingSource, build, configured_source, sagemaker_train
from model_container.contract import load_feature_schema
from model_container.dataset import Checks, Part, assemble, write
from model_container.dataset.sources import FeatureContract, base_part, bundled_dataset
from scripts import training_job
from scripts.training_job import main
from tests.model_container.test_dataset import PROFILE, Call, calls
from tests.model_packages import disagreeing_labels

__all__ = ["calls"]  # the fixture: every AWS call with the profile and region of its session

REGION, BUCKET = "eu-west-1", "mlapi-prod-artifacts-111111111111-eu-west-1"
KEY = f"arn:aws:kms:{REGION}:111111111111:key/0000"
ROLE = "arn:aws:iam::111111111111:role/mlapi-prod-training"
IMAGE = f"111111111111.dkr.ecr.{REGION}.amazonaws.com/model-train:abc"


def snapshot_dir(directory: Path, fresh: int, uri: str | None = None) -> Path:
    contract = FeatureContract.from_schema(load_feature_schema())
    _, x, y = bundled_dataset()
    parts = [base_part(None, contract), Part("captured", x[:fresh] * 1.01, disagreeing_labels(y[:fresh]), {})]
    write(assemble(contract.names, parts, Checks()), directory, {"snapshot_uri": uri} if uri else None)
    return directory


def sagemaker_runs_the_job(s3: Any, work: Path, request: dict[str, Any]) -> None:
    """What SageMaker does with the request: channels into /opt/ml/input/data/<name>/, hyperparameters into
    input/config/, `docker run IMAGE train`, then /opt/ml/model packed at S3OutputPath/<job>/output/model.tar.gz."""
    root = work / request["TrainingJobName"]
    for channel in request["InputDataConfig"]:
        bucket, prefix = channel["DataSource"]["S3DataSource"]["S3Uri"].removeprefix("s3://").split("/", 1)
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            target = root / "input" / "data" / channel["ChannelName"] / item["Key"].removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    if sagemaker_train(root) != 0:
        return
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        for path in sorted((root / "model").iterdir()):
            archive.add(path, arcname=path.name)
    output = request["OutputDataConfig"]["S3OutputPath"].removeprefix(f"s3://{BUCKET}/")
    key = f"{output}{request['TrainingJobName']}/output/model.tar.gz"  # moto's ModelArtifacts, as SageMaker's
    s3.put_object(Bucket=BUCKET, Key=key, Body=packed.getvalue())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    requests: list[dict[str, Any]] = []
    job_outcome: dict[str, str] = {}  # set by a test: how DescribeTrainingJob reports the job

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})

        class RecordingSession(boto3.Session):
            """Records CreateTrainingJob exactly as sent, and runs the job as SageMaker would."""

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)

                def create(params: dict[str, Any], **_: Any) -> None:
                    requests.append(params)
                    sagemaker_runs_the_job(s3, tmp_path / "sagemaker", params)

                self.events.register("provide-client-params.sagemaker.CreateTrainingJob", create)
                self.events.register(
                    "after-call.sagemaker.DescribeTrainingJob", lambda parsed, **_: parsed.update(job_outcome)
                )

        monkeypatch.setattr(boto3, "Session", RecordingSession)
        yield s3, requests, job_outcome


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The live model: a default build, version 1.0.0."""
    root = tmp_path_factory.mktemp("parent")
    build(root / "dist", contract_dir=root / "contract", commit="live-commit")
    return root / "dist" / "metadata.json"


def run(tmp_path: Path, dataset: Path, *extra: str) -> int:
    return main(
        [
            "--dataset", str(dataset), "--out", str(tmp_path / "dist"), "--bucket", BUCKET, "--image-uri", IMAGE,
            "--role-arn", ROLE, "--kms-key-arn", KEY, "--subnets", "subnet-a, subnet-b",
            "--security-group-ids", "sg-1", "--region", REGION, "--commit", "pipeline-commit", "--poll-seconds", "1",
            *extra,
        ]
    )  # fmt: skip


def test_a_spot_job_trains_in_the_private_subnets_under_the_data_key_with_checkpoints(
    aws: Any, tmp_path: Path, parent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, requests, _ = aws
    dataset = snapshot_dir(tmp_path / "snapshot", fresh=50)
    assert run(tmp_path, dataset, "--parent", str(parent), "--job-name", "retrain-1") == 0, capsys.readouterr().err
    [request] = requests
    assert request["TrainingJobName"] == "retrain-1" and request["RoleArn"] == ROLE
    assert request["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "File"}
    # Managed spot: enabled, with a wait of at least the runtime (StoppingCondition), and checkpoints to S3.
    assert request["EnableManagedSpotTraining"] is True
    stopping = request["StoppingCondition"]
    assert stopping == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/training/checkpoints/retrain-1/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["VpcConfig"] == {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}
    assert request["EnableNetworkIsolation"] is True and request["EnableInterContainerTrafficEncryption"] is True
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/training/jobs/", "KmsKeyId": KEY}
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.large",
        "InstanceCount": 1,
        "VolumeSizeInGB": 10,
        "VolumeKmsKeyId": KEY,
    }
    manifest = json.loads((dataset / "manifest.json").read_text())
    digest = manifest["content_sha256"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {
        "training": f"s3://{BUCKET}/training/datasets/{digest}/",
        "parent": f"s3://{BUCKET}/training/jobs/retrain-1/parent/",
    }
    for key in (f"training/datasets/{digest}/snapshot.csv", "training/jobs/retrain-1/parent/metadata.json"):
        stored = s3.get_object(Bucket=BUCKET, Key=key)
        assert (stored["ServerSideEncryption"], stored["SSEKMSKeyId"]) == ("aws:kms", KEY)
    training = TrainingSource.resolve(configured_source())
    assert request["HyperParameters"] == {
        "seed": str(training.seed),
        "holdout_fraction": repr(training.holdout_fraction),
        "commit": "pipeline-commit",
        "version": "1.1.0",
        "source": json.dumps(configured_source(), sort_keys=True),  # the configured model.source, trained in the job
    }
    assert {"Key": "DatasetSha256", "Value": digest} in request["Tags"]

    summary = json.loads(capsys.readouterr().out)
    assert (summary["model_version"], summary["dataset_sha256"], summary["spot"]) == ("1.1.0", digest, True)
    # The artefact unpacks into the build a local run writes: the runner does not change the model.
    local = build(
        tmp_path / "local",
        commit="pipeline-commit",
        contract_dir=CONTRACT_DIR,
        dataset=dataset,
        parent=json.loads(parent.read_text()),
    )
    assert json.loads((tmp_path / "dist" / "metadata.json").read_text()) == local
    for name in ("model.onnx", "model.tar.gz", "holdout.csv", "baseline.csv"):
        assert (tmp_path / "dist" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_an_on_demand_job_has_no_spot_wait_and_a_snapshot_already_uploaded_is_used_in_place(
    aws: Any, tmp_path: Path
) -> None:
    s3, requests, _ = aws
    uploaded = f"s3://{BUCKET}/training/datasets/abc/"
    dataset = snapshot_dir(tmp_path / "snapshot", fresh=10, uri=uploaded)
    for name in ("snapshot.csv", "manifest.json"):
        s3.put_object(Bucket=BUCKET, Key=f"training/datasets/abc/{name}", Body=(dataset / name).read_bytes())
    assert run(tmp_path, dataset, "--no-spot", "--max-wait-seconds", "60") == 0
    [request] = requests
    assert request["EnableManagedSpotTraining"] is False
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}  # MaxWaitTimeInSeconds is spot's
    [channel] = request["InputDataConfig"]  # no parent: a first training, version MODEL_VERSION
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == uploaded
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="training/datasets/")["Contents"]
    assert {item["Key"] for item in listed} == {f"training/datasets/abc/{n}" for n in ("snapshot.csv", "manifest.json")}
    assert request["HyperParameters"]["version"] == "1.0.0"
    assert len(request["TrainingJobName"]) <= 63 and request["TrainingJobName"].startswith("model-train-")


def test_a_spot_wait_shorter_than_the_runtime_is_refused_before_any_call(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, requests, _ = aws
    dataset = snapshot_dir(tmp_path / "snapshot", fresh=10)
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, dataset, "--max-runtime-seconds", "3600", "--max-wait-seconds", "1800")
    assert exit_info.value.code == 2
    assert "--max-wait-seconds must be at least --max-runtime-seconds" in capsys.readouterr().err
    assert requests == []


def test_a_failed_job_exits_1_with_its_failure_reason(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, requests, job_outcome = aws
    job_outcome.update(TrainingJobStatus="Failed", FailureReason="AlgorithmError: out of memory")
    dataset = snapshot_dir(tmp_path / "snapshot", fresh=10)
    assert run(tmp_path, dataset, "--job-name", "retrain-failed") == 1
    assert "retrain-failed is Failed: AlgorithmError: out of memory" in capsys.readouterr().err
    assert len(requests) == 1 and not (tmp_path / "dist").exists()


def test_an_unchanged_dataset_starts_no_job(
    aws: Any, tmp_path: Path, parent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, requests, _ = aws
    contract = FeatureContract.from_schema(load_feature_schema())
    dataset = tmp_path / "snapshot"
    write(assemble(contract.names, [base_part(None, contract)], Checks()), dataset)  # the parent's own data
    assert run(tmp_path, dataset, "--parent", str(parent)) == 5
    assert "dataset unchanged since 1.0.0: the retrained model would be identical" in capsys.readouterr().err
    assert requests == [] and "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_a_snapshot_kept_outside_the_runners_prefix_is_staged_under_it(aws: Any, tmp_path: Path) -> None:
    """A retraining run keeps its snapshot under the pipeline's bucket (datasets/<sha256>/); the training role
    (ml_constructs/training_runner.py) reads only <bucket>/training/, so the job reads a staged copy."""
    s3, requests, _ = aws
    dataset = snapshot_dir(tmp_path / "snapshot", fresh=10, uri="s3://mlapi-pipeline-artifacts/datasets/abc/")
    assert run(tmp_path, dataset, "--no-spot") == 0
    [request] = requests
    sha = json.loads((dataset / "manifest.json").read_text())["content_sha256"]
    channel = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel == f"s3://{BUCKET}/training/datasets/{sha}/"
    head = s3.head_object(Bucket=BUCKET, Key=f"training/datasets/{sha}/snapshot.csv")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == KEY


# --- status polling, against botocore's Stubber (moto completes a job at once) -----------------------------------
def _polling_args(spot: bool = True) -> Any:
    argv = ["--dataset", "d", "--bucket", BUCKET, "--image-uri", IMAGE, "--role-arn", ROLE, "--kms-key-arn", KEY]
    argv += ["--subnets", "subnet-a", "--security-group-ids", "sg-1", "--poll-seconds", "1"]
    argv += ["--max-runtime-seconds", "5", "--max-wait-seconds", "9"] + ([] if spot else ["--no-spot"])
    return training_job.build_parser().parse_args(argv)


def _described(status: str, **extra: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "TrainingJobName": "job", "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:111111111111:training-job/job",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/training/jobs/job/output/model.tar.gz"},
        "TrainingJobStatus": status, "SecondaryStatus": "Training", "AlgorithmSpecification": {
            "TrainingInputMode": "File"}, "ResourceConfig": {"VolumeSizeInGB": 10},
        "StoppingCondition": {}, "CreationTime": datetime(2026, 12, 1, tzinfo=UTC), **extra,
    }  # fmt: skip


def test_polling_waits_through_in_progress_until_the_job_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.stub import Stubber

    monkeypatch.setattr("time.sleep", lambda _: None)  # the waiter's Delay
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        for status in ("InProgress", "InProgress", "Completed"):  # the waiter's polls
            stubber.add_response("describe_training_job", _described(status), {"TrainingJobName": "job"})
        stubber.add_response(
            "describe_training_job",
            _described("Completed", BillableTimeInSeconds=30, TrainingTimeInSeconds=100),
            {"TrainingJobName": "job"},
        )  # the description the runner reports from
        job = training_job.wait_for_job(client, "job", _polling_args())
        stubber.assert_no_pending_responses()
    assert job["TrainingJobStatus"] == "Completed" and job["BillableTimeInSeconds"] == 30


@pytest.mark.parametrize(
    ("status", "reason"),
    [("Failed", "AlgorithmError: DatasetUnchanged"), ("Stopped", "spot capacity not available within MaxWait")],
)
def test_a_job_that_ends_otherwise_raises_with_its_status_and_reason(
    monkeypatch: pytest.MonkeyPatch, status: str, reason: str
) -> None:
    from botocore.stub import Stubber

    monkeypatch.setattr("time.sleep", lambda _: None)
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_response("describe_training_job", _described("InProgress"), {"TrainingJobName": "job"})
        for _ in range(2):  # the waiter's last poll, then the runner's own description
            stubber.add_response(
                "describe_training_job", _described(status, FailureReason=reason), {"TrainingJobName": "job"}
            )
        with pytest.raises(training_job.TrainingJobFailed, match=f"job is {status}: {reason}"):
            training_job.wait_for_job(client, "job", _polling_args())
        stubber.assert_no_pending_responses()


def test_the_poll_budget_is_max_wait_with_spot_and_runtime_plus_provisioning_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []

    class Waiter:
        def wait(self, **kwargs: Any) -> None:
            seen.append(kwargs["WaiterConfig"])

    class Client:
        def get_waiter(self, name: str) -> Waiter:
            assert name == "training_job_completed_or_stopped"
            return Waiter()

        def describe_training_job(self, **_: Any) -> dict[str, Any]:
            return _described("Completed")

    training_job.wait_for_job(Client(), "job", _polling_args(spot=True))
    training_job.wait_for_job(Client(), "job", _polling_args(spot=False))
    assert seen[0] == {"Delay": 1, "MaxAttempts": 9 + 1}
    assert seen[1] == {"Delay": 1, "MaxAttempts": 5 + training_job.PROVISIONING_ALLOWANCE_S + 1}


def test_with_the_environment_profile_every_call_goes_to_production_in_its_region(
    aws: Any, calls: list[Call], tmp_path: Path, parent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runner lives in production's account (ml_constructs/training_runner.py): with --environment-profile and
    --environment-region the staging, the job and its artefact all go through that profile in that region, not
    the pipeline's --region. (`calls` after `aws`: SageMaker's own part, the fixture's client, is not recorded.)"""
    _, requests, _ = aws
    dataset = snapshot_dir(tmp_path / "snapshot", fresh=50)
    extra = ["--parent", str(parent), "--region", "us-west-2"]  # the pipeline's region (the last --region wins)
    code = run(tmp_path, dataset, *extra, "--environment-profile", PROFILE, "--environment-region", REGION)
    assert code == 0, capsys.readouterr().err
    assert len(requests) == 1 and json.loads(capsys.readouterr().out)["model_version"] == "1.1.0"
    assert {(profile, region) for profile, region, _, _ in calls} == {(PROFILE, REGION)}
    operations = {operation for _, _, operation, _ in calls}
    assert {"PutObject", "CreateTrainingJob", "DescribeTrainingJob", "GetObject"} <= operations
