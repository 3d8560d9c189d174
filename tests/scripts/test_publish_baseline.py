"""The drift baseline lands where the drift job reads it, under the model version."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from scripts.publish_baseline import main, publish


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "metadata.json").write_text(json.dumps({"model_version": "1.2.3"}))
    (tmp_path / "baseline.csv").write_text("1.0,2.0\n3.0,4.0\n")
    return tmp_path


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
