"""A push-started run after a retraining run (issue 18): `python -m scripts.retrain lineage` builds on the live model's
lineage - the snapshot the retraining run kept under the pipeline's artifacts bucket (datasets/<sha256>/) and the
live version - instead of the bundled dataset, which would ship the older 1.0.0 model again. Only a first run, with
no live release, builds on the bundled dataset.

AWS is moto (S3, DynamoDB, KMS, SageMaker), set up by tests/scripts/test_retraining_run.py's `aws` fixture: prod's
live 1.0.0, its capture bucket, the pipeline's artifacts bucket and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status
from model_container import build_model
from model_container.build_model import CONTRACT_DIR, TrainingSource, configured_source
from scripts import retrain
from tests.model_container.test_dataset import PROFILE, Call, calls, through
from tests.scripts import test_retraining_run as retraining_run
from tests.scripts.test_retraining_run import (
    ENDPOINT,
    PIPELINE_ARTIFACTS,
    PROD_ARTIFACTS,
    REGION,
    TABLE,
    fresh_labels,
    retrain_argv,
)

aws = retraining_run.aws  # the fixture: prod with a live 1.0.0, the pipeline's artifacts bucket and key
__all__ = ["aws", "calls"]  # calls: every AWS call with the profile and region of its session

LIVE_AT = "2026-12-01T10:00:00Z"


def lineage_argv(tmp_path: Path, work: str = "push", contract_dir: Path = CONTRACT_DIR) -> list[str]:
    """The Synth step's command on a push-started run (RETRAINING=false), with the test's names."""
    return [
        "lineage", "--work", str(tmp_path / work), "--dist", str(tmp_path / f"{work}-dist"),
        "--endpoint", ENDPOINT, "--table", TABLE, "--artifacts-bucket", PROD_ARTIFACTS,
        "--commit", "push-commit", "--contract-dir", str(contract_dir), "--region", REGION,
    ]  # fmt: skip


def retrained_is_live(aws: Any, tmp_path: Path) -> dict[str, Any]:
    """A retraining run's 1.1.0 went live: published by scripts/publish_baseline.py (baselines/<content hash>/),
    the release history says it is live and names the model's hash. Returns its metadata."""
    from scripts.publish_baseline import publish

    fresh_labels(aws)
    assert retrain.main(retrain_argv(tmp_path, aws.key)) == 0
    metadata: dict[str, Any] = json.loads((tmp_path / "dist" / "metadata.json").read_text())
    assert metadata["model_version"] == "1.1.0"
    publish(tmp_path / "dist", PROD_ARTIFACTS, aws, CONTRACT_DIR)
    table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE)
    releases = ReleaseRepository(table, ENDPOINT)
    digest = metadata["content_sha256"][:16]  # the release's model-hash tag
    release = Release("cfg-1-1-0", ENDPOINT, Status.BAKING, LIVE_AT, model_version="1.1.0", model_hash=digest)
    releases.register(release)
    assert releases.promote(release, at=LIVE_AT, by="test", reason="baked")
    return metadata


def built(tmp_path: Path, work: str = "push") -> dict[str, Any]:
    metadata: dict[str, Any] = json.loads((tmp_path / f"{work}-dist" / "metadata.json").read_text())
    return metadata


