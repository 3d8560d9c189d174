"""The SageMaker runner when AWS says no (training.runner: sagemaker): production's inference stack read by the
Synth step (scripts/training_job.py stack_job_arguments), CreateTrainingJob throttled, a job that ends Failed or
Stopped, an artefact that is not a build. Each ends with a clear error and leaves --out as it was: nothing of a
failed job can be packaged by `make synth` or registered after it. moto stands in for S3 and
SageMaker (tests/scripts/test_training_job.py's `aws` fixture plays SageMaker's part); botocore's Stubber answers
DescribeStacks."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from scripts import training_job
from tests.scripts.test_training_job import BUCKET, REGION, aws, parent, run, snapshot_dir

__all__ = ["aws", "parent"]  # the fixtures

STACK = "mlapi-prod-inference"
RUNNER = ["--bucket mlapi-prod-artifacts-1-eu-west-1", "--prefix training/", "--subnets subnet-a,subnet-b", "--spot"]


def cloudformation_answering(*responses: dict[str, Any] | tuple[str, str]) -> tuple[Any, Stubber]:
    """A CloudFormation client that answers DescribeStacks with `responses` (botocore's Stubber checks each against
    the API's shapes; moto's CloudFormation needs every moto backend, API Gateway's validator among them)."""
    client = boto3.client("cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    for response in responses:
        if isinstance(response, tuple):
            code, message = response
            stubber.add_client_error("describe_stacks", code, message, 400, expected_params={"StackName": STACK})
        else:
            stubber.add_response("describe_stacks", response, {"StackName": STACK})
    return client, stubber


class _NoSsm:
    """A stack without the runner's output must not reach SSM."""

    def get_parameter(self, **_: Any) -> None:
        raise AssertionError("GetParameter without a TrainingJobArguments output")


NO_SSM = _NoSsm()


def described(status: str = "UPDATE_COMPLETE", outputs: list[dict[str, str]] | None = None) -> dict[str, Any]:
    from datetime import UTC, datetime

    stack = {"StackName": STACK, "CreationTime": datetime(2026, 12, 1, tzinfo=UTC), "StackStatus": status}
    return {"Stacks": [{**stack, **({"Outputs": outputs} if outputs is not None else {})}]}


def ssm_answering(*responses: dict[str, Any] | str) -> tuple[Any, Stubber]:
    """An SSM client answering GetParameter of PARAMETER with `responses` (a value, or an error code)."""
    client = boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    for response in responses:
        if isinstance(response, str):
            stubber.add_client_error("get_parameter", response, "no", 400, expected_params={"Name": PARAMETER})
        else:
            stubber.add_response("get_parameter", response, {"Name": PARAMETER})
    return client, stubber


PARAMETER = "/mlapi-prod/training/job-arguments"
OUTPUT = {"OutputKey": "TrainingJobArguments", "OutputValue": PARAMETER}


def test_the_runner_arguments_are_in_the_parameter_the_inference_stacks_output_names() -> None:
    assert OUTPUT["OutputKey"] == training_job.JOB_ARGUMENTS_OUTPUT
    client, stubber = cloudformation_answering(described(outputs=[{"OutputKey": "Other", "OutputValue": "x"}, OUTPUT]))
    ssm, ssm_stubber = ssm_answering({"Parameter": {"Name": PARAMETER, "Value": json.dumps(RUNNER)}})
    with stubber, ssm_stubber:
        argv = training_job.stack_job_arguments(client, ssm, STACK)
        ssm_stubber.assert_no_pending_responses()
    assert argv == [
        "--bucket", "mlapi-prod-artifacts-1-eu-west-1", "--prefix", "training/", "--subnets", "subnet-a,subnet-b",
        "--spot",
    ]  # fmt: skip


def test_a_stack_that_does_not_exist_yet_is_not_ready() -> None:
    """A first run: DescribeStacks answers ValidationError "Stack with id ... does not exist" (CloudFormation API
    reference, DescribeStacks)."""
    client, stubber = cloudformation_answering(("ValidationError", f"Stack with id {STACK} does not exist"))
    with stubber, pytest.raises(training_job.StackNotReady, match=f"{STACK} does not exist yet"):
        training_job.stack_job_arguments(client, NO_SSM, STACK)


@pytest.mark.parametrize("outputs", [None, [{"OutputKey": "ApiUrl", "OutputValue": "https://x"}]])
def test_a_stack_without_the_runner_output_is_not_ready(outputs: list[dict[str, str]] | None) -> None:
    """The first run after switching to sagemaker: production's inference stack still has no runner."""
    client, stubber = cloudformation_answering(described(outputs=outputs))
    with stubber, pytest.raises(training_job.StackNotReady, match="has no TrainingJobArguments output yet"):
        training_job.stack_job_arguments(client, NO_SSM, STACK)


def test_a_stack_still_being_created_is_not_ready() -> None:
    client, stubber = cloudformation_answering(described("CREATE_IN_PROGRESS"))
    with stubber, pytest.raises(training_job.StackNotReady, match="CREATE_IN_PROGRESS"):
        training_job.stack_job_arguments(client, NO_SSM, STACK)


@pytest.mark.parametrize(
    ("code", "not_ready"),
    [("AccessDenied", True), ("ThrottlingException", False), ("InternalFailure", False)],
)
def test_only_a_read_the_step_may_not_make_yet_is_not_ready_other_errors_are_raised(code: str, not_ready: bool) -> None:
    """AccessDenied: the Synth role's DescribeStacks grant deploys in the StepAccess stage, after the run's Synth.
    Anything else (throttled past botocore's retries, a service fault) is an error, not a reason to train elsewhere."""
    client, stubber = cloudformation_answering((code, "no"))
    with stubber:
        if not_ready:
            with pytest.raises(training_job.StackNotReady, match="may not read"):
                training_job.stack_job_arguments(client, NO_SSM, STACK)
        else:
            with pytest.raises(ClientError, match=code):
                training_job.stack_job_arguments(client, NO_SSM, STACK)


def previous_build(tmp_path: Path) -> dict[str, bytes]:
    """--out holding an earlier build (what `make synth` would package)."""
    out = tmp_path / "dist"
    out.mkdir()
    files = {"metadata.json": b'{"model_version": "1.0.0"}', "model.onnx": b"earlier"}
    for name, body in files.items():
        (out / name).write_bytes(body)
    return files


def unchanged(tmp_path: Path, files: dict[str, bytes]) -> bool:
    return {p.name: p.read_bytes() for p in (tmp_path / "dist").iterdir()} == files


def test_a_throttled_create_training_job_exits_3_and_leaves_the_build_alone(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CreateTrainingJob throttled (the ClientError botocore raises once its retries are spent)."""
    _, requests, _ = aws
    fixture_session = boto3.Session

    class Throttled(fixture_session):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

            def throttle(**_: Any) -> None:
                error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
                raise ClientError(error, "CreateTrainingJob")

            self.events.register_first("provide-client-params.sagemaker.CreateTrainingJob", throttle)

    monkeypatch.setattr(boto3, "Session", Throttled)
    files = previous_build(tmp_path)
    assert run(tmp_path, snapshot_dir(tmp_path / "snapshot", fresh=10)) == training_job.EXIT_AWS
    err = capsys.readouterr().err
    assert "ThrottlingException" in err and "CreateTrainingJob" in err
    assert requests == [] and unchanged(tmp_path, files)  # no job started, the earlier build as it was


@pytest.mark.parametrize(
    ("status", "reason"),
    [("Failed", "AlgorithmError: out of memory"), ("Stopped", "MaxWaitTimeInSeconds exceeded (no spot capacity)")],
)
def test_a_job_that_fails_or_stops_exits_1_with_its_reason_and_leaves_the_build_alone(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], status: str, reason: str
) -> None:
    _, requests, job_outcome = aws
    job_outcome.update(TrainingJobStatus=status, FailureReason=reason)
    files = previous_build(tmp_path)
    assert run(tmp_path, snapshot_dir(tmp_path / "snapshot", fresh=10), "--job-name", "j") == training_job.EXIT_FAILED
    assert f"the training job failed: j is {status}: {reason}" in capsys.readouterr().err
    assert len(requests) == 1 and unchanged(tmp_path, files)


def test_an_artefact_that_is_not_a_whole_build_leaves_the_build_alone(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model.tar.gz without model.onnx (a job that wrote half its model): nothing of it reaches --out, where a
    mixed build (new metadata, old model) would be packaged."""
    s3, _, job_outcome = aws
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        body = json.dumps({"model_version": "1.1.0", "content_sha256": "0" * 64}).encode()
        info = tarfile.TarInfo("metadata.json")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    s3.put_object(Bucket=BUCKET, Key="half/model.tar.gz", Body=packed.getvalue())
    job_outcome.update(ModelArtifacts={"S3ModelArtifacts": f"s3://{BUCKET}/half/model.tar.gz"})
    files = previous_build(tmp_path)
    assert run(tmp_path, snapshot_dir(tmp_path / "snapshot", fresh=10)) == training_job.EXIT_FAILED
    assert "the training job failed: s3://" in capsys.readouterr().err
    assert unchanged(tmp_path, files)  # not its metadata.json beside the earlier model.onnx
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dist-")]  # no working copy left behind


@pytest.mark.parametrize(("code", "not_ready"), [("AccessDeniedException", True), ("ThrottlingException", False)])
def test_a_parameter_the_step_may_not_read_yet_is_not_ready_other_errors_are_raised(code: str, not_ready: bool) -> None:
    client, stubber = cloudformation_answering(described(outputs=[OUTPUT]))
    ssm, ssm_stubber = ssm_answering(code)
    with stubber, ssm_stubber:
        if not_ready:
            with pytest.raises(training_job.StackNotReady, match="may not read"):
                training_job.stack_job_arguments(client, ssm, STACK)
        else:
            with pytest.raises(ClientError, match=code):
                training_job.stack_job_arguments(client, ssm, STACK)
