"""A retraining run end to end, in process: drift event -> the retraining trigger starts a RETRAINING=true run ->
scripts/retrain.py (live parent, snapshot of fresh labelled traffic uploaded under the data key, next minor version
with lineage) -> the model gate against the live model -> a model package pending approval. Without new labels the
run stops with "dataset unchanged since 1.0.0" and registers nothing.

AWS is moto (S3, DynamoDB, KMS, SageMaker); CodePipeline is botocore's Stubber, as the trigger's own tests do."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status
from model_container.build_model import CONTRACT_DIR
from model_container.card import BINARY
from scripts import model_gate, retrain
from tests.model_container.test_dataset import BUCKET as CAPTURE_BUCKET
from tests.model_container.test_dataset import (
    CAPTURE,
    LABELS,
    PROFILE,
    UNTIL,
    Call,
    Y,
    calls,
    capture_record,
    put_lines,
    row,
    through,
)
from tests.model_packages import spread_rows
from tests.release_table import create_release_table
from tests.scripts.test_register_model_package import ACCOUNT, GROUP, REGION, inference_template, register_argv

# The trigger's Lambda code root, as tests/lambda_src/retraining_trigger/conftest.py adds it.
sys.path.append(str(Path(__file__).resolve().parents[2] / "lambda_src" / "retraining_trigger"))
from retraining_trigger.handler import trigger

from tests.lambda_src.retraining_trigger.test_retraining_trigger import DRIFT, PIPELINE

__all__ = ["calls"]  # the fixture: every AWS call with the profile and region of its session

PROD_ARTIFACTS = f"mlapi-prod-artifacts-{ACCOUNT}-{REGION}"
PIPELINE_ARTIFACTS = "mlapi-pipeline-artifacts"
ENDPOINT, TABLE = "mlapi-prod-endpoint", "mlapi-prod-releases"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, dist: Path) -> Any:
    """Production with a live 1.0.0 (the bundled build, its metadata published under baselines/), its capture
    bucket, the registry's group, and the pipeline's artifacts bucket with its data key."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (PROD_ARTIFACTS, CAPTURE_BUCKET, PIPELINE_ARTIFACTS):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.upload_file(str(dist / "metadata.json"), PROD_ARTIFACTS, "baselines/1.0.0/metadata.json")
        table = create_release_table(boto3.resource("dynamodb", region_name=REGION), TABLE)
        ReleaseRepository(table, ENDPOINT).register(
            Release("cfg-1-0-0", ENDPOINT, Status.LIVE, "2026-11-01T10:00:00Z", model_version="1.0.0")
        )
        boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=GROUP)
        s3.key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        yield s3


