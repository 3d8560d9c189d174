"""The model gate per task, over the three example packages: the card's metrics and acceptance decide, a worse
model fails naming the metric and its threshold, "no worse than live" follows each metric's direction, and a task
change needs the API's next major version."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import onnx
import pytest
from moto import mock_aws
from onnx import TensorProto, helper

from model_container.card import REGRESSION, ModelCard
from scripts.model_gate import main, worse_than_live
from tests import model_packages
from tests.release_table import create_release_table

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "model_container" / "contract"
REGION = "eu-west-1"
example_package = model_packages.example_package
AWS_ARGS = ["--endpoint", "ep", "--table", "releases", "--artifacts-bucket", "artifacts"]


def run_gate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def constant_model(card: ModelCard, value: float) -> bytes:
    """An ONNX graph of the card's shape that ignores its input: every row class 0 with uniform probabilities
    (a classifier), or `value` (a regressor)."""
    rows = [
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["n"]),
    ]
    initializers = [
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
    ]
    if card.task == REGRESSION:
        nodes = [helper.make_node("Concat", ["n", "one"], ["n1"], axis=0)]
        nodes.append(helper.make_node("ConstantOfShape", ["n1"], ["variable"], value=_float(value)))
        outputs = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])]
    else:
        k = card.classes
        initializers.append(helper.make_tensor("k", TensorProto.INT64, [1], [k]))
        nodes = [
            helper.make_node(
                "ConstantOfShape", ["n"], ["label"], value=helper.make_tensor("v", TensorProto.INT64, [1], [0])
            ),
            helper.make_node("Concat", ["n", "k"], ["nk"], axis=0),
            helper.make_node("ConstantOfShape", ["nk"], ["probabilities"], value=_float(1.0 / k)),
        ]
        outputs = [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, k]),
        ]
    graph = helper.make_graph(
        rows + nodes,
        "constant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, card.width])],
        outputs,
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _float(value: float) -> onnx.TensorProto:
    return helper.make_tensor("v", TensorProto.FLOAT, [1], [value])


def with_model(package: Path, target: Path, onnx_bytes: bytes) -> Path:
    """A copy of `package` serving `onnx_bytes`, its card's content hash updated (its recorded metrics are not)."""
    shutil.copytree(package, target)
    (target / "model.onnx").write_bytes(onnx_bytes)
    card = json.loads((target / "metadata.json").read_text())
    card["content_sha256"] = hashlib.sha256(onnx_bytes).hexdigest()
    (target / "metadata.json").write_text(json.dumps(card))
    return target


def worse_package(package: Path, target: Path) -> Path:
    card = ModelCard.load(package)
    truth = np.loadtxt(package / "holdout.csv", delimiter=",", ndmin=2)[:, 0]
    return with_model(package, target, constant_model(card, float(np.mean(truth))))


def violates(value: float, bound: dict[str, float]) -> bool:
    ((side, limit),) = bound.items()
    return value < limit if side == "min" else value > limit


