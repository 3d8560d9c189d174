"""The batch inference operator command against moto's Step Functions.

moto stores executions but does not run them (its ASL interpreter needs antlr4, which this project does not
install), so a test plays Step Functions' part where it matters: it settles an execution in moto's backend the way
the real state machine ends (ml_constructs/batch_inference.py): SUCCEEDED with the state it carried to the end, or
FAILED with the Fail state's error and cause - for a failed job, the DescribeTransformJob record the .sync task
fails with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.stepfunctions.models import stepfunctions_backends

from model_container.card import ModelCard
from scripts import batch_transform

REGION, PREFIX = "eu-west-1", "mlapi-dev"
BUCKET = f"{PREFIX}-artifacts-{DEFAULT_ACCOUNT_ID}-{REGION}"
PASS = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
NOW = datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        sfn = session.client("stepfunctions")
        sfn.create_state_machine(name="mlapi-other-batch", definition=PASS, roleArn=role())
        sfn.create_state_machine(name=f"{PREFIX}-batch", definition=PASS, roleArn=role())
        yield session


def role() -> str:
    return f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/{PREFIX}-batch"


def execution(arn: str) -> Any:
    return stepfunctions_backends[DEFAULT_ACCOUNT_ID][REGION].describe_execution(arn)


def output_fields(card: ModelCard) -> str:
    """An output line's text/csv fields for the card's task (README "Serving contract", batch)."""
    fields = {
        "binary_classification": ["label", "probability"],
        "multiclass_classification": ["label", *card.label_names],
        "regression": ["value"],
    }[card.task]
    return ",".join([*fields, "model_version"])


def succeed(arn: str, fields: str | None = "label,probability,model_version") -> None:
    """End `arn` as the state machine does after ReportSuccess: the state it carried, the job's summary in it."""
    run = execution(arn)
    name = run.name
    run.status, run.stop_date = "SUCCEEDED", NOW
    run.output = json.dumps(
        {
            "input": f"s3://{BUCKET}/batch/input/",
            "job_name": f"{PREFIX}-batch-0b9f",
            "output": f"s3://{BUCKET}/batch/output/{name}/",
            "execution": name,
            **({"output_fields": fields} if fields else {}),
            "transform": {
                "job_name": f"{PREFIX}-batch-0b9f",
                "status": "Completed",
                "output": f"s3://{BUCKET}/batch/output/{name}/",
                "model": f"{PREFIX}-endpoint-1-0-0-35eb4e84",
            },
        }
    )


def fail_job(arn: str, reason: str) -> None:
    """End `arn` as BatchFailed does when the transform job fails: the .sync task's error, the job as cause."""
    run = execution(arn)
    run.status, run.stop_date, run.error = "FAILED", NOW, "States.TaskFailed"
    run.cause = json.dumps(
        {"TransformJobName": f"{PREFIX}-batch-0b9f", "TransformJobStatus": "Failed", "FailureReason": reason}
    )


def started_arn(output: str) -> str:
    return output.split("started ", 1)[1].split()[0]


def test_start_runs_the_environments_state_machine_with_the_input_and_a_unique_name(aws, capsys) -> None:
    code = batch_transform.main(
        ["start", "--env-prefix", PREFIX, "--input", f"s3://{BUCKET}/batch/input/2026-12-01/"],
        session=aws,
        now=lambda: NOW,
    )
    assert code == 0
    arn = started_arn(capsys.readouterr().out)
    run = execution(arn)
    assert run.state_machine_arn.endswith(f":stateMachine:{PREFIX}-batch")  # not mlapi-other-batch
    assert json.loads(run.execution_input) == {"input": f"s3://{BUCKET}/batch/input/2026-12-01/"}
    assert run.name.startswith("manual-20261201T030000Z-") and len(run.name) <= 80
    batch_transform.main(["start", "--env-prefix", PREFIX], session=aws, now=lambda: NOW)
    second = execution(started_arn(capsys.readouterr().out))
    assert second.name != run.name and json.loads(second.execution_input) == {}  # {} = the whole input prefix


def test_start_wait_follows_the_run_and_reports_where_the_results_are(aws, capsys) -> None:
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # Step Functions finishes the run while the command waits
        polls.append(seconds)
        succeed(f"arn:aws:states:{REGION}:{DEFAULT_ACCOUNT_ID}:execution:{PREFIX}-batch:nightly-1")

    code = batch_transform.main(
        ["start", "--env-prefix", PREFIX, "--name", "nightly-1", "--wait", "--poll", "5"], session=aws, sleep=sleep
    )
    out = capsys.readouterr().out
    assert code == 0 and polls == [5.0]
    assert "execution nightly-1: SUCCEEDED" in out
    assert f"output  s3://{BUCKET}/batch/output/nightly-1/" in out
    assert f"model   {PREFIX}-endpoint-1-0-0-35eb4e84" in out


