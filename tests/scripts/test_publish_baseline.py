"""The model package (card, model, drift baseline, holdout) lands where the drift job and the model gate read it, keyed
on the model's content hash, written once and never overwritten."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from model_container.card import ModelCard
from scripts.publish_baseline import FILES, baseline_root, main, publish


def make_build(root: Path, model: bytes = b"onnx-bytes", version: str = "1.2.3", commit: str = "c1") -> Path:
    """A two-feature binary package as publish_baseline reads it (the bytes of model.onnx stand in for a model)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(model)
    features = [{"name": n, "type": "number", "minimum": 0, "maximum": 10} for n in ("width", "height")]
    metadata = {
        "model_name": "two-feature-model",
        "model_version": version,
        "content_sha256": sha(model),
        "feature_schema": {"features": features, "max_batch_rows": 100},
        "labels": {"0": "no", "1": "yes"},
        "lineage": {"code_commit": commit},
    }
    (root / "metadata.json").write_text(json.dumps(metadata))
    (root / "baseline.csv").write_text("1.0,2.0\n3.0,4.0\n")
    (root / "baseline_predictions.csv").write_text("0.250000\n0.750000\n")
    (root / "holdout.csv").write_text("0,1.5,2.5\n1,3.5,4.5\n")
    return root


def sha(model: bytes) -> str:
    return hashlib.sha256(model).hexdigest()


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    return make_build(tmp_path / "dist")


def contract_dir(tmp_path: Path, **files: str) -> Path:
    target = tmp_path / "contract"
    target.mkdir(exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text)
    return target


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