def test_the_example_passes_on_its_cards_metrics_and_acceptance(
    model_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ModelCard.load(model_package)
    report = tmp_path / "gate.json"
    code, summary, err = run_gate(capsys, "--dist", str(model_package), "--report", str(report))
    assert code == 0, err
    assert summary["task"] == card.task and summary["thresholds"] == card.acceptance and card.acceptance
    assert summary["thresholds_source"] == "model card acceptance"
    assert list(summary["metrics"]) == sorted(card.metrics)  # the report's keys are sorted
    for name, higher in card.metrics.items():
        row = summary["metrics"][name]
        assert row["direction"] == ("higher is better" if higher else "lower is better")
        assert row["value"] == pytest.approx(card.holdout_metrics[name], abs=1e-6) and row["passed"] is True
        assert row["threshold"] == card.acceptance.get(name)
    # Multiclass: every class's recall is reported beside the worst one.
    for name in card.label_names if card.task == "multiclass_classification" else []:
        assert summary["holdout_metrics"][f"recall.{name}"] == pytest.approx(card.holdout_metrics[f"recall.{name}"])
    assert json.loads(report.read_text()) == summary


def test_a_worse_model_fails_naming_each_metric_under_its_threshold(
    model_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ModelCard.load(model_package)
    worse = worse_package(model_package, tmp_path / "worse")
    code, summary, err = run_gate(capsys, "--dist", str(worse))
    assert code == 1
    failing = {name for name, bound in card.acceptance.items() if violates(summary["metrics"][name]["value"], bound)}
    assert failing, "the constant model should miss at least one acceptance threshold"
    assert {f.split()[0] for f in summary["failures"]} == failing
    for name in failing:
        ((side, limit),) = card.acceptance[name].items()
        word = "under" if side == "min" else "over"
        assert f"{name} " in err and f"is {word} its threshold {limit} (acceptance.{name}.{side})" in err
        assert summary["metrics"][name]["passed"] is False


def test_a_threshold_override_applies_in_the_metrics_direction(
    model_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ModelCard.load(model_package)
    name, higher = next(iter(card.metrics.items()))
    value = card.holdout_metrics[name]
    strict = value + 0.01 if higher else value * 0.99  # just out of reach in the metric's direction
    code, summary, err = run_gate(capsys, "--dist", str(model_package), "--thresholds-kv", f"{name}={strict}")
    assert code == 1 and summary["thresholds"][name] == {("min" if higher else "max"): strict}
    assert summary["thresholds_source"] == "--thresholds over the model card's acceptance"
    assert [f.split()[0] for f in summary["failures"]] == [name]
    code, _, err = run_gate(capsys, "--dist", str(model_package), "--thresholds", '{"f1_weighted": 0.9}')
    assert code == 2 and "unknown metric(s) f1_weighted" in err and ", ".join(card.metrics) in err


def test_a_card_without_acceptance_fails_naming_the_field(
    model_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "package"
    shutil.copytree(model_package, package)
    card = json.loads((package / "metadata.json").read_text())
    del card["acceptance"]
    (package / "metadata.json").write_text(json.dumps(card))
    code, summary, _ = run_gate(capsys, "--dist", str(package))
    assert code == 1 and "model card field 'acceptance'" in summary["failures"][0]


def shifted(card: ModelCard, steps: float, tolerance: float) -> dict[str, float]:
    """The card's metrics moved `steps` tolerances in each metric's better direction."""
    return {
        name: value + steps * tolerance if card.metrics[name] else value / (1 + steps * tolerance)
        for name, value in card.holdout_metrics.items()
        if name in card.metrics
    }


def live_card(package: Path, tmp_path: Path, metrics: dict[str, float]) -> Path:
    path = tmp_path / "live-metadata.json"
    card = json.loads((package / "metadata.json").read_text())
    path.write_text(json.dumps({**card, "model_version": "0.9.0", "holdout_metrics": metrics}))
    return path


@pytest.mark.parametrize(("steps", "passes"), [(2.0, False), (0.5, True)], ids=["beyond", "within"])
def test_no_worse_than_live_follows_each_metrics_direction(
    model_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: float, passes: bool
) -> None:
    card = ModelCard.load(model_package)
    live = live_card(model_package, tmp_path, shifted(card, steps, 0.01))
    code, summary, _ = run_gate(
        capsys, "--dist", str(model_package), "--live-metrics", str(live), "--tolerance", "0.01"
    )
    assert (code == 0) is passes, summary["failures"]
    if not passes:
        assert {f.split()[0] for f in summary["failures"]} == set(card.metrics)
        for name, higher in card.metrics.items():
            words = "higher is better" if higher else "lower is better"
            assert any(f.startswith(f"{name} ") and f"({words}) by more than the tolerance" in f
                       for f in summary["failures"])  # fmt: skip


def test_the_tolerance_is_a_drop_for_scores_and_a_fraction_for_errors() -> None:
    # Higher is better (accuracy, R²): an absolute drop of the tolerance.
    assert not worse_than_live(0.95, 0.955, True, 0.01) and worse_than_live(0.94, 0.955, True, 0.01)
    # Lower is better (RMSE, MAE in the target's unit): a fraction of the live value, whatever the unit's scale.
    assert not worse_than_live(50.4, 50.0, False, 0.01) and worse_than_live(50.6, 50.0, False, 0.01)
    assert not worse_than_live(100_400.0, 100_000.0, False, 0.01) and worse_than_live(0.0102, 0.01, False, 0.01)


# ---- the live model on AWS (moto): published as publish_baseline.py does -------------------------------------
def publish_live(package: Path, *, strip_task: bool = False) -> None:
    from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status
    from scripts.publish_baseline import publish

    if strip_task:  # a release older than the card's `task` field
        card = json.loads((package / "metadata.json").read_text())
        del card["task"]
        (package / "metadata.json").write_text(json.dumps(card))
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    publish(package, "artifacts", s3, contract_dir=CONTRACT)
    card = json.loads((package / "metadata.json").read_text())
    table = create_release_table(boto3.resource("dynamodb", region_name=REGION), "releases")
    ReleaseRepository(table, "ep").register(
        Release(
            "ep-live", "ep", Status.LIVE, "2026-01-01T00:00:00Z", model_version=card["model_version"],
            model_hash=card["content_sha256"][:16],
        )
    )  # fmt: skip


@mock_aws
def test_the_live_model_is_scored_on_the_candidates_holdout_and_a_worse_candidate_fails(
    model_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    card = ModelCard.load(model_package)
    live = tmp_path / "live"
    shutil.copytree(model_package, live)
    publish_live(live)
    code, summary, err = run_gate(capsys, "--dist", str(model_package), *AWS_ARGS)
    assert code == 0, err
    assert summary["live"]["task"] == card.task
    assert summary["live"]["metrics"] == summary["holdout_metrics"]  # the same model on the same rows
    worse = worse_package(model_package, tmp_path / "worse")
    code, summary, err = run_gate(capsys, "--dist", str(worse), *AWS_ARGS)
    assert code == 1
    compared = [f.split()[0] for f in summary["failures"] if "worse than the live model's" in f]
    assert compared and set(compared) <= set(card.metrics)
    for name in compared:
        assert summary["metrics"][name]["live"] == pytest.approx(card.holdout_metrics[name], abs=1e-6)


@pytest.mark.parametrize("candidate", ["wine", "diabetes"])
@mock_aws
def test_a_task_change_needs_the_next_api_major(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], candidate: str
) -> None:
    # The live release is the binary example, published before cards had `task`: it is binary.
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    live = tmp_path / "live"
    shutil.copytree(example_package("breast_cancer"), live)
    publish_live(live, strip_task=True)
    package = example_package(candidate)
    task = ModelCard.load(package).task
    current = tmp_path / "contract"
    shutil.copytree(CONTRACT, current, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    code, summary, err = run_gate(capsys, "--dist", str(package), "--contract", str(current), *AWS_ARGS)
    assert code == 1
    assert summary["live"]["task"] == "binary_classification" and summary["live"]["metrics"] is None
    assert (
        summary["live"]["metrics_source"]
        == f"not compared: the live model is binary_classification, the candidate {task}"
    )
    assert summary["task_change"] == {
        "changed": True, "task": task, "live_task": "binary_classification", "version_bumped": False,
        "api_major": {"previous": 1, "current": 1},
    }  # fmt: skip
    assert f"task: the live model is binary_classification (answers label, probability), this model is {task}" in err
    assert "set api.version in cdk.json (ml-platform.defaults.api.version) to 2" in err
    # What api.version 2 generates: info.version 2.0.0 and the path /v2/predict.
    openapi = json.loads((current / "openapi.json").read_text())
    openapi["info"]["version"] = "2.0.0"
    openapi["paths"] = {"/v2/predict": next(iter(openapi["paths"].values()))}
    (current / "openapi.json").write_text(json.dumps(openapi))
    code, summary, err = run_gate(capsys, "--dist", str(package), "--contract", str(current), *AWS_ARGS)
    assert not any(f.startswith("task:") for f in summary["failures"]), err
    assert summary["task_change"]["version_bumped"] is True


def test_a_live_card_without_task_is_binary_and_compared_with_a_binary_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = example_package("breast_cancer")
    card = json.loads((package / "metadata.json").read_text())
    del card["task"]
    live = tmp_path / "live.json"
    live.write_text(json.dumps(card))
    code, summary, err = run_gate(capsys, "--dist", str(package), "--live-metrics", str(live))
    assert code == 0, err
    assert summary["live"]["task"] == "binary_classification" and summary["task_change"]["changed"] is False
    assert all("live" in row for row in summary["metrics"].values())