def test_wait_gives_up_after_the_timeout_with_exit_1(aws, capsys) -> None:
    code = batch_transform.main(
        ["start", "--env-prefix", PREFIX, "--wait", "--poll", "10", "--timeout", "20"],
        session=aws,
        sleep=lambda s: None,
    )
    out = capsys.readouterr().out
    assert code == 1 and "RUNNING" in out and "still running after 20 s" in out


def test_status_of_a_failed_job_names_sagemakers_reason(aws, capsys) -> None:
    batch_transform.main(["start", "--env-prefix", PREFIX, "--name", "broken"], session=aws)
    arn = started_arn(capsys.readouterr().out)
    reason = "ClientError: See job logs for more information (input1.csv: ClientError: 400)"
    fail_job(arn, reason)
    for target in (["status", arn], ["status", "broken", "--env-prefix", PREFIX]):
        assert batch_transform.main(target, session=aws) == 1
        out = capsys.readouterr().out
        assert "execution broken: FAILED" in out and "error   States.TaskFailed" in out
        assert f"job     {PREFIX}-batch-0b9f (Failed)" in out and f"reason  {reason}" in out


def test_status_of_an_input_the_state_machine_refused(aws, capsys) -> None:
    batch_transform.main(
        ["start", "--env-prefix", PREFIX, "--name", "elsewhere", "--input", "s3://other/x/"], session=aws
    )
    run = execution(started_arn(capsys.readouterr().out))
    run.status, run.stop_date, run.error = "FAILED", NOW, "InvalidInput"
    run.cause = f"input must be an S3 prefix under s3://{BUCKET}/batch/input/"
    assert batch_transform.main(["status", run.execution_arn], session=aws) == 1
    out = capsys.readouterr().out
    assert "error   InvalidInput" in out and f"cause   input must be an S3 prefix under s3://{BUCKET}" in out


def test_status_of_a_running_execution_is_exit_0(aws, capsys) -> None:
    batch_transform.main(["start", "--env-prefix", PREFIX, "--name", "now"], session=aws)
    capsys.readouterr()
    assert batch_transform.main(["status", "now", "--env-prefix", PREFIX], session=aws) == 0
    assert "execution now: RUNNING" in capsys.readouterr().out


def test_missing_state_machine_or_execution_is_exit_2_with_what_to_check(aws, capsys) -> None:
    assert batch_transform.main(["start", "--env-prefix", "mlapi-staging"], session=aws) == 2
    err = capsys.readouterr().err
    assert "no state machine mlapi-staging-batch" in err and "batch.enabled" in err
    assert batch_transform.main(["status", "never-ran", "--env-prefix", PREFIX], session=aws) == 2
    assert "no execution arn:aws:states:eu-west-1:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["start", "--env-prefix", "dev"], "is not a resource prefix"),
        (["start", "--env-prefix", PREFIX, "--input", f"s3://{BUCKET}/batch/input"], "is not an S3 prefix"),
        (["start", "--env-prefix", PREFIX, "--input", "/local/dir/"], "is not an S3 prefix"),
        (["start", "--env-prefix", PREFIX, "--name", "has space"], "--name"),
        (["start", "--env-prefix", PREFIX, "--poll", "0"], "--poll"),
        (["status", "just-a-name"], "with --env-prefix"),
    ],
)
def test_usage_errors_exit_2_before_calling_aws(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        batch_transform.main(argv, session=object())  # any AWS call would fail on this session
    assert raised.value.code == 2 and message in capsys.readouterr().err


def test_aws_errors_exit_3(aws, capsys) -> None:
    # Step Functions refuses a malformed execution ARN (InvalidArn): an AWS error, not a missing execution.
    assert batch_transform.main(["status", "arn:aws:states:eu-west-1:not-an-execution"], session=aws) == 3
    assert capsys.readouterr().err.startswith("batch_transform: AWS error: ")


def test_status_of_a_finished_run_says_what_each_output_line_holds_for_the_models_task(
    aws, capsys, model_package
) -> None:
    fields = output_fields(ModelCard.load(model_package))
    assert batch_transform.main(["start", "--env-prefix", PREFIX, "--name", "run-fields"], session=aws) == 0
    arn = started_arn(capsys.readouterr().out)
    succeed(arn, fields)
    assert batch_transform.main(["status", arn], session=aws) == 0
    assert f"  fields  {fields}" in capsys.readouterr().out.splitlines()
    # An execution of a state machine from before output_fields says so rather than guess.
    assert batch_transform.main(["start", "--env-prefix", PREFIX, "--name", "run-old"], session=aws) == 0
    arn = started_arn(capsys.readouterr().out)
    succeed(arn, None)
    assert batch_transform.main(["status", arn], session=aws) == 0
    assert "not reported: a state machine older than output_fields" in capsys.readouterr().out
