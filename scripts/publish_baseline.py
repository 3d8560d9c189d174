"""Upload a model build's drift baseline to the artifacts bucket, where the drift job looks for it.

    python scripts/publish_baseline.py --bucket mlapi-dev-artifacts-<account>-<region> [--dist model_container/dist]

Writes s3://BUCKET/baselines/<model_version>/{metadata.json, baseline.csv[, baseline_predictions.csv]} and
the API contract under .../contract/.
The pipeline runs it before the endpoint update; run it by hand after a manual `cdk deploy`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

FILES = ("metadata.json", "baseline.csv", "baseline_predictions.csv")
REQUIRED = FILES[:2]
# The API contract travels with the model version, so the next model gate can tell whether it changed.
CONTRACT_FILES = ("request.schema.json", "openapi.json")
CONTRACT_DIR = Path("model_container/contract")


def publish(dist: Path, bucket: str, s3_client=None, contract_dir: Path = CONTRACT_DIR) -> list[str]:  # type: ignore[no-untyped-def]
    """Upload the baseline files of the build in `dist`; returns the keys written."""
    missing = [name for name in REQUIRED if not (dist / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{dist} lacks {', '.join(missing)}: build the model first (make model)")
    version = json.loads((dist / "metadata.json").read_text())["model_version"]
    client = s3_client or boto3.client("s3")
    uploads = [(dist / name, f"baselines/{version}/{name}") for name in FILES]
    uploads += [(contract_dir / name, f"baselines/{version}/contract/{name}") for name in CONTRACT_FILES]
    keys = []
    for path, key in uploads:
        if path.is_file():
            # No encryption arguments: the bucket's default (the environment's data key, with a bucket key) applies
            # only to a request that names no server-side encryption (S3 API reference, ServerSideEncryptionByDefault).
            # `aws:kms` without a key id means the AWS managed key aws/s3 instead (PutObject API reference,
            # x-amz-server-side-encryption-aws-kms-key-id): a key whose policy admits every principal of the account
            # through S3 and no other account, outside the data key's policy and its readers' grants.
            client.upload_file(str(path), bucket, key)
            keys.append(key)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="the environment's artifacts bucket")
    parser.add_argument("--dist", type=Path, default=Path("model_container/dist"))
    args = parser.parse_args(argv)
    try:
        keys = publish(args.dist, args.bucket)
    except (FileNotFoundError, ClientError, BotoCoreError, S3UploadFailedError) as error:
        print(f"publish_baseline: {error}", file=sys.stderr)
        return 1
    for key in keys:
        print(f"s3://{args.bucket}/{key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
