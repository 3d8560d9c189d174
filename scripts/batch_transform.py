"""Start a batch inference run of an environment, or show how one went.

    python -m scripts.batch_transform start --env-prefix mlapi-dev [--input s3://BUCKET/batch/input/PART/]
        [--name NAME] [--wait] [--poll 30] [--timeout 14400] [--region R] [--profile P]
    python -m scripts.batch_transform status EXECUTION [--env-prefix mlapi-dev] [--region R] [--profile P]

`start` starts an execution of the environment's `{prefix}-batch` state machine (ml_constructs/batch_inference.py):
one SageMaker Batch Transform job of the endpoint's current model over `--input` (an S3 prefix under the
environment's batch input prefix; default: all of it), written to `<output prefix><execution name>/`, one
`<file>.out` per input file with one prediction line per input line, whose fields follow the model's task (the
execution reports them as `output_fields`: text/csv binary `label,probability,model_version`, multiclass
`label,<one probability per class name>,model_version`, regression `value,model_version`; JSON Lines the objects'
keys). With --wait it follows the execution to its
end, as `status` does. `status` takes an execution ARN, or an execution name with --env-prefix, and prints its
state, its transform job and where the results are, or why it failed: the state machine's error, and for a failed
job SageMaker's FailureReason (the task's cause is the job's DescribeTransformJob record).

Exit codes: 0 succeeded (or, for `status`, still running); 1 failed, timed out or aborted (or --wait ran out of
time); 2 usage, or the state machine or execution does not exist; 3 AWS error (credentials, region, permissions).

Permissions: states:ListStateMachines, states:StartExecution on the state machine, states:DescribeExecution on
its executions; reading the results needs s3:GetObject on the output prefix and kms:Decrypt on the data key.

AWS documentation this follows: Step Functions API Reference, StartExecution (execution names: 1-80 characters,
no whitespace, brackets, wildcards or special characters; "name" must be unique for 90 days) and DescribeExecution
(status RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED | PENDING_REDRIVE; output only when SUCCEEDED; error and
cause of a failed execution).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

PREFIX = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)+")
EXECUTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
FINISHED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")


class BatchError(Exception):
    """Cannot run: no such state machine or execution, or an input the state machine would refuse."""


def state_machine_name(prefix: str) -> str:
    return f"{prefix}-batch"


def find_state_machine(sfn: Any, prefix: str) -> str:
    name = state_machine_name(prefix)
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
    raise BatchError(
        f"no state machine {name} in this account and region: is batch.enabled set for the environment in cdk.json "
        "and its inference stack deployed (and --region right)?"
    )


def execution_name(now: datetime, token: str) -> str:
    return f"manual-{now.strftime('%Y%m%dT%H%M%SZ')}-{token}"


def start(sfn: Any, machine_arn: str, *, input_uri: str | None, name: str) -> str:
    document = {} if input_uri is None else {"input": input_uri}
    response = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(document))
    return str(response["executionArn"])


def execution_arn(machine_arn: str, name: str) -> str:
    """arn:...:stateMachine:NAME -> arn:...:execution:NAME:EXECUTION (Step Functions execution ARN format)."""
    head, _, machine = machine_arn.rpartition(":stateMachine:")
    return f"{head}:execution:{machine}:{name}"


def describe(sfn: Any, arn: str) -> dict[str, Any]:
    try:
        return dict(sfn.describe_execution(executionArn=arn))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            raise BatchError(f"no execution {arn}") from None
        raise


def report(execution: dict[str, Any], out: Callable[[str], None]) -> int:
    """Print what happened to `execution` (a DescribeExecution response); the exit code it stands for."""
    status = execution["status"]
    out(f"execution {execution['name']}: {status}")
    out(
        f"  started {execution['startDate']}"
        + (f", stopped {execution['stopDate']}" if "stopDate" in execution else "")
    )
    out(f"  input   {json.loads(execution.get('input') or '{}').get('input', '(the whole input prefix)')}")
    if status == "SUCCEEDED":
        result = json.loads(execution.get("output") or "{}")
        transform = result.get("transform", {})
        out(f"  job     {transform.get('job_name', result.get('job_name'))} ({transform.get('status', '?')})")
        out(f"  model   {transform.get('model', '?')}")
        out(f"  output  {transform.get('output', result.get('output'))}  (<input file>.out per input file)")
        fields = result.get("output_fields")
        out(f"  fields  {fields}" if fields else "  fields  (not reported: a state machine older than output_fields)")
        return 0
    if status in FINISHED_BADLY:
        out(f"  error   {execution.get('error', status)}")
        for line in cause_lines(execution.get("cause")):
            out(f"  {line}")
        return 1
    return 0  # RUNNING


def cause_lines(cause: str | None) -> list[str]:
    """A failed transform task's cause is the job's DescribeTransformJob record (JSON); other causes are text."""
    if not cause:
        return []
    try:
        job = json.loads(cause)
    except json.JSONDecodeError:
        return [f"cause   {cause}"]
    if not isinstance(job, dict):
        return [f"cause   {cause}"]
    lines = []
    if "TransformJobName" in job:
        lines.append(f"job     {job['TransformJobName']} ({job.get('TransformJobStatus', '?')})")
    lines.append(f"reason  {job.get('FailureReason', cause)}")
    return lines


def follow(
    sfn: Any, arn: str, *, poll: float, timeout: float, sleep: Callable[[float], None], out: Callable[[str], None]
) -> int:
    waited = 0.0
    while True:
        execution = describe(sfn, arn)
        if execution["status"] != "RUNNING":
            return report(execution, out)
        if waited >= timeout:
            report(execution, out)
            out(f"still running after {timeout:g} s; follow it with: python -m scripts.batch_transform status {arn}")
            return 1
        sleep(poll)
        waited += poll


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.batch_transform", description=(__doc__ or "").splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start a batch transform run")
    begin.add_argument("--env-prefix", required=True, help="the environment's resource prefix, e.g. mlapi-dev")
    begin.add_argument("--input", help="an S3 prefix under the batch input prefix (default: the whole prefix)")
    begin.add_argument("--name", help="execution name (default manual-<UTC time>-<random>)")
    begin.add_argument("--wait", action="store_true", help="follow the run to its end")
    begin.add_argument("--poll", type=float, default=30.0, help="seconds between checks with --wait (default 30)")
    begin.add_argument("--timeout", type=float, default=4 * 3600.0, help="seconds --wait waits (default 14400)")
    show = commands.add_parser("status", help="show a run's state, results or failure")
    show.add_argument("execution", help="execution ARN, or execution name with --env-prefix")
    show.add_argument("--env-prefix", help="the environment's resource prefix, e.g. mlapi-dev")
    for command in (begin, show):
        command.add_argument("--region")
        command.add_argument("--profile")
    args = parser.parse_args(argv)
    if args.env_prefix is not None and not PREFIX.fullmatch(args.env_prefix):
        parser.error(f"--env-prefix {args.env_prefix!r} is not a resource prefix like mlapi-dev (<project>-<env>)")
    if args.command == "start":
        if args.input is not None and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S*/", args.input):
            parser.error(f"--input {args.input!r} is not an S3 prefix (s3://bucket/key/prefix/, ending in '/')")
        if args.name is not None and not EXECUTION_NAME.fullmatch(args.name):
            parser.error(f"--name {args.name!r}: 1-80 letters, digits, '-' or '_' (Step Functions execution names)")
        if args.poll <= 0 or args.timeout < 0:
            parser.error("--poll must be > 0 and --timeout >= 0 seconds")
    elif not args.execution.startswith("arn:") and args.env_prefix is None:
        parser.error("status: give the execution's ARN, or its name together with --env-prefix")
    return args


def main(
    argv: list[str] | None = None,
    session: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    args = parse_args(argv)
    try:
        session = session or boto3.Session(profile_name=args.profile, region_name=args.region)
        sfn = session.client("stepfunctions")
        if args.command == "start":
            machine = find_state_machine(sfn, args.env_prefix)
            name = args.name or execution_name(now(), secrets.token_hex(3))
            arn = start(sfn, machine, input_uri=args.input, name=name)
            print(f"started {arn}")
            if not args.wait:
                print(f"follow it with: python -m scripts.batch_transform status {arn}")
                return 0
            return follow(sfn, arn, poll=args.poll, timeout=args.timeout, sleep=sleep, out=print)
        arn = args.execution
        if not arn.startswith("arn:"):
            arn = execution_arn(find_state_machine(sfn, args.env_prefix), arn)
        return report(describe(sfn, arn), print)
    except BatchError as error:
        print(f"batch_transform: {error}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:
        print(f"batch_transform: AWS error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
