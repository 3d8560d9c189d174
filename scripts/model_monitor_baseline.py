"""Model Monitor baseline of a model build: statistics and constraints under its model version.

    python -m scripts.model_monitor_baseline --dist model_container/dist --environment prod \
        --stack mlapi-prod-inference [--region eu-west-1] [--wait]
    (or, without --stack: --bucket --endpoint --role-arn --kms-key-arn --subnets --security-group-ids)

Any task (the model card, metadata.json, says which): the data-quality baseline is of the card's features, whatever
the model predicts; the model-quality schedule's problem type follows the card's task in the CDK construct
(ml_constructs/model_quality_monitor.py) and needs no baseline. Uploads the build's header-less baseline.csv (checked
to have the card's width) and the record preprocessor (with the version's feature order), then starts a processing
job with the SageMaker SDK's DefaultModelMonitor.suggest_baseline on the same
network and keys as the monitoring schedule; --stack reads those from the inference stack's
ModelMonitorBaseline output. Everything goes under
s3://BUCKET/model-monitor/ENDPOINT/VERSION/. Once the job has finished, list VERSION in
ml-platform.environments.ENV.monitoring.model_monitor.baselined_versions so that synth adds its schedule.
Exit codes: 0 started (or, with --wait, completed), 1 the job failed, 2 usage or unreadable build,
3 AWS error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from model_container.card import CardError, ModelCard

# Imported as a file to render, never run here: the analyzer executes it inside SageMaker.
from model_container.monitoring import record_preprocessor


class BaselineJobFailed(Exception):
    """The processing job ended in a state other than Completed (exit 1)."""


def monitor_prefix(endpoint: str, version: str) -> str:
    """Where a version's Model Monitor inputs and baseline live; the CDK construct uses the same layout."""
    return f"model-monitor/{endpoint}/{version}"


def read_build(dist: Path) -> tuple[dict[str, Any], bytes]:
    """The card (validated) and baseline.csv, whose rows must have the card's width: the analyzer names column i
    `_c{i}` and the drift alarms name feature i of the card."""
    try:
        card = ModelCard.load(dist / "metadata.json")
        baseline = (dist / "baseline.csv").read_bytes()
    except (CardError, OSError) as error:
        raise SystemExit(f"model_monitor_baseline: cannot read the build in {dist}: {error}") from None
    first = baseline.split(b"\n", 1)[0].strip()
    width = len(first.split(b",")) if first else 0
    if width != card.width:
        raise SystemExit(
            f"model_monitor_baseline: {dist}/baseline.csv has {width} columns; the model card "
            f"{card.name} {card.version} has {card.width} features"
        )
    return dict(card.raw), baseline


def upload_inputs(s3: Any, bucket: str, prefix: str, metadata: dict[str, Any], baseline: bytes, kms_key: str) -> None:
    names = [feature["name"] for feature in metadata["feature_schema"]["features"]]
    encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}
    s3.put_object(Bucket=bucket, Key=f"{prefix}/input/baseline.csv", Body=baseline, **encryption)
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}/record_preprocessor.py",
        Body=record_preprocessor.render(names).encode(),
        **encryption,
    )


def start_baseline_job(args: argparse.Namespace, prefix: str, boto_session: boto3.Session) -> None:
    """The SDK's own baseline job: the analyzer image, environment and output layout AWS maintains."""
    # Imported here: the SDK takes over a second to import and the usage errors above need none of it.
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.model_monitor import DatasetFormat, DefaultModelMonitor
    from sagemaker.core.network import NetworkConfig

    monitor = DefaultModelMonitor(
        role=args.role_arn,
        instance_count=1,
        instance_type=args.instance_type,
        volume_size_in_gb=args.volume_size_gb,
        volume_kms_key=args.kms_key_arn,
        output_kms_key=args.kms_key_arn,
        max_runtime_in_seconds=args.max_runtime_seconds,
        sagemaker_session=Session(boto_session=boto_session),
        network_config=NetworkConfig(
            enable_network_isolation=True,
            subnets=args.subnets,
            security_group_ids=args.security_group_ids,
            encrypt_inter_container_traffic=True,
        ),
        tags=[{"Key": "ModelVersion", "Value": args.version}, {"Key": "Environment", "Value": args.environment}],
    )
    monitor.suggest_baseline(
        baseline_dataset=f"s3://{args.bucket}/{prefix}/input/baseline.csv",
        dataset_format=DatasetFormat.csv(header=False),
        output_s3_uri=f"s3://{args.bucket}/{prefix}/baseline",
        job_name=args.job_name,
        wait=False,  # waited for below: the SDK's own wait raises AttributeError on a failed job (sagemaker-core 2.27)
        logs=False,
    )
    if args.wait:
        wait_for_job(boto_session.client("sagemaker"), args.job_name)