def test_a_push_after_a_retrain_rebuilds_the_live_model_from_its_snapshot_not_the_bundled_data(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = retrained_is_live(aws, tmp_path)
    capsys.readouterr()
    assert retrain.main(lineage_argv(tmp_path)) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    metadata = built(tmp_path)
    # Unchanged code on the live data is the live model: same graph, same version, same parent and data.
    assert metadata["model_version"] == "1.1.0"
    assert metadata["content_sha256"] == live["content_sha256"]
    assert metadata["lineage"]["dataset"]["content_sha256"] == live["lineage"]["dataset"]["content_sha256"]
    assert metadata["lineage"]["parent_version"] == "1.0.0"
    assert metadata["lineage"]["rebuild_of"] == {"version": "1.1.0", "identical": True}
    assert metadata["training_commit"] == "push-commit"
    assert summary["trained_on"].startswith("the live 1.1.0's snapshot s3://" + PIPELINE_ARTIFACTS + "/datasets/")
    # `verify` after `make synth` checks that synth packaged this build.
    verify = ["verify", "--work", str(tmp_path / "push"), "--dist", str(tmp_path / "push-dist")]
    assert retrain.main(verify) == 0


def test_a_code_change_that_changes_the_model_is_the_live_versions_next_patch(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    live = retrained_is_live(aws, tmp_path)
    card = TrainingSource.resolve(configured_source()).hyperparameters
    first = next(name for name, value in card.items() if isinstance(value, float))  # breast cancer's C, diabetes' alpha
    pushed = {**card, first: card[first] / 2}  # the pushed model_card.json
    monkeypatch.setattr(TrainingSource, "hyperparameters", property(lambda _: pushed))
    assert retrain.main(lineage_argv(tmp_path)) == 0, capsys.readouterr().err
    metadata = built(tmp_path)
    assert metadata["model_version"] == "1.1.1" and metadata["content_sha256"] != live["content_sha256"]
    assert metadata["lineage"]["parent_version"] == "1.1.0"
    assert metadata["lineage"]["dataset"]["content_sha256"] == live["lineage"]["dataset"]["content_sha256"]
    assert metadata["lineage"]["parameters"]["hyperparameters"][first] == card[first] / 2


def test_a_first_run_without_a_live_release_builds_the_bundled_dataset(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE)
    for item in table.scan()["Items"]:  # a first run: nothing is live yet
        table.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
    contract = tmp_path / "contract"  # the default build rewrites feature_schema.json: not the committed one
    shutil.copytree(CONTRACT_DIR, contract)
    assert retrain.main(lineage_argv(tmp_path, contract_dir=contract)) == 0, capsys.readouterr().err
    trained_on = json.loads(capsys.readouterr().out.splitlines()[-1])["trained_on"]
    assert "the model source's data: no live release" in trained_on
    metadata = built(tmp_path)
    assert metadata["model_version"] == TrainingSource.resolve(configured_source()).card["model_version"]
    assert metadata["lineage"]["kind"] == "source" and metadata["lineage"]["parent_version"] is None


def test_a_missing_or_altered_live_snapshot_fails_instead_of_falling_back_to_the_bundled_data(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = retrained_is_live(aws, tmp_path)
    sha = live["lineage"]["dataset"]["content_sha256"]
    key = f"datasets/{sha}/snapshot.csv"
    body = aws.get_object(Bucket=PIPELINE_ARTIFACTS, Key=key)["Body"].read()
    aws.put_object(Bucket=PIPELINE_ARTIFACTS, Key=key, Body=body.replace(b"\n", b"\n\n", 1))
    capsys.readouterr()
    assert retrain.main(lineage_argv(tmp_path, "altered")) == 2
    assert "the live model's snapshot is unusable" in capsys.readouterr().err
    assert not (tmp_path / "altered-dist" / "metadata.json").exists()
    aws.delete_object(Bucket=PIPELINE_ARTIFACTS, Key=key)
    assert retrain.main(lineage_argv(tmp_path, "missing")) == 3
    assert "reading the live model's snapshot failed" in capsys.readouterr().err
    assert not (tmp_path / "missing-dist" / "metadata.json").exists()


def test_with_the_environment_profile_the_live_model_is_read_from_production_and_its_snapshot_from_the_pipeline(
    aws: Any, calls: list[Call], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The live release and its metadata.json are production's (release table, baselines/): through the profile.
    The snapshot its lineage names is the one `run` uploaded (--upload: the pipeline's bucket, datasets/<sha256>/):
    with the step's own credentials, which production's role could not read."""
    live = retrained_is_live(aws, tmp_path)
    calls.clear()
    argv = [*lineage_argv(tmp_path), "--environment-profile", PROFILE, "--environment-region", REGION]
    assert retrain.main(argv) == 0, capsys.readouterr().err
    assert through(calls, TABLE, PROD_ARTIFACTS) == {(PROFILE, REGION)}
    sha = live["lineage"]["dataset"]["content_sha256"]
    reads = [(profile, op) for profile, _, op, target in calls if target == PIPELINE_ARTIFACTS]
    assert reads == [("default", "GetObject")] * 2  # snapshot.csv and manifest.json, nothing else
    assert through(calls, PIPELINE_ARTIFACTS) == {("default", REGION)}
    assert built(tmp_path)["content_sha256"] == live["content_sha256"]
    assert sha == built(tmp_path)["lineage"]["dataset"]["content_sha256"]


def test_a_retraining_run_with_the_sagemaker_runner_hands_the_build_to_a_training_job(
    aws: Any, calls: list[Call], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """training.runner: sagemaker - the same snapshot, parent and build arguments go to scripts/training_job.py,
    with the runner's own (TrainingRunner.job_arguments) after `--`; its exit 5 is "unchanged" as a build's."""
    from scripts import training_job

    jobs: list[list[str]] = []

    def job(argv: list[str]) -> int:  # the job's part, played by the local build on the same arguments
        jobs.append(argv)
        known = argv[: argv.index("--region")]
        return build_model.main(known)

    monkeypatch.setattr(training_job, "main", job)
    fresh_labels(aws)
    runner = ["--bucket", PROD_ARTIFACTS, "--role-arn", "arn:aws:iam::123456789012:role/r", "--spot"]
    environment = ["--environment-profile", PROFILE, "--environment-region", REGION]  # the job runs in production
    argv = [*retrain_argv(tmp_path, aws.key), *environment, "--runner", "sagemaker", "--", *runner]
    assert retrain.main(argv) == 0
    [argv] = jobs
    assert argv[argv.index("--region") :] == ["--region", REGION, *environment, *runner]
    assert argv[argv.index("--dataset") + 1] == str(tmp_path / "build" / "snapshot")
    assert argv[argv.index("--parent") + 1] == str(tmp_path / "build" / "parent.json")
    assert argv[argv.index("--out") + 1] == str(tmp_path / "dist") and argv[-len(runner) :] == runner
    assert json.loads((tmp_path / "dist" / "metadata.json").read_text())["model_version"] == "1.1.0"
    assert retrain.main([*retrain_argv(tmp_path, aws.key), "--runner", "sagemaker"]) == 2  # no job arguments


def test_a_push_with_a_pre_built_package_installs_the_package_as_is_instead_of_rebuilding_the_live_model(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`model.source: {"package": ...}` with `retraining_trigger: true`: a push run's lineage build (the Synth step,
    RETRAINING=false) after the first has a live release, and a package is not trained: it is installed as it is
    (before: `--rebuild-of`, which build_model refuses for a package, failed every push run)."""
    from tests.model_packages import example_package

    live = retrained_is_live(aws, tmp_path)
    package_dir = example_package("wine")
    monkeypatch.setattr(build_model, "configured_source", lambda *_: {"package": str(package_dir)})
    # The test's package is a temporary directory, outside the paths the image build copies (which `make model`
    # refuses for a real source, build_model.check_in_image): a user's package lives under model_container/.
    monkeypatch.setattr(build_model, "check_in_image", lambda *_: None)
    capsys.readouterr()
    assert retrain.main(lineage_argv(tmp_path, contract_dir=tmp_path / "contract")) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    metadata = built(tmp_path)
    assert metadata == json.loads((package_dir / "metadata.json").read_text())  # the package's card, untouched
    assert metadata["content_sha256"] != live["content_sha256"]
    assert summary["trained_on"] == f"the pre-built package {package_dir} as is (a package is not rebuilt)"
    assert summary["rebuild_of"] is None