def test_every_object_is_encrypted_with_the_buckets_data_key(
    dist: Path, tmp_path: Path, data_key_bucket: tuple[Any, str]
) -> None:
    # The drift job, the model gate and other accounts' readers are granted the data key, not aws/s3.
    s3, data_key = data_key_bucket
    keys = publish(dist, "artifacts", s3, contract_dir=contract_dir(tmp_path, **{"openapi.json": "{}"}))
    assert len(keys) == len(FILES) + 2  # the package's files, the contract, the version index
    for key in keys:
        head = s3.head_object(Bucket="artifacts", Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", data_key), key
        assert head["BucketKeyEnabled"] is True, key


@pytest.fixture
def bucket() -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
        yield s3


def test_uploads_under_the_models_content_hash_with_a_version_index(dist: Path, tmp_path: Path, bucket: Any) -> None:
    digest = sha(b"onnx-bytes")
    contract = contract_dir(tmp_path, **{"request.schema.json": "{}"})
    assert publish(dist, "artifacts", bucket, contract_dir=contract) == [
        *(f"baselines/{digest}/{name}" for name in FILES),
        f"baselines/{digest}/contract/request.schema.json",
        f"baselines/_versions/1.2.3/{digest}",
    ]
    body = bucket.get_object(Bucket="artifacts", Key=f"baselines/{digest}/baseline.csv")["Body"].read()
    assert body == b"1.0,2.0\n3.0,4.0\n"
    assert bucket.get_object(Bucket="artifacts", Key=f"baselines/{digest}/model.onnx")["Body"].read() == b"onnx-bytes"


def test_a_candidate_with_the_same_version_leaves_the_live_models_baseline_alone(
    tmp_path: Path, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 13 item 11: every default build is 1.0.0; a candidate published before its deploy (then rejected or
    # rolled back) must not replace the baseline the drift job compares the live model's traffic with.
    live = make_build(tmp_path / "live", model=b"live-model", version="1.0.0")
    candidate = make_build(tmp_path / "candidate", model=b"candidate-model", version="1.0.0")
    (candidate / "baseline.csv").write_text("9.0,9.0\n")
    contract = contract_dir(tmp_path)
    assert main(["--bucket", "artifacts", "--dist", str(live), "--contract", str(contract)]) == 0
    assert main(["--bucket", "artifacts", "--dist", str(candidate), "--contract", str(contract)]) == 0
    read = bucket.get_object(Bucket="artifacts", Key=f"baselines/{sha(b'live-model')}/baseline.csv")["Body"].read()
    assert read == b"1.0,2.0\n3.0,4.0\n"
    listed = bucket.list_objects_v2(Bucket="artifacts", Prefix="baselines/_versions/1.0.0/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == sorted([sha(b"live-model"), sha(b"candidate-model")])


def test_a_retried_run_changes_nothing_and_a_rebuild_of_the_same_model_keeps_the_first_metadata(
    dist: Path, tmp_path: Path, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = contract_dir(tmp_path)
    argv = ["--bucket", "artifacts", "--dist", str(dist), "--contract", str(contract)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0  # the retry of a step that failed after its upload
    assert all(line.endswith(" unchanged") for line in capsys.readouterr().out.splitlines())
    # The same model built again at another commit: metadata.json differs by its commit only; the first stays.
    rebuilt = make_build(tmp_path / "rebuilt", commit="c2")
    assert main(["--bucket", "artifacts", "--dist", str(rebuilt), "--contract", str(contract)]) == 0
    out = capsys.readouterr().out
    assert f"baselines/{sha(b'onnx-bytes')}/metadata.json kept" in out
    metadata = bucket.get_object(Bucket="artifacts", Key=f"baselines/{sha(b'onnx-bytes')}/metadata.json")
    assert json.loads(metadata["Body"].read())["lineage"]["code_commit"] == "c1"


def test_different_bytes_under_a_published_models_key_are_refused(
    dist: Path, tmp_path: Path, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = contract_dir(tmp_path)
    assert main(["--bucket", "artifacts", "--dist", str(dist), "--contract", str(contract)]) == 0
    (dist / "baseline.csv").write_text("5.0,5.0\n")  # same model hash, other baseline data
    assert main(["--bucket", "artifacts", "--dist", str(dist), "--contract", str(contract)]) == 1
    err = capsys.readouterr().err
    assert f"baselines/{sha(b'onnx-bytes')}/baseline.csv exists with different bytes: refusing to overwrite" in err
    body = bucket.get_object(Bucket="artifacts", Key=f"baselines/{sha(b'onnx-bytes')}/baseline.csv")["Body"].read()
    assert body == b"1.0,2.0\n3.0,4.0\n"


def test_a_model_that_is_not_the_one_described_is_refused(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dist / "model.onnx").write_bytes(b"tampered")
    assert main(["--bucket", "artifacts", "--dist", str(dist)]) == 1
    assert "model.onnx does not match metadata.json content_sha256" in capsys.readouterr().err


def test_missing_build_fails_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bucket", "artifacts", "--dist", str(tmp_path)]) == 1
    assert "build the model first" in capsys.readouterr().err


@mock_aws
def test_missing_bucket_says_the_step_runs_before_the_data_stack(
    dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # S3 API reference, Error responses: NoSuchBucket. On a first run the Data stack has not created it yet.
    assert main(["--bucket", "no-such-bucket", "--dist", str(dist)]) == 1
    err = capsys.readouterr().err
    assert "bucket no-such-bucket does not exist: the environment's Data stack creates it" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("operation", "code", "status"), [("PutObject", "AccessDenied", 403), ("PutObject", "SlowDown", 503)]
)
def test_other_s3_errors_fail_naming_the_object(
    dist: Path, bucket: Any, aws_error: Any, capsys: pytest.CaptureFixture[str], operation: str, code: str, status: int
) -> None:
    aws_error("s3", operation, code, status)
    assert main(["--bucket", "artifacts", "--dist", str(dist)]) == 1
    err = capsys.readouterr().err
    assert f"writing s3://artifacts/baselines/{sha(b'onnx-bytes')}/metadata.json: {code}" in err


def test_every_task_publishes_its_whole_package_and_the_card_names_the_task(
    model_package: Path, tmp_path: Path, bucket: Any
) -> None:
    # The drift job reads the task, the features and the class names from the published card.
    card = ModelCard.load(model_package)
    keys = publish(model_package, "artifacts", bucket, contract_dir=contract_dir(tmp_path))
    root = baseline_root(card.content_sha256)
    assert [key for key in keys if key.startswith(root)] == [root + name for name in FILES]
    for name in FILES:
        body = bucket.get_object(Bucket="artifacts", Key=root + name)["Body"].read()
        assert body == (model_package / name).read_bytes(), name
    published = json.loads(bucket.get_object(Bucket="artifacts", Key=root + "metadata.json")["Body"].read())
    assert ModelCard.from_dict(published).task == card.task and published["task"] == card.task


@pytest.mark.parametrize(
    ("name", "text", "found", "expected"),
    [
        ("baseline.csv", "1.0,2.0,3.0\n", 3, 2),
        ("baseline_predictions.csv", "0.2,0.8\n", 2, 1),  # two classes' probabilities: binary publishes P(yes)
        ("holdout.csv", "1.0,2.0\n", 2, 3),
    ],
)
def test_a_csv_of_another_width_than_the_card_is_refused(
    dist: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, found: int, expected: int
) -> None:
    (dist / name).write_text(text)
    assert main(["--bucket", "artifacts", "--dist", str(dist)]) == 1
    err = capsys.readouterr().err
    assert f"{name} has {found} columns; a binary_classification model with 2 features" in err
    assert f"has {expected}" in err


def test_an_invalid_card_is_refused_naming_the_field(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = json.loads((dist / "metadata.json").read_text())
    card["task"] = "ranking"
    (dist / "metadata.json").write_text(json.dumps(card))
    assert main(["--bucket", "artifacts", "--dist", str(dist)]) == 1
    assert "model card field 'task'" in capsys.readouterr().err
