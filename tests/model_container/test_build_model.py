"""The model build: determinism, metrics, archive layout, metadata and the committed contract."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model_container.build_model import build, safe_identifier
from model_container.contract import FEATURE_SCHEMA_PATH

OUTPUTS = ["baseline.csv", "baseline_predictions.csv", "holdout.csv", "metadata.json", "model.onnx", "model.tar.gz"]


def test_same_seed_gives_byte_identical_outputs(model_build, tmp_path: Path) -> None:
    build(tmp_path / "dist", contract_dir=tmp_path / "contract", commit="test-commit")
    for name in OUTPUTS:
        assert (tmp_path / "dist" / name).read_bytes() == (model_build.dist / name).read_bytes(), name
    assert (tmp_path / "contract" / "feature_schema.json").read_bytes() == (
        model_build.contract / "feature_schema.json"
    ).read_bytes()


def test_committed_feature_schema_matches_a_fresh_build(model_build) -> None:
    assert FEATURE_SCHEMA_PATH.read_bytes() == (model_build.contract / "feature_schema.json").read_bytes()


def test_holdout_metrics_are_sane(model_build) -> None:
    metrics = model_build.metadata["holdout_metrics"]
    assert metrics["rows"] == 114  # 20 % stratified holdout of 569 rows
    assert metrics["accuracy"] > 0.93
    assert metrics["roc_auc"] > 0.98
    assert 0.85 < metrics["precision"] <= 1 and 0.85 < metrics["recall"] <= 1


def test_archive_has_sagemaker_layout_and_fixed_headers(model_build) -> None:
    raw = (model_build.dist / "model.tar.gz").read_bytes()
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["metadata.json", "model.onnx"]  # at the root, sorted
        for member in members:
            assert (member.mtime, member.uid, member.gid, member.mode) == (0, 0, 0, 0o644)
            assert member.isfile()
        onnx_bytes = archive.extractfile("model.onnx").read()  # type: ignore[union-attr]
        metadata = json.loads(archive.extractfile("metadata.json").read())  # type: ignore[union-attr]
    assert metadata == model_build.metadata
    assert metadata["content_sha256"] == hashlib.sha256(onnx_bytes).hexdigest()


def test_metadata_describes_the_model(model_build) -> None:
    metadata = model_build.metadata
    assert metadata["model_name"] == "breast-cancer-classifier"
    assert metadata["model_version"] == "1.0.0"
    assert metadata["training_commit"] == "test-commit"
    features = metadata["feature_schema"]["features"]
    assert len(features) == 30
    assert features[0]["name"] == "mean_radius" and features[-1]["name"] == "worst_fractal_dimension"
    for feature in features:
        assert feature["name"].isidentifier() and feature["type"] == "number" and feature["required"]
        assert feature["minimum"] <= feature["training_min"] < feature["training_max"] <= feature["maximum"]


def test_onnx_outputs_plain_tensors(model_build) -> None:
    session = ort.InferenceSession(str(model_build.dist / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = np.loadtxt(model_build.dist / "holdout.csv", delimiter=",", dtype=np.float32)
    labels, probabilities = session.run(None, {"input": rows[:, 1:]})
    assert labels.dtype == np.int64 and probabilities.shape == (len(rows), 2)  # zipmap off
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (labels == rows[:, 0]).mean() > 0.93


def test_csv_files_follow_schema_order(model_build) -> None:
    baseline = np.loadtxt(model_build.dist / "baseline.csv", delimiter=",")
    holdout = np.loadtxt(model_build.dist / "holdout.csv", delimiter=",")
    assert baseline.shape == (455, 30) and holdout.shape == (114, 31)
    assert set(np.unique(holdout[:, 0])) == {0.0, 1.0}
    features = model_build.metadata["feature_schema"]["features"]
    assert np.array_equal(baseline.min(axis=0), [f["training_min"] for f in features])


def test_baseline_predictions_score_each_baseline_row_as_the_model_does(model_build) -> None:
    import onnxruntime as ort

    baseline = np.loadtxt(model_build.dist / "baseline.csv", delimiter=",", dtype=np.float32)
    scores = np.loadtxt(model_build.dist / "baseline_predictions.csv")
    session = ort.InferenceSession(str(model_build.dist / "model.onnx"), providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, {"input": baseline})
    assert scores.shape == (len(baseline),)
    assert np.allclose(scores, probabilities[:, 1], atol=5e-7)
    assert 0.2 < (scores > 0.5).mean() < 0.8  # both classes present, as in the training data


def test_safe_identifier() -> None:
    assert safe_identifier("mean radius") == "mean_radius"
    assert safe_identifier(" Worst  fractal-dimension ") == "worst_fractal_dimension"
