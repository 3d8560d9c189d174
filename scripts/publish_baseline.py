"""Upload a model package (its card, model, drift baseline and holdout) to the artifacts bucket, keyed on the model's
content hash.

    python -m scripts.publish_baseline --bucket mlapi-dev-artifacts-<account>-<region> [--dist model_container/dist]

Writes s3://BUCKET/baselines/<content_sha256>/{metadata.json, baseline.csv, baseline_predictions.csv, holdout.csv,
model.onnx} and the API contract under .../contract/, where content_sha256 is the card's hash of model.onnx. Any task
(binary, multiclass, regression): the card (metadata.json) says which, and the drift job reads the task, the
feature names and the class names from the published card. The package is checked first: a valid card
(model_container/card.py), model.onnx matching its hash, and CSVs whose widths are the card's (baseline.csv the
features; baseline_predictions.csv one column, or one per class for multiclass; holdout.csv the label or target
first, then the features). And an index
entry baselines/_versions/<model_version>/<content_sha256>, so a reader that knows only the version finds the
hashes published for it. Every key is written once (a conditional PutObject, If-None-Match: *) and never
overwritten: a retried or repeated run of the same model finds its objects and changes nothing, so the live
model's baseline survives a candidate that is published and then rejected or rolled back.

The pipeline runs it before the endpoint update, after the environment's Data stack (which creates the bucket);
run it by hand after a manual `cdk deploy`. Exit 0 published (or already published), 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from model_container.card import MULTICLASS, CardError, ModelCard

PREFIX = "baselines/"
VERSION_INDEX = f"{PREFIX}_versions/"  # "_" never starts a model version (the drift job's version pattern)
# Files whose bytes the model determines: a second publication with other bytes under the same hash is refused. The
# holdout is not one of them: a rebuild of the same graph on fresh labels keeps the first publication's.
MODEL_FILES = ("baseline.csv", "baseline_predictions.csv", "model.onnx")
FILES = ("metadata.json", "baseline.csv", "baseline_predictions.csv", "holdout.csv", "model.onnx")
REQUIRED = FILES
# The API contract travels with the model, so the next model gate can tell whether it changed.
CONTRACT_FILES = ("request.schema.json", "openapi.json")
CONTRACT_DIR = Path("model_container/contract")
# S3 User Guide, "How to prevent object overwrites with conditional writes": If-None-Match: * fails with 412
# Precondition Failed when the key exists; a concurrent conditional write answers 409 ConditionalRequestConflict.
EXISTS = {"PreconditionFailed", "412"}
CONFLICT = {"ConditionalRequestConflict", "409"}
MISSING_BUCKET = {"NoSuchBucket"}


class PublishError(Exception):
    """The baseline cannot be published as it should be (exit 1)."""


def baseline_root(content_sha256: str) -> str:
    """Where a model's baseline lives: the drift job and the model gate read it here."""
    return f"{PREFIX}{content_sha256}/"


def version_index_key(model_version: str, content_sha256: str) -> str:
    return f"{VERSION_INDEX}{model_version}/{content_sha256}"


@dataclass(frozen=True)
class Upload:
    """One object to publish, and whether a different existing copy is a conflict (bytes that the model
    determines) or is kept as the first publication's (metadata's build commit, the contract)."""

    key: str
    body: bytes
    must_match: bool


def plan(dist: Path, contract_dir: Path = CONTRACT_DIR) -> tuple[dict[str, Any], list[Upload]]:
    missing = [name for name in REQUIRED if not (dist / name).is_file()]
    if missing:
        raise PublishError(f"{dist} lacks {', '.join(missing)}: build the model first (make model)")
    try:
        card = ModelCard.load(dist)
    except CardError as error:
        raise PublishError(str(error)) from None
    metadata, version, digest = dict(card.raw), card.version, card.content_sha256
    if hashlib.sha256((dist / "model.onnx").read_bytes()).hexdigest() != digest:
        raise PublishError(f"{dist}/model.onnx does not match metadata.json content_sha256 {digest or '(none)'}")
    check_widths(dist, card)
    root = baseline_root(digest)
    sources = [(dist / name, root + name, name in MODEL_FILES) for name in FILES]
    sources += [(contract_dir / name, f"{root}contract/{name}", False) for name in CONTRACT_FILES]
    uploads = [Upload(key, path.read_bytes(), must_match) for path, key, must_match in sources if path.is_file()]
    index = json.dumps({"model_version": version, "content_sha256": digest}, sort_keys=True).encode()
    uploads.append(Upload(version_index_key(version, digest), index, True))
    return metadata, uploads


