"""The drift job compares traffic with the baseline of the model that served it, found by content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from drift_engine.baseline_store import AmbiguousBaseline, BaselineNotFound, load_baseline, served_content_hash
from drift_engine.model_output import ModelOutput
from moto import mock_aws

from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status
from model_container.card import ModelCard
from scripts.publish_baseline import publish
from tests.model_packages import model_package
from tests.release_table import create_release_table

__all__ = ["model_package"]  # the imported fixture, requested by name below

BUCKET, PREFIX, ENDPOINT = "artifacts", "baselines/", "mlapi-prod-endpoint"
SCHEMA = {
    "features": [{"name": "a", "minimum": 0.0, "maximum": 10.0}, {"name": "b", "minimum": 0.0, "maximum": 10.0}],
    "max_batch_rows": 100,
}


def build(root: Path, model: bytes, version: str, baseline: str) -> tuple[Path, str]:
    """A binary model's package as publish_baseline reads it (a valid card); returns (dist, content hash)."""
    root.mkdir(parents=True)
    digest = hashlib.sha256(model).hexdigest()
    (root / "model.onnx").write_bytes(model)
    (root / "baseline.csv").write_text(baseline)
    rows = len(baseline.splitlines())
    (root / "baseline_predictions.csv").write_text("0.500000\n" * rows)
    (root / "holdout.csv").write_text("".join(f"1,{line}\n" for line in baseline.splitlines()))
    metadata = {
        "model_name": "store-test-model",
        "model_version": version,
        "task": "binary_classification",
        "labels": {"0": "no", "1": "yes"},
        "content_sha256": digest,
        "feature_schema": SCHEMA,
    }
    (root / "metadata.json").write_text(json.dumps(metadata))
    return root, digest


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        table = create_release_table(boto3.resource("dynamodb", region_name="us-east-1"), "releases")
        yield s3, table


def publish_build(s3: Any, tmp_path: Path, name: str, model: bytes, baseline: str) -> str:
    dist, digest = build(tmp_path / name, model, "1.0.0", baseline)
    publish(dist, BUCKET, s3, contract_dir=tmp_path / "no-contract")
    return digest


def release(table: Any, release_id: str, status: Status, digest: str, at: str) -> None:
    ReleaseRepository(table, ENDPOINT).register(
        Release(release_id, ENDPOINT, status, at, model_version="1.0.0", model_hash=digest[:16], status_changed_at=at)
    )


def test_the_baseline_of_the_model_that_served_is_found_although_a_candidate_shares_its_version(
    aws: tuple[Any, Any], tmp_path: Path
) -> None:
    # Issue 13 item 11: the prod candidate's baseline is published before its deploy, under the same 1.0.0; the
    # deploy is rolled back. The traffic (model_version 1.0.0) was served by the live model, not the candidate.
    s3, table = aws
    live = publish_build(s3, tmp_path, "live", b"live-model", "1.0,2.0\n")
    candidate = publish_build(s3, tmp_path, "candidate", b"candidate-model", "7.0,8.0\n")
    release(table, "cfg-candidate", Status.ROLLED_BACK, candidate, "2026-12-01T10:00:00Z")
    release(table, "cfg-live", Status.LIVE, live, "2026-11-01T10:00:00Z")

    served = served_content_hash(table, ENDPOINT, "1.0.0")
    assert served == live[:16]  # the release records the endpoint's 16-character model-hash tag
    baseline = load_baseline(s3, BUCKET, PREFIX, "1.0.0", content_hash=served)
    assert baseline.content_hash == live and baseline.values.tolist() == [[1.0, 2.0]]
    assert baseline.uri == f"s3://{BUCKET}/{PREFIX}{live}/"

    # Knowing only the version, the job cannot tell the two apart: it says so instead of picking one.
    with pytest.raises(AmbiguousBaseline, match=r"model version 1\.0\.0 has 2 published baselines"):
        load_baseline(s3, BUCKET, PREFIX, "1.0.0")


def test_a_baking_release_serves_before_a_rolled_back_one(aws: tuple[Any, Any], tmp_path: Path) -> None:
    s3, table = aws
    old = publish_build(s3, tmp_path, "old", b"old-model", "1.0,1.0\n")
    new = publish_build(s3, tmp_path, "new", b"new-model", "2.0,2.0\n")
    release(table, "cfg-old", Status.ROLLED_BACK, old, "2026-11-01T10:00:00Z")
    release(table, "cfg-new", Status.BAKING, new, "2026-12-01T10:00:00Z")
    assert served_content_hash(table, ENDPOINT, "1.0.0") == new[:16]
    assert served_content_hash(table, ENDPOINT, "2.0.0") is None


def test_one_model_under_a_version_is_found_without_the_release_history(aws: tuple[Any, Any], tmp_path: Path) -> None:
    s3, _ = aws
    digest = publish_build(s3, tmp_path, "only", b"only-model", "3.0,4.0\n")
    assert load_baseline(s3, BUCKET, PREFIX, "1.0.0").content_hash == digest


def test_an_older_publication_under_its_version_is_still_read(aws: tuple[Any, Any]) -> None:
    s3, _ = aws
    metadata = {"model_version": "0.9.0", "content_sha256": "ab" * 32, "feature_schema": SCHEMA}
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}0.9.0/metadata.json", Body=json.dumps(metadata))
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}0.9.0/baseline.csv", Body="5.0,6.0\n")
    assert load_baseline(s3, BUCKET, PREFIX, "0.9.0").uri == f"s3://{BUCKET}/{PREFIX}0.9.0/"
    with pytest.raises(BaselineNotFound):
        load_baseline(s3, BUCKET, PREFIX, "0.8.0")
    with pytest.raises(BaselineNotFound):  # a hash nothing was published under
        load_baseline(s3, BUCKET, PREFIX, "0.9.0", content_hash="cd" * 8)


def test_a_published_example_package_is_read_as_its_cards_task(aws: tuple[Any, Any], model_package: Path) -> None:
    """publish_baseline's layout for every task: the job reads the card's task and classes from metadata.json and
    baseline_predictions.csv in its width (one column, or one per class)."""
    s3, _ = aws
    card = ModelCard.load(model_package)
    publish(model_package, BUCKET, s3, contract_dir=model_package.parent / "contract")
    baseline = load_baseline(s3, BUCKET, PREFIX, card.version, content_hash=card.content_sha256)
    assert baseline.output == ModelOutput.from_metadata(dict(card.raw))
    assert (baseline.output.task, list(baseline.output.label_names)) == (card.task, card.label_names)
    assert baseline.feature_names == card.feature_names
    rows = len((model_package / "baseline.csv").read_text().splitlines())
    assert baseline.values.shape == (rows, card.width)
    scores = baseline.prediction_scores
    assert scores is not None
    assert scores.shape == ((rows, card.classes) if card.task == "multiclass_classification" else (rows,))
