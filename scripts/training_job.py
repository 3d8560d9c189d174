"""Train a retraining snapshot as a SageMaker training job (`training.runner: sagemaker`) and fetch the build.

    python -m scripts.training_job --dataset build/snapshot [--parent build/parent.json] --out model_container/dist \
        --bucket ARTIFACTS --image-uri ACCOUNT.dkr.ecr.REGION.amazonaws.com/model-train:TAG --role-arn ROLE \
        --kms-key-arn KEY --subnets subnet-a,subnet-b --security-group-ids sg-1 [--prefix training/] \
        [--instance-type ml.m5.large] [--volume-size-gb 10] [--spot | --no-spot] [--max-runtime-seconds 3600] \
        [--max-wait-seconds 7200] [--commit SHA] [--job-name NAME] [--region eu-west-1] \
        [--environment-profile PROFILE --environment-region PROD_REGION]

Refuses before any AWS call when the snapshot is the parent's dataset (exit 5, as build_model does). Otherwise puts
the snapshot (unless its manifest already names a prefix under --bucket/--prefix) and the parent's metadata.json
under --prefix,
starts the job (the image's `train` command: python -m model_container.build_model train) in the private subnets
with network isolation, the data key on the output and the volume, checkpoints to S3 and, with --spot, managed
spot capacity; waits with boto3's waiter; downloads ModelArtifacts and unpacks the build into --out, the same
files a local build writes. Exit codes: 0 trained, 1 the job failed (its FailureReason is printed), 2 usage or
unreadable input, 3 AWS error, 5 dataset unchanged since the parent (no job started).

Every call (staging under --bucket, the job, its artefact) is in production's account, where the runner lives
(ml_constructs/training_runner.py): with --environment-profile/--environment-region they go through that profile
in that region (as scripts/register_release.py reaches an environment), else the default credentials in --region.
The runner's arguments are in the SSM parameter production's inference stack output TrainingJobArguments names
(`stack_job_arguments`, as scripts/retrain.py --training-stack reads them). --out changes only once the artefact
is a whole, checked build: a failed, stopped or unreadable job leaves it as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from model_container import build_model
from model_container.contract import load_feature_schema
from model_container.dataset import snapshot as snapshots
from model_container.dataset.cli import sessions as dataset_sessions
from model_container.dataset.sources import FeatureContract, split_s3_uri
from platform_config.settings import TRAINING_PROVISIONING_SECONDS

EXIT_FAILED, EXIT_USAGE, EXIT_AWS = 1, 2, 3
# The image's working directories ("How Amazon SageMaker AI Runs Your Training Image"; CheckpointConfig.LocalPath
# defaults to /opt/ml/checkpoints/, API reference "CheckpointConfig").
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# An on-demand job also spends time starting its instance before MaxRuntime counts (TrainingSettings budgets it).
PROVISIONING_ALLOWANCE_S = TRAINING_PROVISIONING_SECONDS
# Production's inference stack output (ml_constructs/training_runner.py JOB_ARGUMENTS_OUTPUT): the SSM parameter
# holding job_arguments() as a JSON list.
JOB_ARGUMENTS_OUTPUT = "TrainingJobArguments"


class TrainingJobFailed(Exception):
    """The job ended in a state other than Completed, or its artefact is not a build (exit 1)."""


def job_name(prefix: str, snapshot_sha256: str, now: datetime) -> str:
    """Unique per account and region, 1-63 characters of [a-zA-Z0-9-] (API reference, CreateTrainingJob)."""
    name = f"{prefix}-{snapshot_sha256[:12]}-{now:%Y%m%d%H%M%S}"
    return re.sub(r"[^a-zA-Z0-9-]", "-", name)[-63:].lstrip("-")


@dataclass(frozen=True)
class Plan:
    """What the job will train: the snapshot, the parent's metadata (a retraining run) and the version built."""

    snapshot: snapshots.Snapshot
    parent: dict[str, Any] | None
    version: str
    source: dict[str, str]


