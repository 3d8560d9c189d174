"""The latency gate serves the real build through the image's entry point and enforces its p99 thresholds."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from scripts.latency_gate import main


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


def test_a_batch_larger_than_the_model_accepts_is_refused(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--dist", str(dist), "--batch-rows", "100000"])
    assert exit_info.value.code == 2
    assert "max_batch_rows" in capsys.readouterr().err
