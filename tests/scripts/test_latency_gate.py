"""The latency gate serves a model package through the image's entry point, with request bodies from its card, and
enforces its p99 thresholds."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from model_container.card import ModelCard
from scripts.latency_gate import main, request_rows
from tests import model_packages


@pytest.fixture(scope="module")
def dist() -> Path:
    """The binary example package (the default model)."""
    return model_packages.example_package("breast_cancer")


def run_gate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_a_healthy_build_passes_and_the_report_has_both_runs(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "reports" / "latency.json"
    code, summary, _ = run_gate(
        capsys,
        "--dist",
        str(dist),
        "--requests",
        "300",
        "--p99-ms",
        "500",
        "--batch-p99-ms",
        "1000",
        "--report",
        str(report),
    )
    assert code == 0, summary
    assert summary["passed"] is True and summary["failures"] == []
    for name, rows in (("single_row", 1), ("batch", 100)):
        run = summary[name]
        assert run["rows_per_request"] == rows
        assert run["completed"] == 300 and run["errors"] == {}
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
    assert json.loads(report.read_text()) == summary


def test_thresholds_below_the_measured_p99_fail_the_gate(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, summary, err = run_gate(
        capsys, "--dist", str(dist), "--requests", "100", "--p99-ms", "0.001", "--batch-p99-ms", "0.001"
    )
    assert code == 1
    assert summary["passed"] is False
    assert [f.split(":")[0] for f in summary["failures"]] == ["single_row", "batch"]
    assert "over the threshold 0.001 ms" in err


def test_a_build_the_server_refuses_stops_the_gate_with_the_servers_reason(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "dist"
    shutil.copytree(dist, broken)
    (tmp_path / "model.onnx").write_bytes(b"not the model metadata.json describes")
    with tarfile.open(broken / "model.tar.gz", "w:gz") as archive:
        archive.add(dist / "metadata.json", arcname="metadata.json")
        archive.add(tmp_path / "model.onnx", arcname="model.onnx")
    code, _, err = run_gate(capsys, "--dist", str(broken), "--requests", "10", "--start-timeout-s", "3")
    assert code == 2
    assert "did not answer 200" in err and "does not match metadata.json" in err


def test_a_missing_build_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_gate(capsys, "--dist", str(tmp_path / "nowhere"))
    assert code == 2
    assert "metadata.json" in err


def test_request_rows_follow_the_card_of_every_task(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    rows = request_rows(card, 25)
    assert len(rows) == 25 and len({tuple(row) for row in rows}) == 25
    for row in rows:
        assert len(row) == card.width
        for value, feature in zip(row, card.feature_schema["features"], strict=True):
            assert feature["minimum"] <= value <= feature["maximum"], feature["name"]


def test_every_task_is_served_and_measured(model_package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = ModelCard.load(model_package)
    code, summary, err = run_gate(
        capsys, "--dist", str(model_package), "--requests", "40", "--p99-ms", "2000", "--batch-p99-ms", "4000"
    )
    assert code == 0, err
    assert summary["model"] == {"name": card.name, "version": card.version, "task": card.task, "features": card.width}
    assert summary["single_row"]["errors"] == {} and summary["batch"]["errors"] == {}


def with_max_batch_rows(package: Path, target: Path, rows: int) -> Path:
    """A copy of `package` whose card (beside the model and in model.tar.gz) caps a request at `rows`."""
    shutil.copytree(package, target)
    card = json.loads((target / "metadata.json").read_text())
    card["feature_schema"]["max_batch_rows"] = rows
    (target / "metadata.json").write_text(json.dumps(card))
    with tarfile.open(target / "model.tar.gz", "w:gz") as archive:
        archive.add(target / "metadata.json", arcname="metadata.json")
        archive.add(target / "model.onnx", arcname="model.onnx")
    return target


def test_a_batch_larger_than_the_card_accepts_is_capped_at_its_max_batch_rows(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capped = with_max_batch_rows(dist, tmp_path / "capped", 7)
    code, summary, err = run_gate(
        capsys, "--dist", str(capped), "--requests", "20", "--p99-ms", "2000", "--batch-p99-ms", "4000"
    )
    assert code == 0, err  # the container accepts every request: none is over its cap
    assert summary["batch"]["rows_per_request"] == 7
    assert summary["batch_rows"] == {"requested": 100, "max_batch_rows": 7, "used": 7}
    assert "--batch-rows 100 capped at the card's feature_schema.max_batch_rows 7" in err


def test_run_by_hand_it_uses_the_pipelines_thresholds() -> None:
    # One config of truth: without flags the gate judges as the pipeline's ModelGate step does (cdk.json).
    from scripts.latency_gate import REPO, build_parser

    gate = json.loads((REPO / "cdk.json").read_text())["context"]["ml-platform"]["pipeline"]["latency_gate"]
    args = build_parser().parse_args([])
    assert args.p99_ms == float(gate["single_row_p99_ms"])
    assert args.requests == gate["requests"] and args.concurrency == gate["concurrency"]
    assert args.batch_p99_ms == float(gate.get("batch_p99_ms", 50.0))
