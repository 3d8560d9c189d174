"""The drift baseline lands where the drift job reads it, under the model version."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from scripts.publish_baseline import main, publish


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "metadata.json").write_text(json.dumps({"model_version": "1.2.3"}))
    (tmp_path / "baseline.csv").write_text("1.0,2.0\n3.0,4.0\n")
    return tmp_path


REGION = "eu-west-1"


def aws_managed_key_when_none_is_named(aws_managed_key: str) -> Callable[..., None]:
    """S3's documented choice of key, which moto does not model (it applies the bucket default either way):
    `aws:kms` without a key id is encrypted with the AWS managed key aws/s3 (PutObject API reference,
    x-amz-server-side-encryption-aws-kms-key-id); only a request naming no encryption gets the bucket default
    (ServerSideEncryptionByDefault)."""

    def choose(params: dict[str, Any], **_: Any) -> None:
        if params.get("ServerSideEncryption") == "aws:kms" and not params.get("SSEKMSKeyId"):
            params["SSEKMSKeyId"] = aws_managed_key

    return choose


@pytest.fixture
def data_key_bucket() -> Iterator[tuple[Any, str]]:
    """An artifacts bucket like DataStores makes it: SSE-KMS by default with the data key and a bucket key."""
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        data_key = kms.create_key(Description="mlapi-dev data key")["KeyMetadata"]["Arn"]
        aws_managed = kms.create_key(Description="stand-in for aws/s3")["KeyMetadata"]["Arn"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_encryption(
            Bucket="artifacts",
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": data_key},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
        for operation in ("PutObject", "CreateMultipartUpload"):
            s3.meta.events.register(
                f"before-parameter-build.s3.{operation}", aws_managed_key_when_none_is_named(aws_managed)
            )
        yield s3, data_key


def test_every_object_is_encrypted_with_the_buckets_data_key(dist: Path, data_key_bucket: tuple[Any, str]) -> None:
    # The drift job, the model gate and other accounts' readers are granted the data key, not aws/s3.
    s3, data_key = data_key_bucket
    contract = dist / "contract"
    contract.mkdir()
    (contract / "openapi.json").write_text("{}")
    keys = publish(dist, "artifacts", s3, contract_dir=contract)
    assert len(keys) == 3
    for key in keys:
        head = s3.head_object(Bucket="artifacts", Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", data_key), key
        assert head["BucketKeyEnabled"] is True, key


@mock_aws
def test_uploads_under_the_model_version(dist: Path) -> None:
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    contract = dist / "contract"
    contract.mkdir()
    (contract / "request.schema.json").write_text("{}")
    assert publish(dist, "artifacts", s3, contract_dir=contract) == [
        "baselines/1.2.3/metadata.json",
        "baselines/1.2.3/baseline.csv",
        "baselines/1.2.3/contract/request.schema.json",
    ]
    body = s3.get_object(Bucket="artifacts", Key="baselines/1.2.3/baseline.csv")["Body"].read()
    assert body == b"1.0,2.0\n3.0,4.0\n"


def test_missing_build_fails_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bucket", "artifacts", "--dist", str(tmp_path)]) == 1
    assert "build the model first" in capsys.readouterr().err


@mock_aws
def test_missing_bucket_is_reported_not_raised(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bucket", "no-such-bucket", "--dist", str(dist)]) == 1
    assert "publish_baseline:" in capsys.readouterr().err