def training_job_request(
    args: argparse.Namespace, name: str, plan: Plan, snapshot_uri: str, parent_uri: str | None
) -> dict[str, Any]:
    """The CreateTrainingJob request (SageMaker API reference, "CreateTrainingJob"; Developer Guide,
    "Managed Spot Training in Amazon SageMaker AI")."""
    root = f"s3://{args.bucket}/{args.prefix}"
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": args.max_runtime_seconds}
    if args.spot:
        # "MaxWaitTimeInSeconds ... must be equal to or greater than MaxRuntimeInSeconds" (StoppingCondition).
        stopping["MaxWaitTimeInSeconds"] = args.max_wait_seconds

    def channel(channel_name: str, uri: str, content_type: str) -> dict[str, Any]:
        source = {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        return {
            "ChannelName": channel_name,
            "DataSource": {"S3DataSource": source},
            "ContentType": content_type,
            "CompressionType": "None",
        }

    channels = [channel("training", snapshot_uri, "text/csv")]
    if parent_uri:
        channels.append(channel("parent", parent_uri, "application/json"))
    return {
        "TrainingJobName": name,
        "RoleArn": args.role_arn,
        "AlgorithmSpecification": {"TrainingImage": args.image_uri, "TrainingInputMode": "File"},
        # Strings only, no secrets (API reference, HyperParameters): read by build_model.sagemaker_train.
        "HyperParameters": {
            "seed": str(args.seed),
            "holdout_fraction": repr(args.holdout_fraction),
            "commit": args.commit,
            "version": plan.version,
            # model.source: the image holds model_container/models/**, so the job imports the same entry points.
            "source": json.dumps(plan.source, sort_keys=True),
        },
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"{root}jobs/", "KmsKeyId": args.kms_key_arn},
        "ResourceConfig": {
            "InstanceType": args.instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": args.volume_size_gb,
            "VolumeKmsKeyId": args.kms_key_arn,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": args.spot,
        # Synced both ways with the container's LocalPath: a restarted spot job resumes from it.
        "CheckpointConfig": {"S3Uri": f"{root}checkpoints/{name}/", "LocalPath": CHECKPOINT_LOCAL_PATH},
        "VpcConfig": {"Subnets": args.subnets, "SecurityGroupIds": args.security_group_ids},
        # No outbound calls and no credentials in the container; SageMaker itself still moves the channels,
        # checkpoints and artefacts ("Run Training and Inference Containers in Internet-Free Mode").
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "Tags": [
            {"Key": "ModelVersion", "Value": plan.version},
            {"Key": "DatasetSha256", "Value": plan.snapshot.content_sha256},
        ],
    }


def wait_for_job(sagemaker: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Block until the job ends (boto3's training_job_completed_or_stopped waiter); raise unless Completed."""
    budget = args.max_wait_seconds if args.spot else args.max_runtime_seconds + PROVISIONING_ALLOWANCE_S
    # A Failed job ends the waiter with WaiterError too; the description below says how it ended.
    with contextlib.suppress(WaiterError):
        sagemaker.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName=name,
            WaiterConfig={"Delay": args.poll_seconds, "MaxAttempts": math.ceil(budget / args.poll_seconds) + 1},
        )
    job: dict[str, Any] = sagemaker.describe_training_job(TrainingJobName=name)
    if job["TrainingJobStatus"] != "Completed":
        raise TrainingJobFailed(f"{name} is {job['TrainingJobStatus']}: {job.get('FailureReason', 'no reason given')}")
    return job


def unpack_artifacts(s3: Any, uri: str, out: Path) -> dict[str, Any]:
    """SageMaker's model.tar.gz holds what `train` wrote to /opt/ml/model: the build, checked in a directory of its
    own and only then copied into `out` (an unreadable or mismatched artefact leaves `out` as it was)."""
    bucket, key = split_s3_uri(uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as incoming_dir:
        incoming = Path(incoming_dir)
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
                archive.extractall(incoming, filter="data")
            metadata: dict[str, Any] = json.loads((incoming / "metadata.json").read_text())
            onnx_sha256 = hashlib.sha256((incoming / "model.onnx").read_bytes()).hexdigest()
        except (OSError, ValueError, tarfile.TarError) as error:
            raise TrainingJobFailed(f"{uri} is not a model build: {error}") from None
        if onnx_sha256 != metadata.get("content_sha256"):
            raise TrainingJobFailed(f"{uri}: model.onnx is not the one metadata.json describes")
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(incoming.iterdir()):
            if path.is_file():
                shutil.copyfile(path, out / path.name)
    return metadata


class StackNotReady(Exception):
    """The inference stack has no runner yet: it does not exist, its outputs lack TrainingJobArguments, or the
    caller may not read it yet (the Synth role's grant deploys after the run's Synth step)."""


def stack_job_arguments(cloudformation: Any, ssm: Any, stack_name: str) -> list[str]:
    """This script's runner arguments: `stack_name`'s TrainingJobArguments output names the SSM parameter that holds
    them as a JSON list (AWS CLI equivalent: `aws cloudformation describe-stacks --stack-name STACK --profile
    PROFILE`, then `aws ssm get-parameter --name NAME`). Raises StackNotReady when the stack cannot have them yet,
    ClientError/BotoCoreError for any other failure."""
    try:
        [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        code, message = error.response["Error"].get("Code", ""), error.response["Error"].get("Message", "")
        # DescribeStacks answers a missing stack with ValidationError "Stack with id X does not exist".
        if code == "ValidationError" and "does not exist" in message:
            raise StackNotReady(f"{stack_name} does not exist yet") from None
        if code in ACCESS_DENIED:
            raise StackNotReady(f"this step may not read {stack_name} yet ({message})") from None
        raise
    if stack.get("StackStatus") in ("CREATE_IN_PROGRESS", "CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED"):
        raise StackNotReady(f"{stack_name} is {stack['StackStatus']}")
    names = [o["OutputValue"] for o in stack.get("Outputs") or [] if o.get("OutputKey") == JOB_ARGUMENTS_OUTPUT]
    if not names:
        raise StackNotReady(f"{stack_name} has no {JOB_ARGUMENTS_OUTPUT} output yet (training.runner was 'build')")
    try:
        value = ssm.get_parameter(Name=names[0])["Parameter"]["Value"]
    except ClientError as error:
        if error.response["Error"].get("Code") in ACCESS_DENIED:
            raise StackNotReady(f"this step may not read {names[0]} yet") from None
        raise
    return [part for argument in json.loads(value) for part in shlex.split(argument)]


ACCESS_DENIED = ("AccessDenied", "AccessDeniedException")


def _put(s3: Any, uri: str, body: bytes, kms_key: str) -> None:
    bucket, key = split_s3_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key)


def stage_inputs(s3: Any, args: argparse.Namespace, plan: Plan, name: str) -> tuple[str, str | None]:
    """(snapshot channel prefix, parent channel prefix): the snapshot by its content hash, the parent per job.

    A snapshot uploaded elsewhere (a retraining run keeps it under the pipeline's bucket) is staged again under
    --prefix datasets/: the training role (ml_constructs/training_runner.py) reads only its own prefixes."""
    staged = f"s3://{args.bucket}/{args.prefix}datasets/{plan.snapshot.content_sha256}/"
    snapshot_uri = plan.snapshot.manifest.get("snapshot_uri")
    if not snapshot_uri or not str(snapshot_uri).startswith(f"s3://{args.bucket}/{args.prefix}"):
        snapshot_uri = staged
        directory = args.dataset.parent if args.dataset.name == snapshots.SNAPSHOT_FILE else args.dataset
        for file_name in (snapshots.SNAPSHOT_FILE, snapshots.MANIFEST_FILE):
            _put(s3, snapshot_uri + file_name, (directory / file_name).read_bytes(), args.kms_key_arn)
    parent_uri = None
    if plan.parent is not None:
        parent_uri = f"s3://{args.bucket}/{args.prefix}jobs/{name}/parent/"
        _put(s3, parent_uri + "metadata.json", json.dumps(plan.parent).encode(), args.kms_key_arn)
    return snapshot_uri, parent_uri


def model_source(args: argparse.Namespace) -> dict[str, str]:
    """--source (JSON), else cdk.json's model.source: the job trains it (a pre-built package is not trained)."""
    try:
        raw = json.loads(args.source) if args.source else build_model.configured_source()
    except ValueError as error:
        raise build_model.BuildInputError(f"--source must be JSON ({error})") from None
    spec = build_model.check_source(raw)
    if "package" in spec:
        raise build_model.BuildInputError("model.source.package is a pre-built model: there is nothing to train")
    return spec


def plan(args: argparse.Namespace) -> Plan:
    """The build's inputs, checked as build_model checks them; raises DatasetUnchanged before anything starts."""
    source = build_model.TrainingSource.resolve(model_source(args))
    args.seed = source.seed if args.seed is None else args.seed
    args.holdout_fraction = source.holdout_fraction if args.holdout_fraction is None else args.holdout_fraction
    try:
        schema = load_feature_schema(args.contract_dir / "feature_schema.json")
        contract = FeatureContract.from_schema(schema, source.classes)
    except (OSError, ValueError) as error:
        raise build_model.BuildInputError(f"cannot read the feature contract in {args.contract_dir}: {error}") from None
    snapshot = build_model.load_snapshot(args.dataset, contract)
    parent = build_model.read_parent(args.parent) if args.parent else None
    if parent is None:
        return Plan(snapshot, None, args.version or str(source.card["model_version"]), dict(source.spec))
    params = build_model.parameters(args.seed, args.holdout_fraction, source.hyperparameters)
    build_model.check_changed(parent, snapshot.content_sha256, params, contract, source)
    version = args.version or build_model.next_minor(str(parent["model_version"]))
    return Plan(snapshot, parent, version, dict(source.spec))


def run(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    planned = plan(args)
    snapshot = planned.snapshot
    name = args.job_name or job_name(args.name_prefix, snapshot.content_sha256, datetime.now(UTC))
    s3, sagemaker = session.client("s3"), session.client("sagemaker")
    snapshot_uri, parent_uri = stage_inputs(s3, args, planned, name)
    sagemaker.create_training_job(**training_job_request(args, name, planned, snapshot_uri, parent_uri))
    job = wait_for_job(sagemaker, name, args)
    metadata = unpack_artifacts(s3, job["ModelArtifacts"]["S3ModelArtifacts"], args.out)
    return {
        "training_job": name,
        "model_version": metadata["model_version"],
        "content_sha256": metadata["content_sha256"],
        "dataset_sha256": snapshot.content_sha256,
        "holdout_metrics": metadata["holdout_metrics"],
        "spot": args.spot,
        # Managed spot savings: 1 - BillableTimeInSeconds / TrainingTimeInSeconds (Managed Spot Training guide).
        "training_seconds": job.get("TrainingTimeInSeconds"),
        "billable_seconds": job.get("BillableTimeInSeconds"),
        "out": str(args.out),
    }


def _csv(text: str) -> list[str]:
    return [part for part in (p.strip() for p in text.split(",")) if part]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="snapshot directory (model_container.dataset)")
    parser.add_argument("--parent", type=Path, help="the live model's metadata.json (a retraining run)")
    parser.add_argument("--out", type=Path, default=Path("model_container/dist"))
    parser.add_argument("--bucket", required=True, help="artifacts bucket: inputs, checkpoints and job output")
    parser.add_argument("--prefix", default="training/", help="key prefix under --bucket, ending with '/'")
    parser.add_argument("--image-uri", required=True, help="the Dockerfile's train target, in ECR")
    parser.add_argument("--role-arn", required=True, help="the training job's execution role")
    parser.add_argument("--kms-key-arn", required=True, help="the data key: inputs, output and volume")
    parser.add_argument("--subnets", type=_csv, required=True, help="comma-separated private subnet ids")
    parser.add_argument("--security-group-ids", type=_csv, required=True)
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--volume-size-gb", type=int, default=10)
    parser.add_argument("--spot", action=argparse.BooleanOptionalAction, default=True, help="training.spot")
    parser.add_argument("--max-runtime-seconds", type=int, default=3600)
    parser.add_argument("--max-wait-seconds", type=int, default=7200, help="spot only: capacity wait + runtime")
    parser.add_argument("--source", help="model.source as JSON (default: cdk.json's ml-platform.defaults.model.source)")
    parser.add_argument("--seed", type=int, default=None, help="default: the model card's training.seed")
    parser.add_argument("--holdout-fraction", type=float, default=None, help="default: the card's training one")
    parser.add_argument("--version", help="default: the parent's next minor, else the model card's model_version")
    parser.add_argument("--commit", default=os.environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION", "unknown"))
    parser.add_argument("--contract-dir", type=Path, default=build_model.CONTRACT_DIR)
    parser.add_argument("--job-name", help="default: <name-prefix>-<sha256[:12]>-<UTC time>")
    parser.add_argument("--name-prefix", default="model-train")
    parser.add_argument("--poll-seconds", type=int, default=30)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--environment-profile", help="AWS profile for production (default: the step's own)")
    parser.add_argument("--environment-region", help="production's region (default: --region)")
    return parser


def session(args: argparse.Namespace) -> Any:
    """Production's session, as the dataset builder makes it (model_container/dataset/cli.py `sessions`): the
    profile that assumes its step role in its region, or without the flags the default credentials in --region."""
    _, environment = dataset_sessions(args.region, args.environment_profile, args.environment_region)
    return environment


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.region or args.environment_region):
        parser.error("--region (or AWS_REGION) is required")
    if args.spot and args.max_wait_seconds < args.max_runtime_seconds:
        parser.error("--max-wait-seconds must be at least --max-runtime-seconds with --spot (StoppingCondition)")
    if not args.prefix.endswith("/") or args.prefix.startswith("/"):
        parser.error("--prefix must end with '/' and not start with one")
    try:
        summary = run(args, session(args))
    except build_model.DatasetUnchanged as unchanged:
        print(f"training_job: {unchanged}", file=sys.stderr)
        return build_model.EXIT_UNCHANGED
    except build_model.BuildInputError as error:
        print(f"training_job: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingJobFailed as error:
        print(f"training_job: the training job failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ClientError, BotoCoreError) as error:
        print(f"training_job: {error}", file=sys.stderr)
        return EXIT_AWS
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
