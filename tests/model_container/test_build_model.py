"""The model build: determinism, metrics, archive layout, metadata and the committed contract; retraining builds
from a snapshot with lineage, the next minor version, and the "unchanged" exit; the SageMaker `train` command."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_container.build_model import (
    CONTRACT_DIR,
    EXIT_UNCHANGED,
    DatasetUnchanged,
    TrainingSource,
    build,
    check_source,
    configured_source,
    main,
    next_minor,
    sagemaker_train,
)
from model_container.contract import FEATURE_SCHEMA_PATH, load_feature_schema
from model_container.dataset import Checks, Part, assemble, load, write
from model_container.dataset.sources import FeatureContract, base_part, bundled_dataset, safe_identifier
from tests.model_packages import disagreeing_labels

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


def test_metadata_describes_the_configured_model(model_build) -> None:
    """The default build is cdk.json's model.source: its authored card plus what the build measured."""
    metadata, card = model_build.metadata, model_build.card
    authored = TrainingSource.resolve(check_source(configured_source())).card
    assert (card.name, card.version, card.task) == (authored["model_name"], authored["model_version"], authored["task"])
    assert metadata["training_commit"] == metadata["lineage"]["code_commit"] == "test-commit"
    assert card.feature_names == TrainingSource.resolve(check_source(configured_source())).data().names
    for feature in card.feature_schema["features"]:
        assert feature["name"].isidentifier() and feature["type"] == "number" and feature["required"]
        assert feature["minimum"] <= feature["training_min"] < feature["training_max"] <= feature["maximum"]


def test_safe_identifier() -> None:
    assert safe_identifier("cell size") == "cell_size"
    assert safe_identifier(" Worst  fractal-dimension ") == "worst_fractal_dimension"


# ---- retraining: a snapshot, a parent, lineage ------------------------------------------------------------------
def write_snapshot(directory: Path, fresh: int = 0, uri: str | None = None) -> Path:
    """The bundled rows plus `fresh` labelled captured rows (bundled rows moved by 1 %, inside the contract)."""
    contract = FeatureContract.from_schema(load_feature_schema())
    parts = [base_part(None, contract)]
    if fresh:
        _, x, y = bundled_dataset()
        description = {"capture_uri": "s3://capture/capture/e/AllTraffic/", "labels_uri": "s3://capture/gt/"}
        parts.append(Part("captured", x[-fresh:] * 1.01, disagreeing_labels(y[-fresh:]), description))
    write(assemble(contract.names, parts, Checks()), directory, {"snapshot_uri": uri} if uri else None)
    return directory


@dataclass(frozen=True)
class Retrained:
    dist: Path
    contract: Path
    snapshot: Path
    metadata: dict[str, Any]


@pytest.fixture(scope="module")
def retrained(model_build, tmp_path_factory: pytest.TempPathFactory) -> Retrained:
    """A retraining run on 60 fresh labels, with the default build as its parent."""
    root = tmp_path_factory.mktemp("retrained")
    snapshot = write_snapshot(root / "snapshot", fresh=60, uri="s3://artifacts/datasets/abc/")
    contract = root / "contract"
    shutil.copytree(CONTRACT_DIR, contract)
    metadata = build(
        root / "dist", commit="retrain-commit", contract_dir=contract, dataset=snapshot, parent=model_build.metadata
    )
    return Retrained(root / "dist", contract, snapshot, metadata)


def test_a_snapshot_of_the_bundled_data_alone_trains_the_default_model(model_build, tmp_path: Path) -> None:
    snapshot = write_snapshot(tmp_path / "snapshot")
    metadata = build(tmp_path / "dist", commit="test-commit", contract_dir=CONTRACT_DIR, dataset=snapshot)
    for name in ("model.onnx", "baseline.csv", "baseline_predictions.csv", "holdout.csv"):
        assert (tmp_path / "dist" / name).read_bytes() == (model_build.dist / name).read_bytes(), name
    # The default build records the source's rows as its dataset: the same hash as their snapshot.
    assert model_build.metadata["lineage"]["dataset"]["content_sha256"] == load(snapshot).content_sha256
    assert model_build.metadata["lineage"]["kind"] == "source" and metadata["lineage"]["kind"] == "snapshot"
    assert {k: v for k, v in metadata.items() if k != "lineage"} == {
        k: v for k, v in model_build.metadata.items() if k != "lineage"
    }
    assert metadata["lineage"]["parent_version"] is None
    assert metadata["model_version"] == model_build.metadata["model_version"]


def test_retraining_on_changed_data_builds_a_new_minor_version_with_its_lineage(model_build, retrained) -> None:
    metadata, parent = retrained.metadata, model_build.metadata
    assert metadata["model_version"] == next_minor(parent["model_version"])
    assert metadata["content_sha256"] != parent["content_sha256"]
    lineage = metadata["lineage"]
    snapshot = load(retrained.snapshot)
    base_rows = parent["lineage"]["dataset"]["rows"]
    assert lineage["code_commit"] == metadata["training_commit"] == "retrain-commit"
    assert lineage["dataset"]["content_sha256"] == snapshot.content_sha256
    assert lineage["dataset"]["uri"] == "s3://artifacts/datasets/abc/"
    assert [(s["source"], s["rows"]) for s in lineage["dataset"]["sources"]] == [("base", base_rows), ("captured", 60)]
    assert lineage["dataset"]["sources"][1]["labels_uri"] == "s3://capture/gt/"
    assert lineage["parameters"] == parent["training"]  # the card's seed, holdout fraction and hyperparameters
    assert lineage["parent_version"] == parent["model_version"]
    # The holdout is the same fraction of each source: the fresh labels are measured, not only trained on.
    fraction = parent["training"]["holdout_fraction"]
    fresh_held = math.ceil(60 * fraction)
    by_source = {"base": parent["holdout_metrics"]["rows"], "captured": fresh_held}
    assert lineage["holdout"] == {"rows": sum(by_source.values()), "by_source": by_source}
    holdout = np.loadtxt(retrained.dist / "holdout.csv", delimiter=",")
    fresh_x, fresh_y = snapshot.part("captured")
    fresh = {tuple(np.append(label, x)) for label, x in zip(fresh_y, fresh_x, strict=True)}
    assert sum(tuple(line) in fresh for line in holdout) == fresh_held
    assert metadata["holdout_metrics"]["rows"] == sum(by_source.values())
    assert metadata["training_rows"] == base_rows + 60 - sum(by_source.values())
    # The API does not move on retraining: the contract it was built with is the one it keeps.
    assert metadata["feature_schema"] == load_feature_schema()
    assert (retrained.contract / "feature_schema.json").read_bytes() == FEATURE_SCHEMA_PATH.read_bytes()
    with tarfile.open(retrained.dist / "model.tar.gz") as archive:
        assert json.loads(archive.extractfile("metadata.json").read()) == metadata  # type: ignore[union-attr]


