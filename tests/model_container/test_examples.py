"""The three example model packages, built by the fixture of tests/model_packages.py: every file the package
contract names, read back through the card (names, counts, sizes and thresholds come from it)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from model_container import evaluation
from model_container.build_model import build, example_source
from model_container.card import REGRESSION, ModelCard, max_batch_rows

PACKAGE_FILES = {
    "baseline.csv",
    "baseline_predictions.csv",
    "holdout.csv",
    "metadata.json",
    "model.onnx",
    "model.tar.gz",
}


def read(package: Path) -> tuple[ModelCard, bytes, np.ndarray, np.ndarray, np.ndarray]:
    card = ModelCard.load(package)
    baseline = np.loadtxt(package / "baseline.csv", delimiter=",", ndmin=2)
    holdout = np.loadtxt(package / "holdout.csv", delimiter=",", ndmin=2)
    scores = np.loadtxt(package / "baseline_predictions.csv", delimiter=",", ndmin=2)
    return card, (package / "model.onnx").read_bytes(), baseline, holdout, scores


def test_the_package_has_every_file_and_a_valid_card(model_package: Path) -> None:
    assert {path.name for path in model_package.iterdir()} == PACKAGE_FILES
    card = ModelCard.load(model_package)
    raw = json.loads((model_package / "metadata.json").read_text())
    authored = json.loads(
        (
            Path(__file__).parents[2] / "model_container" / "models" / source_dir(model_package) / "model_card.json"
        ).read_text()
    )
    # The written card is the authored card plus generated fields: nothing authored is lost.
    assert {key: raw[key] for key in authored if key != "feature_schema"} == {
        key: value for key, value in authored.items() if key != "feature_schema"
    }
    assert card.content_sha256 == hashlib.sha256((model_package / "model.onnx").read_bytes()).hexdigest()
    assert raw["lineage"]["kind"] == "source" and raw["lineage"]["parent_version"] is None
    assert raw["lineage"]["parameters"] == raw["training"]
    assert card.max_batch_rows == max_batch_rows(card.feature_names, card.task, card.label_names)


def source_dir(package: Path) -> str:
    return package.parent.name  # example_package builds <root>/<example>/dist


def test_the_archive_holds_the_model_and_its_card_at_the_root(model_package: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO((model_package / "model.tar.gz").read_bytes())) as archive:
        assert archive.getnames() == ["metadata.json", "model.onnx"]
        assert archive.extractfile("model.onnx").read() == (model_package / "model.onnx").read_bytes()  # type: ignore[union-attr]
        card = archive.extractfile("metadata.json").read()  # type: ignore[union-attr]
    assert card == (model_package / "metadata.json").read_bytes()


def test_the_onnx_graph_has_the_task_s_input_and_outputs(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    graph = onnx.load(str(model_package / "model.onnx")).graph
    assert [value.name for value in graph.input] == [card.raw["onnx"]["input"]]
    assert graph.input[0].type.tensor_type.shape.dim[1].dim_value == card.width
    assert [value.name for value in graph.output] == card.output_names
    assert len(card.output_names) == (1 if card.task == REGRESSION else 2)


def test_the_csv_files_have_the_card_s_rows_and_columns(model_package: Path) -> None:
    card, _, baseline, holdout, scores = read(model_package)
    assert baseline.shape == (card.raw["training_rows"], card.width)
    assert holdout.shape == (card.holdout_metrics["rows"], card.width + 1)
    assert scores.shape == (len(baseline), card.classes if card.task == "multiclass_classification" else 1)
    features = card.feature_schema["features"]
    assert np.array_equal(baseline.min(axis=0), [f["training_min"] for f in features])
    assert np.array_equal(baseline.max(axis=0), [f["training_max"] for f in features])
    if card.is_classifier:  # a stratified holdout: every class is measured
        assert set(holdout[:, 0].astype(int)) == set(range(card.classes))
        assert np.array_equal(holdout[:, 0], np.round(holdout[:, 0]))


def test_the_baseline_predictions_are_the_model_s_scores_of_the_baseline(model_package: Path) -> None:
    card, onnx_bytes, baseline, _, scores = read(model_package)
    expected = evaluation.baseline_scores(onnx_bytes, baseline, card.task)
    assert np.allclose(scores, expected, atol=5e-7)
    if card.is_classifier:
        assert np.all((scores >= 0) & (scores <= 1))


def test_the_recorded_holdout_metrics_are_the_graph_s_and_pass_the_acceptance_with_margin(model_package: Path) -> None:
    card, onnx_bytes, _, holdout, _ = read(model_package)
    truth = holdout[:, 0].astype(np.int64) if card.is_classifier else holdout[:, 0]
    assert evaluation.score(card, onnx_bytes, holdout[:, 1:], truth) == card.holdout_metrics
    assert card.acceptance and set(card.acceptance) <= set(card.metrics)
    for metric, bound in card.acceptance.items():
        value = card.holdout_metrics[metric]
        if "min" in bound:
            assert value >= bound["min"] + 0.01 * abs(bound["min"]), (metric, value, bound)
        else:
            assert value <= bound["max"] * 0.95, (metric, value, bound)


def test_feature_ranges_widen_the_training_range_and_keep_negative_features_negative(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    for feature in card.feature_schema["features"]:
        low, high = feature["training_min"], feature["training_max"]
        assert feature["minimum"] < low <= high < feature["maximum"] or (low == 0 == feature["minimum"])
        if low >= 0:
            assert feature["minimum"] >= 0
        else:  # a centred feature (diabetes) is accepted below its training minimum
            assert feature["minimum"] < low


@pytest.mark.parametrize("example", ["breast_cancer", "wine", "diabetes"])
def test_the_same_seed_builds_byte_identical_packages(example: str, tmp_path: Path) -> None:
    from tests.model_packages import example_package

    build(tmp_path / "dist", commit="test-commit", contract_dir=tmp_path / "contract", source=example_source(example))
    original = example_package(example)
    for name in PACKAGE_FILES:
        assert (tmp_path / "dist" / name).read_bytes() == (original / name).read_bytes(), name
    assert (tmp_path / "contract" / "feature_schema.json").read_bytes() == (
        original.parent / "contract" / "feature_schema.json"
    ).read_bytes()


def test_another_seed_builds_another_model(tmp_path: Path) -> None:
    from tests.model_packages import example_package

    card = ModelCard.load(example_package("wine"))
    seed = int(card.raw["training"]["seed"]) + 1
    built = build(tmp_path / "dist", seed, commit="c", contract_dir=tmp_path / "c", source=example_source("wine"))
    assert built["training"]["seed"] == built["lineage"]["parameters"]["seed"] == seed
    assert (tmp_path / "dist" / "holdout.csv").read_bytes() != (example_package("wine") / "holdout.csv").read_bytes()