def csv_widths(card: ModelCard) -> dict[str, int]:
    """Columns of each header-less CSV of a package, from its card."""
    scores = card.classes if card.task == MULTICLASS else 1
    return {"baseline.csv": card.width, "baseline_predictions.csv": scores, "holdout.csv": card.width + 1}


def check_widths(dist: Path, card: ModelCard) -> None:
    """The first row of each CSV has the card's width: a file of another model never reaches the drift job."""
    for name, expected in csv_widths(card).items():
        with (dist / name).open() as lines:
            first = lines.readline().strip()
        found = len(first.split(",")) if first else 0
        if found != expected:
            raise PublishError(
                f"{dist}/{name} has {found} columns; a {card.task} model with {card.width} features "
                f"(model card {card.name} {card.version}) has {expected}"
            )


def put_once(client: Any, bucket: str, upload: Upload) -> str:
    """Write the object unless its key exists; 'written', 'unchanged' (same bytes) or 'kept' (different bytes
    of a file the model does not determine). Different bytes of a model-determined file raise PublishError."""
    for _attempt in range(3):
        try:
            # No encryption arguments: the bucket's default (the environment's data key, with a bucket key) applies
            # only to a request that names no server-side encryption (S3 API reference, ServerSideEncryptionByDefault).
            # `aws:kms` without a key id means the AWS managed key aws/s3 instead (PutObject API reference,
            # x-amz-server-side-encryption-aws-kms-key-id): outside the data key's policy and its readers' grants.
            client.put_object(Bucket=bucket, Key=upload.key, Body=upload.body, IfNoneMatch="*")
            return "written"
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in CONFLICT:
                continue  # another writer of the same key: retry, as the S3 User Guide says for 409
            if code not in EXISTS:
                raise
        existing = client.get_object(Bucket=bucket, Key=upload.key)["Body"].read()
        if existing == upload.body:
            return "unchanged"
        if upload.must_match:
            raise PublishError(
                f"s3://{bucket}/{upload.key} exists with different bytes: refusing to overwrite the published "
                "baseline of this model (its content hash names other data than this build's)"
            )
        return "kept"
    raise PublishError(f"s3://{bucket}/{upload.key}: concurrent writes kept conflicting (409) after 3 attempts")


def publish(dist: Path, bucket: str, s3_client: Any = None, contract_dir: Path = CONTRACT_DIR) -> list[str]:
    """Upload the baseline files of the build in `dist`; returns the keys published (written or already there)."""
    return [key for key, _ in publish_report(dist, bucket, s3_client, contract_dir)]


def publish_report(
    dist: Path, bucket: str, s3_client: Any = None, contract_dir: Path = CONTRACT_DIR
) -> list[tuple[str, str]]:
    """(key, outcome) of every object of the build's baseline; raises PublishError with what failed."""
    _, uploads = plan(dist, contract_dir)
    client = s3_client or boto3.client("s3")
    done = []
    for upload in uploads:
        try:
            done.append((upload.key, put_once(client, bucket, upload)))
        except ClientError as error:
            raise PublishError(_describe(error, bucket, upload.key)) from None
    return done


def _describe(error: ClientError, bucket: str, key: str) -> str:
    code = error.response.get("Error", {}).get("Code")
    if code in MISSING_BUCKET:
        # S3 API reference, Error responses: NoSuchBucket, "The specified bucket does not exist."
        return (
            f"bucket {bucket} does not exist: the environment's Data stack creates it, so this step must run after "
            "that stack's deploy"
        )
    return f"writing s3://{bucket}/{key}: {code}: {error.response.get('Error', {}).get('Message', error)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bucket", required=True, help="the environment's artifacts bucket")
    parser.add_argument("--dist", type=Path, default=Path("model_container/dist"))
    parser.add_argument("--contract", type=Path, default=CONTRACT_DIR, help="the API contract directory")
    parser.add_argument("--region")
    args = parser.parse_args(argv)
    try:
        client = boto3.Session(region_name=args.region).client("s3")
        outcomes = publish_report(args.dist, args.bucket, client, args.contract)
    except PublishError as error:
        print(f"publish_baseline: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"publish_baseline: s3://{args.bucket}/{PREFIX}: {error}", file=sys.stderr)
        return 1
    for key, outcome in outcomes:
        print(f"s3://{args.bucket}/{key} {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