def drift_starts_a_retraining_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trigger's start, against a stubbed CodePipeline; its variables become the Synth step's environment."""
    from botocore.stub import ANY, Stubber

    codepipeline = boto3.client("codepipeline", region_name=REGION)
    with Stubber(codepipeline) as stubber:
        stubber.add_response("list_pipeline_executions", {"pipelineExecutionSummaries": []})
        stubber.add_response(
            "start_pipeline_execution",
            {"pipelineExecutionId": "retrain-1"},
            {"name": PIPELINE, "variables": ANY, "clientRequestToken": DRIFT["id"]},
        )
        started = trigger(DRIFT, codepipeline, PIPELINE)
        stubber.assert_no_pending_responses()
    assert started["started"] is True
    monkeypatch.setenv("RETRAINING", "true")
    monkeypatch.setenv("RETRAINING_REASON", started["reason"])


def retrain_argv(tmp_path: Path, key: str) -> list[str]:
    """The Synth step's command (ml_constructs/pipeline_steps.py retraining_commands) with the test's names."""
    return [
        "run", "--work", str(tmp_path / "build"), "--dist", str(tmp_path / "dist"),
        "--endpoint", ENDPOINT, "--table", TABLE, "--artifacts-bucket", PROD_ARTIFACTS,
        "--capture-uri", CAPTURE, "--labels-uri", LABELS, "--until", UNTIL, "--days", "1",
        "--min-rows", str(min(500, len(Y))), "--min-class-fraction", "0.2",
        "--upload", f"s3://{PIPELINE_ARTIFACTS}/datasets/", "--kms-key-id", key,
        "--commit", "retrain-commit", "--contract-dir", str(CONTRACT_DIR), "--region", REGION,
    ]  # fmt: skip


def fresh_labels(s3: Any, count: int = 40) -> None:
    """Traffic the endpoint served (patients a little larger than the bundled ones), then their true diagnoses."""
    indices = list(enumerate(spread_rows(count, len(Y))))  # (event, row): the dataset may have < 10 * count rows
    put_lines(s3, CAPTURE, "2026/11/30/10/b.jsonl", [capture_record([row(i, 1.03)], f"evt-x{e}") for e, i in indices])
    labels = [json.dumps({"eventId": f"evt-x{e}", "label": Y[i].item()}) for e, i in indices]  # a class or target
    put_lines(s3, LABELS, "2026/11/30/20/b.jsonl", labels)


def gate_and_register(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """The Checks wave: the model gate against the live model, then the registration of what it passed."""
    dist = tmp_path / "dist"
    gate = tmp_path / "gate"
    live = ["--endpoint", ENDPOINT, "--table", TABLE, "--artifacts-bucket", PROD_ARTIFACTS]
    # A binary model is held to more than its card asks; any other task to its card's acceptance.
    binary = json.loads((dist / "metadata.json").read_text())["task"] == BINARY
    override = ["--thresholds", '{"accuracy": 0.93, "roc_auc": 0.97}'] if binary else []
    thresholds = [*override, "--tolerance", "0.01"]
    code = model_gate.main(["--dist", str(dist), *thresholds, *live, "--report", str(gate / "model-gate.json")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, json.dumps(report)[:3000]
    shutil.copyfile(dist / "metadata.json", gate / "metadata.json")
    metadata = json.loads((gate / "metadata.json").read_text())
    assembly = tmp_path / "cdk.out" / "assembly-Pipeline-prod"
    assembly.mkdir(parents=True)
    template = inference_template(model_hash=metadata["content_sha256"][:16], commit="retrain-commit")
    (assembly / "PipelineprodInferenceBC6409D2.template.json").write_text(json.dumps(template))
    from scripts import register_model_package as rmp

    code = rmp.main(register_argv(tmp_path, **{"--metrics-bucket": PROD_ARTIFACTS}))
    return code, report


def test_drift_retrains_on_fresh_labels_and_registers_the_new_version_pending_approval(
    aws: Any, dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drift_starts_a_retraining_run(monkeypatch)
    fresh_labels(aws)
    assert retrain.main(retrain_argv(tmp_path, aws.key)) == 0
    metadata = json.loads((tmp_path / "dist" / "metadata.json").read_text())
    lineage = metadata["lineage"]
    assert metadata["model_version"] == "1.1.0" and lineage["parent_version"] == "1.0.0"
    base_holdout = json.loads((dist / "metadata.json").read_text())["holdout_metrics"]["rows"]
    assert lineage["holdout"]["by_source"] == {"base": base_holdout, "captured": 8}  # 114 breast-cancer rows
    # The snapshot is kept, content-addressed, under the pipeline's artifacts bucket with its key.
    sha = lineage["dataset"]["content_sha256"]
    head = aws.head_object(Bucket=PIPELINE_ARTIFACTS, Key=f"datasets/{sha}/snapshot.csv")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == aws.key
    capsys.readouterr()
    assert retrain.main(["verify", "--work", str(tmp_path / "build"), "--dist", str(tmp_path / "dist")]) == 0
    assert json.loads(capsys.readouterr().out)["verified"]["model_version"] == "1.1.0"

    code, report = gate_and_register(tmp_path, capsys)
    assert report["passed"] is True and report["trigger"]["retraining"] is True
    assert report["live"]["model_version"] == "1.0.0"  # judged against the live model, not only thresholds
    assert code == 0, capsys.readouterr().err
    arn = json.loads(capsys.readouterr().out)["package"]
    package = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"]["model-version"] == "1.1.0"


def test_without_new_labels_the_run_stops_as_unchanged_and_registers_nothing(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drift_starts_a_retraining_run(monkeypatch)
    put_lines(aws, CAPTURE, "2026/11/30/09/a.jsonl", [capture_record([row(0)], "evt-1")])  # traffic, no labels yet
    assert retrain.main(retrain_argv(tmp_path, aws.key)) == 5
    assert "retrain: dataset unchanged since 1.0.0: nothing to release" in capsys.readouterr().err
    assert not (tmp_path / "dist" / "metadata.json").exists()  # nothing for make synth to package
    assert retrain.main(["verify", "--work", str(tmp_path / "build"), "--dist", str(tmp_path / "dist")]) != 0
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"] == []


def test_with_the_environment_profile_production_is_read_as_production_and_the_snapshot_kept_as_the_pipeline(
    aws: Any, calls: list[Call], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Production may be another account: the Synth step passes the profile that assumes production's role
    (ml_constructs/step_access.py), as RegisterRelease does. Its release table, baselines, capture and labels are
    read through it; the snapshot goes to the pipeline's own bucket under its key with the step's credentials."""
    fresh_labels(aws)
    calls.clear()
    argv = [*retrain_argv(tmp_path, aws.key), "--environment-profile", PROFILE, "--environment-region", REGION]
    assert retrain.main(argv) == 0, capsys.readouterr().err
    assert through(calls, TABLE, PROD_ARTIFACTS, CAPTURE_BUCKET) == {(PROFILE, REGION)}
    assert through(calls, PIPELINE_ARTIFACTS) == {("default", REGION)}
    by_target = {target: {op for _, _, op, t in calls if t == target} for target in (TABLE, PIPELINE_ARTIFACTS)}
    assert by_target == {TABLE: {"Query"}, PIPELINE_ARTIFACTS: {"PutObject"}}
    metadata = json.loads((tmp_path / "dist" / "metadata.json").read_text())
    assert metadata["model_version"] == "1.1.0" and metadata["lineage"]["parent_version"] == "1.0.0"
    sha = metadata["lineage"]["dataset"]["content_sha256"]
    assert aws.head_object(Bucket=PIPELINE_ARTIFACTS, Key=f"datasets/{sha}/snapshot.csv")["SSEKMSKeyId"] == aws.key
