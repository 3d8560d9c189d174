"""A retraining run with `training.runner: sagemaker` as the Synth step runs it (ml_constructs/pipeline_steps.py
retraining_commands: `retrain run ... --runner sagemaker --training-stack <prefix>-inference`): the runner's arguments
come from production's inference stack output, read through production's profile; before that stack has a runner
(a first run, the first after switching) the run trains in the build and says so; any other failure (the stack
read, the job) fails the run with nothing left for `retrain verify`, `make synth` or the registry to pick up.

AWS is moto (tests/scripts/test_retraining_run.py's `aws` fixture: prod's live 1.0.0, capture, labels, the pipeline's
artifacts bucket and key); DescribeStacks and the training job are stood in for where named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from model_container import build_model
from scripts import retrain, training_job
from tests.model_container.test_dataset import PROFILE, Call, calls
from tests.scripts import test_retraining_run as retraining_run
from tests.scripts.test_retraining_run import REGION, fresh_labels, retrain_argv

aws = retraining_run.aws
__all__ = ["aws", "calls"]

STACK = "mlapi-prod-inference"
RUNNER = ["--bucket", "b", "--role-arn", "arn:aws:iam::123456789012:role/mlapi-prod-training-jobs", "--spot"]
ENVIRONMENT = ["--environment-profile", PROFILE, "--environment-region", REGION]


def sagemaker_argv(tmp_path: Path, key: str) -> list[str]:
    return [*retrain_argv(tmp_path, key), *ENVIRONMENT, "--runner", "sagemaker", "--training-stack", STACK]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Production's inference stack as DescribeStacks would answer: `answer` is the runner's arguments, a
    StackNotReady or a ClientError; `clients` the CloudFormation clients asked (through which profile)."""
    state: dict[str, Any] = {"answer": RUNNER, "clients": []}

    def stack_job_arguments(cloudformation: Any, ssm: Any, stack_name: str) -> list[str]:
        assert stack_name == STACK
        state["clients"] += [cloudformation, ssm]
        if isinstance(state["answer"], Exception):
            raise state["answer"]
        return list(state["answer"])

    monkeypatch.setattr(training_job, "stack_job_arguments", stack_job_arguments)
    return state


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """scripts/training_job.py main: `exit` set by a test (the job's outcome), else the job's part is played by the
    local build on the same build arguments."""
    state: dict[str, Any] = {"argv": [], "exit": None}

    def main(argv: list[str]) -> int:
        state["argv"].append(argv)
        if state["exit"] is not None:
            return int(state["exit"])
        return build_model.main(argv[: argv.index("--region")])

    monkeypatch.setattr(training_job, "main", main)
    return state


def version(tmp_path: Path) -> str:
    return str(json.loads((tmp_path / "dist" / "metadata.json").read_text())["model_version"])


def test_the_job_gets_the_arguments_production_gives_through_its_profile(
    aws: Any, calls: list[Call], stack: dict[str, Any], jobs: dict[str, Any], tmp_path: Path
) -> None:
    fresh_labels(aws)
    assert retrain.main(sagemaker_argv(tmp_path, aws.key)) == 0
    [argv] = jobs["argv"]
    assert argv[-len(RUNNER) :] == RUNNER
    assert argv[argv.index("--region") :][:6] == ["--region", REGION, *ENVIRONMENT]  # the job runs in production
    cloudformation, ssm = stack["clients"]
    services = (cloudformation.meta.service_model.service_name, ssm.meta.service_model.service_name)
    assert services == ("cloudformation", "ssm")
    for client in cloudformation, ssm:
        assert client.meta.region_name == REGION
        # Through production's profile (the `calls` fixture's, static keys "production"), not the step's own.
        assert client._request_signer._credentials.get_frozen_credentials().access_key == "production"
    assert version(tmp_path) == "1.1.0" and (tmp_path / "build" / "retrained.json").is_file()


@pytest.mark.parametrize(
    "reason",
    [f"{STACK} does not exist yet", f"{STACK} has no TrainingJobArguments output yet", "this step may not read it"],
)
def test_before_production_has_a_runner_the_run_trains_in_the_build_and_says_so(
    aws: Any,
    calls: list[Call],
    stack: dict[str, Any],
    jobs: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reason: str,
) -> None:
    """Never fails a first run: the same build as training.runner: build, and a line saying why."""
    stack["answer"] = training_job.StackNotReady(reason)
    fresh_labels(aws)
    assert retrain.main(sagemaker_argv(tmp_path, aws.key)) == 0
    out = capsys.readouterr().out
    assert f"no SageMaker training runner in production yet ({reason}): training in the build" in out
    assert jobs["argv"] == [] and version(tmp_path) == "1.1.0"
    assert retrain.main(["verify", "--work", str(tmp_path / "build"), "--dist", str(tmp_path / "dist")]) == 0


def test_a_stack_read_that_fails_otherwise_fails_the_run_and_starts_no_job(
    aws: Any, calls: list[Call], stack: dict[str, Any], jobs: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
    stack["answer"] = ClientError(error, "DescribeStacks")
    fresh_labels(aws)
    assert retrain.main(sagemaker_argv(tmp_path, aws.key)) == 3
    assert f"reading {STACK}'s training runner failed" in capsys.readouterr().err
    assert jobs["argv"] == [] and not (tmp_path / "build" / "retrained.json").exists()


@pytest.mark.parametrize("code", [training_job.EXIT_FAILED, training_job.EXIT_AWS])
def test_a_job_that_fails_leaves_nothing_to_verify_package_or_register(
    aws: Any,
    calls: list[Call],
    stack: dict[str, Any],
    jobs: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    code: int,
) -> None:
    """A job Failed or Stopped (exit 1) or CreateTrainingJob throttled (exit 3): the Synth step fails there, and a
    retained.json of an earlier run in the same work directory cannot make `verify` pass."""
    work = tmp_path / "build"
    work.mkdir()
    (work / "retrained.json").write_text('{"model_version": "1.1.0"}')  # an earlier run's
    jobs["exit"] = code
    fresh_labels(aws)
    assert retrain.main(sagemaker_argv(tmp_path, aws.key)) == code
    assert f"the model build failed (exit {code})" in capsys.readouterr().err
    assert not (work / "retrained.json").exists() and not (tmp_path / "dist").exists()
    assert retrain.main(["verify", "--work", str(work), "--dist", str(tmp_path / "dist")]) == retrain.EXIT_REPLACED


def test_the_runner_needs_its_stack_or_its_arguments(aws: Any, tmp_path: Path, capsys: Any) -> None:
    argv = [*retrain_argv(tmp_path, aws.key), "--runner", "sagemaker"]
    assert retrain.main(argv) == 2
    assert "--runner sagemaker needs --training-stack or scripts/training_job.py's arguments" in capsys.readouterr().err
