"""The model gate scores the binary example on its holdout set and guards the request contract (the gate per task:
test_gate_tasks.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from model_container.card import ModelCard
from scripts.model_gate import main
from tests import model_packages
from tests.release_table import create_release_table

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "model_container" / "contract"
REGION = "eu-west-1"
# The next API major the committed contract asks for, and its row cap.
NEXT_MAJOR = int(json.loads((CONTRACT / "openapi.json").read_text())["info"]["version"].split(".")[0]) + 1
MAX_ITEMS = json.loads((CONTRACT / "request.schema.json").read_text())["properties"]["instances"]["maxItems"]


@pytest.fixture(scope="module")
def dist() -> Path:
    """The binary example package (the default model)."""
    return model_packages.example_package("breast_cancer")


def run_gate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def live_metadata(tmp_path: Path, **metrics: float) -> Path:
    path = tmp_path / "live-metadata.json"
    path.write_text(json.dumps({"model_version": "0.9.0", "holdout_metrics": metrics}))
    return path


def recorded(dist: Path) -> dict[str, float]:
    return ModelCard.load(dist).holdout_metrics


def copy_contract(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(CONTRACT, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def edit_json(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_good_model_passes_and_metrics_are_recomputed(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "reports" / "gate.json"
    code, summary, _ = run_gate(capsys, "--dist", str(dist), "--report", str(report))
    assert code == 0 and summary["passed"] is True
    card = ModelCard.load(dist)
    assert summary["task"] == "binary_classification" and summary["thresholds"] == card.acceptance
    for name in ("accuracy", "precision", "recall", "roc_auc"):
        assert summary["holdout_metrics"][name] == pytest.approx(card.holdout_metrics[name], abs=1e-6)
    assert json.loads(report.read_text()) == summary
    assert summary["trigger"] == {"retraining": False, "reason": "source change"}


def test_a_retraining_run_is_recorded_with_its_reason(
    dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ModelCard.load(dist)
    reason = f"drift on mlapi-prod-endpoint model {card.version}: {card.feature_names[0]} (psi 0.83)"
    monkeypatch.setenv("RETRAINING", "true")
    monkeypatch.setenv("RETRAINING_REASON", reason)
    _, summary, _ = run_gate(capsys, "--dist", str(dist))
    assert summary["trigger"] == {"retraining": True, "reason": reason}


def test_metadata_numbers_are_not_trusted(dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged = tmp_path / "forged"
    shutil.copytree(dist, forged)
    edit_json(forged / "metadata.json", lambda d: d["holdout_metrics"].update(accuracy=1.0, roc_auc=1.0))
    code, summary, err = run_gate(capsys, "--dist", str(forged), "--thresholds", '{"accuracy": 0.99}')
    assert code == 1 and summary["holdout_metrics"]["accuracy"] < 0.99
    assert "accuracy" in err and "under its threshold 0.99" in err


def test_threshold_above_the_model_fails_naming_the_metric(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours = recorded(dist)
    name = min(("precision", "recall"), key=lambda metric: ours[metric])  # one below 1, to set just above it
    above = round(ours[name] + (1 - ours[name]) / 2, 6)
    code, summary, err = run_gate(capsys, "--dist", str(dist), "--thresholds-kv", f"accuracy=0.5,{name}={above}")
    assert code == 1
    assert [f.split()[0] for f in summary["failures"]] == [name]
    assert f"FAILED {name}" in err and f"under its threshold {above} (acceptance.{name}.min)" in err


def test_live_model_better_by_more_than_tolerance_fails(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    better = round(recorded(dist)["accuracy"] + 0.05, 6)
    live = live_metadata(tmp_path, accuracy=better, precision=0.5, recall=0.5, roc_auc=0.5)
    code, summary, _ = run_gate(capsys, "--dist", str(dist), "--live-metrics", str(live))
    assert code == 1
    assert len(summary["failures"]) == 1 and f"worse than the live model's {better:.6f}" in summary["failures"][0]


def test_live_model_within_tolerance_passes(dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours = recorded(dist)
    live = live_metadata(tmp_path, **{k: ours[k] + 0.009 for k in ("accuracy", "precision", "recall", "roc_auc")})
    code, summary, _ = run_gate(capsys, "--dist", str(dist), "--live-metrics", str(live), "--tolerance", "0.01")
    assert code == 0, summary["failures"]


def test_unchanged_contract_passes(dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, summary, _ = run_gate(capsys, "--dist", str(dist), "--previous-contract", str(copy_contract(tmp_path, "old")))
    assert code == 0 and summary["contract"] == {"checked": True, "request_schema_changed": False}


def test_changed_contract_without_version_bump_fails(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    current = copy_contract(tmp_path, "new")
    edit_json(current / "request.schema.json", lambda d: d["properties"]["instances"].update(maxItems=10))
    code, summary, err = run_gate(
        capsys, "--dist", str(dist), "--contract", str(current), "--previous-contract", str(CONTRACT)
    )
    assert code == 1 and summary["contract"]["version_bumped"] is False
    assert f"maxItems narrowed from {MAX_ITEMS} to 10" in err and "set api.version in cdk.json" in err


def object_row(document: dict[str, Any]) -> dict[str, Any]:
    """The named-features row form of a request schema (the anyOf branch with properties)."""
    return next(form for form in document["properties"]["instances"]["items"]["anyOf"] if "properties" in form)


def first_feature(document: dict[str, Any]) -> dict[str, Any]:
    row = object_row(document)
    return row["properties"][row["required"][0]]


def prediction_item(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"]["PredictResponse"]["properties"]["predictions"]["items"]


def add_required_field(document: dict[str, Any]) -> None:
    object_row(document)["properties"]["site_code"] = {"type": "number"}
    object_row(document)["required"].append("site_code")


def remove_response_field(document: dict[str, Any]) -> None:
    item = prediction_item(document)
    del item["properties"]["model_version"]
    item["required"].remove("model_version")


# (file, change, what the failure names): each breaks a consumer of the live contract.
BREAKING = {
    "renamed-path": ("openapi.json", lambda d: d.update(paths={"/v1/score": d["paths"]["/v1/predict"]}), "/v1/predict"),
    "new-required-field": ("request.schema.json", add_required_field, "new required request field 'site_code'"),
    "removed-response-field": ("openapi.json", remove_response_field, "response field 'model_version' removed"),
    "narrowed-range": (
        "request.schema.json",
        lambda d: first_feature(d).update(maximum=first_feature(d)["maximum"] / 2),
        "maximum narrowed",
    ),
    "narrowed-type": ("request.schema.json", lambda d: first_feature(d).update(type="integer"), "type narrowed"),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_a_breaking_contract_change_without_a_major_bump_fails_naming_the_setting(
    dist: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, change, named = BREAKING[case]
    current = copy_contract(tmp_path, "new")
    edit_json(current / name, change)
    code, summary, err = run_gate(
        capsys, "--dist", str(dist), "--contract", str(current), "--previous-contract", str(CONTRACT)
    )
    assert code == 1 and summary["contract"]["version_bumped"] is False
    assert any(named in change for change in summary["contract"]["breaking_changes"])
    # The failure says what to change: the API's major version setting, to the next major.
    assert f"set api.version in cdk.json (ml-platform.defaults.api.version) to {NEXT_MAJOR}" in err


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_a_breaking_contract_change_with_a_major_bump_passes(
    dist: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, change, _ = BREAKING[case]
    current = copy_contract(tmp_path, "new")
    edit_json(current / name, change)
    # What api.version 2 generates: info.version 2.0.0 and the path /v2/predict.
    edit_json(current / "openapi.json", lambda d: d.update(paths={"/v2/predict": next(iter(d["paths"].values()))}))
    edit_json(current / "openapi.json", lambda d: d["info"].update(version="2.0.0"))
    code, summary, _ = run_gate(
        capsys, "--dist", str(dist), "--contract", str(current), "--previous-contract", str(CONTRACT)
    )
    assert code == 0, summary["failures"]
    assert summary["contract"]["version_bumped"] is True and summary["contract"]["breaking_changes"]


def add_optional_field(document: dict[str, Any]) -> None:
    object_row(document)["properties"]["site_code"] = {"type": "number"}


# Additions and widenings: every request the live contract accepted is still accepted, every field still answered.
COMPATIBLE = {
    "optional-request-field": ("request.schema.json", add_optional_field),
    "widened-range": (
        "request.schema.json",
        lambda d: first_feature(d).update(maximum=first_feature(d)["maximum"] * 2, minimum=-1),
    ),
    "more-rows": ("request.schema.json", lambda d: d["properties"]["instances"].update(maxItems=20000)),
    "optional-response-field": (
        "openapi.json",
        lambda d: prediction_item(d)["properties"].update(explanation={"type": "string"}),
    ),
    "description": ("openapi.json", lambda d: d["info"].update(description="Reworded")),
}


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_a_compatible_contract_change_passes_without_a_bump(
    dist: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, change = COMPATIBLE[case]
    current = copy_contract(tmp_path, "new")
    edit_json(current / name, change)
    code, summary, _ = run_gate(
        capsys, "--dist", str(dist), "--contract", str(current), "--previous-contract", str(CONTRACT)
    )
    assert code == 0, summary["failures"]
    assert summary["contract"]["breaking_changes"] == [] and summary["contract"]["version_bumped"] is False


@pytest.mark.parametrize("bump", ["info-major", "path"])
def test_changed_contract_with_version_bump_passes(
    dist: Path, tmp_path: Path, bump: str, capsys: pytest.CaptureFixture[str]
) -> None:
    current = copy_contract(tmp_path, "new")
    edit_json(current / "request.schema.json", lambda d: d["properties"]["instances"].update(maxItems=10))
    if bump == "info-major":
        edit_json(current / "openapi.json", lambda d: d["info"].update(version="2.0.0"))
    else:
        edit_json(current / "openapi.json", lambda d: d.update(paths={"/v2/predict": d["paths"]["/v1/predict"]}))
    code, summary, _ = run_gate(
        capsys, "--dist", str(dist), "--contract", str(current), "--previous-contract", str(CONTRACT)
    )
    assert code == 0 and summary["contract"]["version_bumped"] is True


def test_tampered_model_is_refused(dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(dist, tampered)
    (tampered / "model.onnx").write_bytes((dist / "model.onnx").read_bytes() + b"\0")
    code, _, err = run_gate(capsys, "--dist", str(tampered))
    assert code == 2 and "does not match metadata.json" in err


def test_unknown_threshold_metric_is_a_usage_error(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_gate(capsys, "--dist", str(dist), "--thresholds", '{"f1": 0.9}')
    assert code == 2 and "unknown metric(s) f1; a binary_classification model's metrics: accuracy" in err


# ---- live model from AWS: release table + published baseline metadata --------------------------------
def _table(dynamodb: Any) -> Any:
    return create_release_table(dynamodb, "releases")


@mock_aws
def test_an_older_release_published_under_its_version_is_still_read(
    dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status

    repository = ReleaseRepository(_table(boto3.resource("dynamodb", region_name=REGION)), "ep")
    aws_args = ["--dist", str(dist), "--endpoint", "ep", "--table", "releases", "--artifacts-bucket", "artifacts"]
    better = round(recorded(dist)["accuracy"] + 0.05, 6)  # an older release without model.onnx: its record counts
    code, summary, _ = run_gate(capsys, *aws_args)
    assert code == 0 and summary["live"]["skipped"].startswith("no live release")

    repository.register(
        Release(
            release_id="ep-0-9-0",
            endpoint_name="ep",
            status=Status.LIVE,
            registered_at="2026-01-01T00:00:00Z",
            model_version="0.9.0",
            live_at="2026-01-01T01:00:00Z",
        )
    )
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(
        Bucket="artifacts",
        Key="baselines/0.9.0/metadata.json",
        Body=json.dumps({"model_version": "0.9.0", "holdout_metrics": {"accuracy": better}}),
    )
    code, summary, err = run_gate(capsys, *aws_args)
    assert (
        code == 1 and summary["live"]["release_id"] == "ep-0-9-0" and summary["live"]["task"] == "binary_classification"
    )
    assert "accuracy" in err and f"live model's {better:.6f}" in err
    assert summary["contract"]["checked"] is False  # this live release published no contract

    # With the live release's contract published beside its baseline, a changed schema needs a version bump.
    old_schema = json.loads((CONTRACT / "request.schema.json").read_text())
    old_schema["properties"]["instances"]["maxItems"] *= 2  # the candidate takes fewer rows: a narrowing
    s3.put_object(Bucket="artifacts", Key="baselines/0.9.0/contract/request.schema.json", Body=json.dumps(old_schema))
    s3.put_object(
        Bucket="artifacts", Key="baselines/0.9.0/contract/openapi.json", Body=(CONTRACT / "openapi.json").read_text()
    )
    code, summary, err = run_gate(capsys, *aws_args)
    assert summary["contract"]["request_schema_changed"] is True and summary["contract"]["version_bumped"] is False
    assert "maxItems narrowed" in err and "set api.version in cdk.json" in err


# ---- first run, published baselines and AWS errors ---------------------------------------------------
AWS_ARGS = ["--endpoint", "ep", "--table", "releases", "--artifacts-bucket", "artifacts"]


def _register_live(model_version: str = "3.2.1", model_hash: str | None = None) -> None:
    from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status

    table = _table(boto3.resource("dynamodb", region_name=REGION))
    ReleaseRepository(table, "ep").register(
        Release(
            "ep-live", "ep", Status.LIVE, "2026-01-01T00:00:00Z", model_version=model_version, model_hash=model_hash
        )
    )


def _bucket() -> Any:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def _publish_live(dist: Path, tmp_path: Path, **recorded: float) -> tuple[Any, str]:
    """The live model published as publish_baseline.py does, with `recorded` holdout_metrics claimed in its
    metadata (model.onnx and so its content hash unchanged); returns (s3, baseline folder)."""
    from scripts.publish_baseline import baseline_root, publish

    live = tmp_path / "live-dist"
    shutil.copytree(dist, live)
    edit_json(live / "metadata.json", lambda d: d["holdout_metrics"].update(recorded))
    s3 = _bucket()
    publish(live, "artifacts", s3, contract_dir=CONTRACT)
    sha = json.loads((live / "metadata.json").read_text())["content_sha256"]
    _register_live(model_hash=sha[:16])  # the release records the endpoint's 16-character model-hash tag
    return s3, baseline_root(sha)


@mock_aws
def test_first_run_without_release_table_or_bucket_is_judged_on_thresholds_alone(
    dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # DynamoDB API reference, Query errors: ResourceNotFoundException for a table that does not exist (yet).
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    code, summary, err = run_gate(capsys, "--dist", str(dist), *AWS_ARGS)
    assert code == 0, err
    assert summary["live"]["skipped"] == "release table releases does not exist (first run): no live release yet"
    assert summary["live"]["judged_on"] == "thresholds alone: no live model to compare with"
    # The thresholds still apply.
    code, summary, _ = run_gate(capsys, "--dist", str(dist), "--thresholds-kv", "recall=1.01", *AWS_ARGS)
    assert code == 1 and summary["failures"][0].startswith("recall")


@mock_aws
def test_a_live_release_whose_bucket_or_baseline_is_missing_is_judged_on_thresholds_alone(
    dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    _register_live(model_hash="fedcba9876543210")
    code, summary, err = run_gate(capsys, "--dist", str(dist), *AWS_ARGS)  # S3: NoSuchBucket
    assert code == 0, err
    assert summary["live"]["skipped"] == "live release ep-live: artifacts bucket artifacts does not exist yet"
    _bucket()
    code, summary, err = run_gate(capsys, "--dist", str(dist), *AWS_ARGS)  # S3: 404 NoSuchKey
    assert code == 0, err
    assert summary["live"]["skipped"] == (
        "live release ep-live has no published baseline at s3://artifacts/baselines/3.2.1/"
    )


@mock_aws
def test_the_live_model_is_scored_on_the_candidates_holdout(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The live model's recorded metrics claim more than it scores on the candidate's rows: the rows decide.
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    _publish_live(dist, tmp_path, accuracy=0.999, precision=0.999, recall=0.999, roc_auc=0.999)
    code, summary, err = run_gate(capsys, "--dist", str(dist), *AWS_ARGS)
    assert code == 0, err
    live = summary["live"]
    assert live["metrics"] == summary["holdout_metrics"]  # the same model on the same rows
    rows = len((dist / "holdout.csv").read_text().splitlines())
    assert live["metrics_source"] == f"scored on the candidate's holdout ({rows} rows), as the candidate"
    assert live["recorded_metrics"]["accuracy"] == 0.999
    assert live["source"] == f"s3://artifacts/baselines/{summary['model']['content_sha256']}/"
    assert summary["contract"] == {"checked": True, "request_schema_changed": False}


@mock_aws
def test_an_older_live_release_without_model_or_contract_falls_back_to_its_recorded_metrics(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    better = round(recorded(dist)["accuracy"] + 0.05, 6)
    s3, root = _publish_live(dist, tmp_path, accuracy=better)
    for name in ("model.onnx", "contract/request.schema.json", "contract/openapi.json"):
        s3.delete_object(Bucket="artifacts", Key=root + name)
    code, summary, err = run_gate(capsys, "--dist", str(dist), *AWS_ARGS)
    assert code == 1 and f"worse than the live model's {better:.6f}" in err
    assert summary["live"]["metrics_source"] == (
        "recorded at the live model's build, on its own holdout (no published model.onnx)"
    )
    assert summary["contract"]["checked"] is False and "Traceback" not in err


@mock_aws
def test_a_version_folder_holding_another_model_is_not_the_live_models_baseline(
    dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 13 item 11: baselines/1.0.0/ was overwritten by a candidate that was then rolled back.
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    _register_live(model_hash="0123456789abcdef")
    s3 = _bucket()
    candidate = json.loads((dist / "metadata.json").read_text())
    s3.put_object(Bucket="artifacts", Key="baselines/3.2.1/metadata.json", Body=json.dumps(candidate))
    code, summary, err = run_gate(capsys, "--dist", str(dist), *AWS_ARGS)
    assert code == 0, err
    assert summary["live"]["skipped"] == (
        "live release ep-live (model 0123456789abcdef) has no published baseline: s3://artifacts/baselines/3.2.1/ "
        f"holds model {candidate['content_sha256'][:16]}"
    )


@pytest.mark.parametrize(
    ("service", "operation", "code", "status", "named"),
    [
        ("dynamodb", "Query", "AccessDeniedException", 400, "from DynamoDB table releases: AccessDeniedException"),
        # Throttling that outlasted botocore's retries (DynamoDB API reference, Query errors).
        ("dynamodb", "Query", "ProvisionedThroughputExceededException", 400, "DynamoDB table releases"),
        ("s3", "GetObject", "AccessDenied", 403, "reading s3://artifacts/baselines/"),
        ("s3", "GetObject", "SlowDown", 503, "reading s3://artifacts/baselines/"),
        # Without s3:ListBucket the gate cannot find the live model's folder (nor tell 404 from 403).
        ("s3", "ListObjectsV2", "AccessDenied", 403, "listing s3://artifacts/baselines/"),
    ],
)
@mock_aws
def test_any_other_aws_error_fails_the_gate_naming_what_it_read(
    dist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    aws_error: Any,
    service: str,
    operation: str,
    code: str,
    status: int,
    named: str,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    _publish_live(dist, tmp_path)
    aws_error(service, operation, code, status)
    exit_code, summary, err = run_gate(capsys, "--dist", str(dist), *AWS_ARGS)
    assert exit_code == 3 and summary == {}
    assert named in err and code in err and "Traceback" not in err


def test_runs_as_a_file_from_the_repo_root(dist: Path) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/model_gate.py", "--dist", str(dist)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
