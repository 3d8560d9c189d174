"""Command line of the dataset builder (python -m model_container.dataset); see the package docstring."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from model_container.contract import FEATURE_SCHEMA_PATH, load_feature_schema
from model_container.dataset.snapshot import (
    MANIFEST_FILE,
    SNAPSHOT_FILE,
    Checks,
    Snapshot,
    SnapshotError,
    SnapshotRefused,
    assemble,
    write,
)
from model_container.dataset.sources import FeatureContract, base_part, captured_part, split_s3_uri

EXIT_OK, EXIT_UNUSABLE, EXIT_AWS, EXIT_REFUSED = 0, 2, 3, 4


def _window(until: str | None, days: int) -> Any:
    from model_container.dataset import drift_engine as engine

    try:
        moment = engine.parse_time(until) if until else datetime.now(UTC)
    except ValueError:
        raise SnapshotError(f"--until {until!r} is not an ISO 8601 time") from None
    end = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return engine.Window(end - timedelta(days=days), end)


def build_snapshot(args: argparse.Namespace, s3: Any) -> Snapshot:
    contract = FeatureContract.from_schema(load_feature_schema(args.contract))
    parts = [base_part(args.dataset_uri, contract, s3)]
    if args.capture_uri:
        window = _window(args.until, args.days)
        parts.append(captured_part(args.capture_uri, args.labels_uri, window, contract, s3))
    # min_class_fraction checks each class of a classifier's card; a regressor's targets have none.
    return assemble(contract.names, parts, Checks(args.min_rows, args.min_class_fraction, contract.classes))


def upload(s3: Any, snapshot: Snapshot, out: Path, prefix_uri: str, kms_key_id: str | None) -> None:
    """Content-addressed: s3://bucket/prefix/<sha256>/{snapshot.csv, manifest.json}, a SageMaker channel prefix."""
    bucket, prefix = split_s3_uri(prefix_uri.rstrip("/") + "/" + snapshot.content_sha256 + "/")
    encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
    for name in (SNAPSHOT_FILE, MANIFEST_FILE):
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=(out / name).read_bytes(), **encryption)


def sessions(region: str | None, profile: str | None, environment_region: str | None) -> tuple[Any, Any]:
    """(pipeline session, environment session). The pipeline's is the default credentials in `region`; the
    environment's (production: its release table, baselines, datasets, capture and data key, possibly in another
    account and region) goes through `profile` in `environment_region` (default `region`), as
    scripts/register_release.py does: the step's profile assumes the environment's step role (AWS SDKs and Tools
    Reference Guide, "Assume role credential provider"; ml_constructs/step_access.py). The region is passed
    explicitly: CodeBuild's AWS_REGION, the pipeline's, outranks a profile's `region` (Boto3 docs, "Session":
    region_name is "the AWS Region where you want to create new connections"). Without either, both are one."""
    import boto3

    pipeline = boto3.Session(region_name=region)
    if not (profile or environment_region):
        return pipeline, pipeline
    return pipeline, boto3.Session(profile_name=profile, region_name=environment_region or region)