def test_the_model_gate_scores_the_retrained_build_on_its_holdout(retrained) -> None:
    from scripts.model_gate import evaluate

    metadata, metrics = evaluate(retrained.dist)
    assert metadata["model_version"] == retrained.metadata["model_version"]
    assert metrics == {k: v for k, v in retrained.metadata["holdout_metrics"].items() if k != "rows"}


def test_retraining_on_unchanged_data_says_so_and_builds_nothing(
    retrained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "parent.json").write_text(json.dumps(retrained.metadata))
    args = ["--out", str(tmp_path / "dist"), "--contract-dir", str(CONTRACT_DIR), "--commit", "next-commit"]
    args += ["--dataset", str(retrained.snapshot), "--parent", str(tmp_path / "parent.json")]
    assert main(args) == EXIT_UNCHANGED == 5
    version = retrained.metadata["model_version"]
    assert f"dataset unchanged since {version}: the retrained model would be identical" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists()
    # Other parameters would train another model: that is a build, the parent's next minor.
    assert main([*args, "--holdout-fraction", "0.25"]) == 0
    assert json.loads((tmp_path / "dist" / "metadata.json").read_text())["model_version"] == next_minor(version)


def test_a_default_build_parent_is_the_bundled_dataset(model_build, tmp_path: Path) -> None:
    snapshot = write_snapshot(tmp_path / "snapshot")
    with pytest.raises(
        DatasetUnchanged, match="dataset unchanged since " + re.escape(model_build.metadata["model_version"])
    ):
        build(tmp_path / "dist", contract_dir=CONTRACT_DIR, dataset=snapshot, parent=model_build.metadata)
    assert not (tmp_path / "dist").exists()


def test_versions_and_unusable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert [next_minor(v) for v in ("1.0.0", "1.9.3", "2.0.0-rc.1")] == ["1.1.0", "1.10.0", "2.1.0"]
    (tmp_path / "parent.json").write_text(json.dumps({"model_version": "latest"}))
    snapshot = write_snapshot(tmp_path / "snapshot", fresh=5)
    base = ["--out", str(tmp_path / "dist"), "--contract-dir", str(CONTRACT_DIR)]
    assert main([*base, "--dataset", str(snapshot), "--parent", str(tmp_path / "parent.json")]) == 2
    assert "'latest' is not a version" in capsys.readouterr().err
    assert main([*base, "--dataset", str(snapshot), "--contract-dir", str(tmp_path / "none")]) == 2
    assert "cannot read the feature contract" in capsys.readouterr().err
    assert main([*base, "--parent", str(tmp_path / "parent.json")]) == 2
    assert "need --dataset" in capsys.readouterr().err
    assert main([*base, "--dataset", str(tmp_path / "missing")]) == 2
    assert "cannot read the snapshot" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists()


def test_the_sagemaker_train_command_builds_into_opt_ml_model_and_resumes_from_its_checkpoint(
    model_build, tmp_path: Path
) -> None:
    root = tmp_path / "opt-ml"
    write_snapshot(root / "input" / "data" / "training", fresh=40)
    (root / "input" / "data" / "parent").mkdir(parents=True)
    (root / "input" / "data" / "parent" / "metadata.json").write_text(json.dumps(model_build.metadata))
    (root / "input" / "config").mkdir(parents=True)
    training, version = model_build.metadata["training"], next_minor(model_build.metadata["model_version"])
    hyperparameters = {"seed": str(training["seed"]), "commit": "job-commit", "version": version}
    hyperparameters["holdout_fraction"] = repr(training["holdout_fraction"])
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    assert sagemaker_train(root) == 0
    built = json.loads((root / "model" / "metadata.json").read_text())
    assert (built["model_version"], built["training_commit"]) == (version, "job-commit")
    assert built["lineage"]["parent_version"] == model_build.metadata["model_version"]
    assert sorted(p.name for p in (root / "model").iterdir()) == OUTPUTS
    # A spot interruption restarts the container with the checkpoints SageMaker restored: no second training.
    shutil.rmtree(root / "model")
    shutil.rmtree(root / "input" / "data" / "training")
    assert sagemaker_train(root) == 0
    assert json.loads((root / "model" / "metadata.json").read_text()) == built


def test_a_failed_sagemaker_train_writes_its_reason_where_sagemaker_reads_it(tmp_path: Path) -> None:
    assert sagemaker_train(tmp_path) == 2
    assert "cannot read the snapshot" in (tmp_path / "output" / "failure").read_text()
    assert not (tmp_path / "model").exists()