def wait_for_job(sagemaker: Any, job_name: str, delay_s: int = 30) -> None:
    """Block until the job ends; raise BaselineJobFailed unless it Completed."""
    # A Failed job ends the waiter with WaiterError too; the description below says how it ended.
    with contextlib.suppress(WaiterError):
        sagemaker.get_waiter("processing_job_completed_or_stopped").wait(
            ProcessingJobName=job_name, WaiterConfig={"Delay": delay_s, "MaxAttempts": 7200 // delay_s}
        )
    job = sagemaker.describe_processing_job(ProcessingJobName=job_name)
    if job["ProcessingJobStatus"] != "Completed":
        raise BaselineJobFailed(
            f"{job_name} is {job['ProcessingJobStatus']}: {job.get('FailureReason', 'no reason given')}"
        )


def _csv(text: str) -> list[str]:
    return [part for part in (p.strip() for p in text.split(",")) if part]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dist", type=Path, default=Path("model_container/dist"))
    parser.add_argument("--environment", required=True, help="the cdk.json environment name (for the next step)")
    parser.add_argument("--stack", help="inference stack whose ModelMonitorBaseline output gives the rest")
    parser.add_argument("--bucket", help="the environment's monitoring bucket")
    parser.add_argument("--endpoint")
    parser.add_argument("--role-arn", help="the Model Monitor role the stack creates")
    parser.add_argument("--kms-key-arn", help="the environment's data key")
    parser.add_argument("--subnets", type=_csv, help="comma-separated private subnet ids")
    parser.add_argument("--security-group-ids", type=_csv)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--instance-type")
    parser.add_argument("--volume-size-gb", type=int)
    parser.add_argument("--max-runtime-seconds", type=int)
    parser.add_argument("--job-name", help="default: <endpoint>-baseline-<version>, dots as dashes")
    parser.add_argument("--wait", action="store_true", help="wait for the job and fail if it fails")
    return parser


DEFAULTS = {"instance_type": "ml.m5.xlarge", "volume_size_gb": 20, "max_runtime_seconds": 3300}
REQUIRED = ("bucket", "endpoint", "role_arn", "kms_key_arn", "subnets", "security_group_ids")


def stack_inputs(cloudformation: Any, stack: str) -> dict[str, Any]:
    """The ModelMonitorBaseline output of the inference stack (engine model_monitor)."""
    [description] = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    for output in description.get("Outputs", []):
        if output["OutputKey"] == "ModelMonitorBaseline":
            inputs: dict[str, Any] = json.loads(output["OutputValue"])
            return inputs
    raise SystemExit(f"model_monitor_baseline: {stack} has no ModelMonitorBaseline output (engine model_monitor?)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.region:
        parser.error("--region (or AWS_REGION) is required")
    metadata, baseline = read_build(args.dist)
    session = boto3.Session(region_name=args.region)
    try:
        found = stack_inputs(session.client("cloudformation"), args.stack) if args.stack else {}
    except (ClientError, BotoCoreError) as error:
        print(f"model_monitor_baseline: {error}", file=sys.stderr)
        return 3
    for name, default in {**DEFAULTS, **{key: None for key in REQUIRED}}.items():
        if getattr(args, name) is None:  # the command line wins over the stack output
            setattr(args, name, found.get(name, default))
    missing = [f"--{name.replace('_', '-')}" for name in REQUIRED if not getattr(args, name)]
    if missing:
        parser.error(f"{', '.join(missing)} required (or --stack)")
    args.version = metadata["model_version"]
    args.job_name = args.job_name or f"{args.endpoint}-baseline-{args.version}".replace(".", "-")[:63]
    prefix = monitor_prefix(args.endpoint, args.version)
    try:
        upload_inputs(session.client("s3"), args.bucket, prefix, metadata, baseline, args.kms_key_arn)
        start_baseline_job(args, prefix, session)
    except (ClientError, BotoCoreError) as error:
        print(f"model_monitor_baseline: {error}", file=sys.stderr)
        return 3
    except BaselineJobFailed as error:
        print(f"model_monitor_baseline: the baseline job failed: {error}", file=sys.stderr)
        return 1
    summary = {
        "model_version": args.version,
        "task": ModelCard.from_dict(metadata).task,
        "features": len(metadata["feature_schema"]["features"]),
        "processing_job": args.job_name,
        "statistics": f"s3://{args.bucket}/{prefix}/baseline/statistics.json",
        "constraints": f"s3://{args.bucket}/{prefix}/baseline/constraints.json",
        "record_preprocessor": f"s3://{args.bucket}/{prefix}/record_preprocessor.py",
        "state": "completed" if args.wait else "started",
        "next": (
            f'add "{args.version}" to ml-platform.environments.{args.environment}.monitoring.model_monitor.'
            "baselined_versions in cdk.json, then deploy: synth adds the hourly schedule"
        ),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