def run_build(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        pipeline, environment = sessions(args.region, args.environment_profile, args.environment_region)
        snapshot = build_snapshot(args, environment.client("s3"))  # production's dataset, capture and labels
        uri = f"{args.upload.rstrip('/')}/{snapshot.content_sha256}/" if args.upload else None
        manifest = write(snapshot, args.out, {"snapshot_uri": uri} if uri else None)
        if uri:  # the pipeline's own artifacts bucket and key
            upload(pipeline.client("s3"), snapshot, args.out, args.upload, args.kms_key_id)
    except SnapshotRefused as refused:
        print(f"dataset: snapshot refused: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    except SnapshotError as error:
        print(f"dataset: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    except (ClientError, BotoCoreError) as error:
        print(f"dataset: {error}", file=sys.stderr)
        return EXIT_AWS
    summary = {
        "out": str(args.out),
        "content_sha256": manifest["content_sha256"],
        "rows": manifest["rows"],
        "label_distribution": manifest.get("label_distribution"),  # None: a regressor's targets
        "sources": {source["source"]: source["rows"] for source in manifest["sources"]},
        "snapshot_uri": manifest.get("snapshot_uri"),
    }
    print(json.dumps(summary, sort_keys=True))
    return EXIT_OK


def baseline_root(s3: Any, bucket: str, release: Any) -> str:
    """The live model's baseline folder, found as the model gate finds it (scripts/model_gate.py LiveReader):
    publish_baseline.py keys it on the model's content hash, of which the release records the first characters
    (model_hash); releases published before that live under baselines/<model_version>/."""
    if release.model_hash:
        start = f"baselines/{release.model_hash}"
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start, Delimiter="/")
        folders = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
        if len(folders) > 1:
            raise SnapshotError(f"s3://{bucket}/{start}* matches {len(folders)} baselines: {folders}")
        if folders:
            return str(folders[0])
    return f"baselines/{release.model_version}/"


def live_metadata(endpoint: str, table: Any, s3: Any, bucket: str) -> dict[str, Any] | None:
    """The live release's build metadata, where the model gate finds it (scripts/model_gate.py live_from_aws):
    the release table names the live release, publish_baseline.py put its metadata.json under baselines/."""
    from lambda_src.releases.release_history.repository import ReleaseRepository, Status

    releases = ReleaseRepository(table, endpoint).by_status(Status.LIVE)
    if not releases:
        return None
    root = baseline_root(s3, bucket, releases[0])
    body = s3.get_object(Bucket=bucket, Key=f"{root}metadata.json")["Body"].read()
    metadata: dict[str, Any] = json.loads(body)
    return metadata


def run_parent(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _, environment = sessions(args.region, args.environment_profile, args.environment_region)
        table = environment.resource("dynamodb").Table(args.table)  # production's release history and baselines
        metadata = live_metadata(args.endpoint, table, environment.client("s3"), args.bucket)
    except (ClientError, BotoCoreError) as error:
        print(f"dataset: reading the live model of {args.endpoint}: {error}", file=sys.stderr)
        return EXIT_AWS
    except SnapshotError as error:
        print(f"dataset: reading the live model of {args.endpoint}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    except ValueError as error:
        print(f"dataset: the live model's metadata.json is not JSON: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    if metadata is None:
        print(json.dumps({"live": None, "reason": f"no live release of {args.endpoint}"}))
        return EXIT_OK
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    print(json.dumps({"live": metadata.get("model_version"), "out": str(args.out)}))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_container.dataset", description="Training snapshots")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="assemble, check and write a training snapshot")
    build.add_argument("--out", type=Path, required=True, help="directory for snapshot.csv and manifest.json")
    build.add_argument("--dataset-uri", help="training.dataset_uri: CSV files under an s3:// prefix (or a directory)")
    build.add_argument("--capture-uri", help="s3://capture-bucket/capture/<endpoint>/<variant>/")
    build.add_argument("--labels-uri", help="s3://bucket/<monitoring.ground_truth_prefix>/")
    build.add_argument("--until", help="end of the capture window (ISO time, floored to the hour); default now")
    build.add_argument("--days", type=int, default=30, help="training.capture_days")
    build.add_argument("--min-rows", type=int, default=1, help="training.min_rows")
    build.add_argument("--min-class-fraction", type=float, default=0.0, help="training.min_class_fraction")
    build.add_argument("--contract", type=Path, default=FEATURE_SCHEMA_PATH, help="feature_schema.json")
    build.add_argument("--upload", help="also put the snapshot under s3://bucket/prefix/<sha256>/")
    build.add_argument("--kms-key-id", help="SSE-KMS key of the upload (default: the bucket's default key)")
    build.add_argument("--region", default=region, help="the pipeline's region (the --upload)")
    _environment_arguments(build)
    parent = commands.add_parser("parent", help="write the live model's metadata.json (the retraining parent)")
    parent.add_argument("--endpoint", required=True)
    parent.add_argument("--table", required=True, help="release history table")
    parent.add_argument("--artifacts-bucket", dest="bucket", required=True)
    parent.add_argument("--out", type=Path, required=True)
    parent.add_argument("--region", default=region)
    _environment_arguments(parent)
    return parser


def _environment_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--environment-profile", help="AWS profile for production's reads (default: the step's own)")
    command.add_argument("--environment-region", help="production's region (default: --region)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "parent":
        return run_parent(args)
    if bool(args.capture_uri) != bool(args.labels_uri):
        parser.error("--capture-uri and --labels-uri go together")
    if args.days < 1:
        parser.error("--days must be at least 1")
    return run_build(args)
