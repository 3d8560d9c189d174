"""The dataset builder: the base dataset plus captured traffic joined with ground truth by the drift engine's code,
one canonical CSV with its content hash and manifest, and refusals by size and label distribution. S3 is moto."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from model_container.contract import load_feature_schema
from model_container.dataset import SnapshotError, load
from model_container.dataset.cli import EXIT_AWS, EXIT_REFUSED, EXIT_UNUSABLE, main
from model_container.dataset.sources import FeatureContract, bundled_dataset, bundled_uri, configured_classes
from tests.release_table import create_release_table

REGION = "eu-west-1"
BUCKET = "mlapi-prod-capture-111111111111-eu-west-1"
CAPTURE = f"s3://{BUCKET}/capture/mlapi-prod-endpoint/AllTraffic/"
LABELS = f"s3://{BUCKET}/ground-truth/"
UNTIL = "2026-12-01T00:00:00Z"  # with --days 1 the window is 2026-11-30 00:00 to 24:00
# The configured model source's own data (cdk.json's model.source): counts and labels below follow it.
NAMES, X, Y = bundled_dataset()
ROWS, CLASSES = len(Y), configured_classes()  # CLASSES None: a regressor's targets
COUNTS = np.bincount(Y, minlength=CLASSES) if CLASSES else None


PROFILE, PROFILE_REGION = "production", "us-east-1"  # the profile's own region: --environment-region must win
Call = tuple[str, str | None, str, str | None]  # (profile, region, operation, bucket or table)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> list[Call]:
    """Every AWS call, with the profile and region of the boto3 Session it went through (moto has one account:
    which credentials a call used is what tells production's reads from the pipeline's). A config file holds the
    `production` profile, as ml_constructs/step_access.py writes one (static keys here, for moto)."""
    config = tmp_path_factory.mktemp("aws") / "config"
    keys = "aws_access_key_id = production\naws_secret_access_key = production"
    config.write_text(f"[profile {PROFILE}]\n{keys}\nregion = {PROFILE_REGION}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    recorded: list[Call] = []

    class RecordingSession(boto3.Session):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

            def record(params: dict[str, Any], model: Any, **_: Any) -> None:
                target = params.get("Bucket") or params.get("TableName")
                recorded.append((self.profile_name, self.region_name, model.name, target))

            self.events.register("provide-client-params", record)

    monkeypatch.setattr(boto3, "Session", RecordingSession)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3.client()'s session is made anew, recording too
    return recorded


def through(calls: list[Call], *targets: str) -> set[tuple[str, str | None]]:
    """The (profile, region) pairs the calls on `targets` went through."""
    return {(profile, region) for profile, region, _, target in calls if target in targets}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield client


def capture_record(
    rows: list[Any], event_id: str, inference_id: str | None = None, response: bool = True, raw: str | None = None
) -> str:
    """One SageMaker data-capture line as the serving container's traffic produces it."""
    capture: dict[str, Any] = {
        "endpointInput": {
            "observedContentType": "application/json",
            "mode": "INPUT",
            "data": raw or json.dumps({"instances": rows}),
            "encoding": "JSON",
        }
    }
    if response:
        predictions = [{"label": 1, "probability": 0.9, "model_version": "1.0.0"} for _ in rows]
        capture["endpointOutput"] = {
            "observedContentType": "application/json",
            "mode": "OUTPUT",
            "data": json.dumps({"predictions": predictions}),
            "encoding": "JSON",
        }
    metadata = {"eventId": event_id, "inferenceTime": "2026-11-30T12:00:00Z"}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return json.dumps({"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"})


def put_lines(s3: Any, uri: str, key: str, lines: list[str]) -> None:
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    s3.put_object(Bucket=BUCKET, Key=prefix + key, Body=("\n".join(lines) + "\n").encode())


def row(index: int, scale: float = 1.01) -> list[float]:
    """A bundled row, moved a little: realistic, inside the feature contract, not a copy of the base data."""
    return [float(v) for v in X[index] * scale]


def build(tmp_path: Path, *extra: str, out: str = "snapshot") -> tuple[int, Path]:
    code = main(["build", "--out", str(tmp_path / out), "--region", REGION, *extra])
    return code, tmp_path / out


def with_traffic(*extra: str) -> list[str]:
    return ["--capture-uri", CAPTURE, "--labels-uri", LABELS, "--until", UNTIL, "--days", "1", *extra]


def test_the_bundled_snapshot_is_canonical_and_deterministic(tmp_path: Path, s3: Any) -> None:
    code, first = build(tmp_path, out="a")
    assert code == 0
    code, second = build(tmp_path, out="b")
    assert code == 0
    content = (first / "snapshot.csv").read_bytes()
    assert content == (second / "snapshot.csv").read_bytes()
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest == json.loads((second / "manifest.json").read_text())  # no timestamps, no run ids
    assert manifest["content_sha256"] == hashlib.sha256(content).hexdigest()
    assert manifest["rows"] == ROWS
    if COUNTS is not None:  # breast cancer: {"0": 357, "1": 212}
        assert manifest["label_distribution"] == {str(label): int(n) for label, n in enumerate(COUNTS)}
    else:
        assert "label_distribution" not in manifest
    assert manifest["sources"] == [
        {"source": "base", "rows": ROWS, "uri": bundled_uri(), "dropped": {"out_of_contract": 0}}
    ]
    snapshot = load(first)
    assert snapshot.feature_names == tuple(NAMES)
    assert np.array_equal(snapshot.features, X) and np.array_equal(snapshot.labels, Y)  # lossless


def test_captured_traffic_joins_its_ground_truth_as_the_drift_engine_does(tmp_path: Path, s3: Any) -> None:
    names = NAMES
    put_lines(
        s3,
        CAPTURE,
        "2026/11/30/12/capture-1.jsonl",
        [
            capture_record([row(0), row(1)], "evt-a", inference_id="inf-a"),  # joined on inferenceId, 2 labels
            capture_record([row(2)], "evt-b"),  # joined on eventId, SageMaker's ground-truth format
            capture_record([row(3)], "evt-c"),  # 2 labels for 1 instance: the join skips the record
            capture_record([row(4)], "evt-d"),  # never labelled
            capture_record([row(5)], "evt-e", response=False),  # no response captured: still a training row
            "{not json",
        ],
    )
    put_lines(
        s3,
        CAPTURE,
        "2026/11/30/13/capture-2.jsonl",
        [
            capture_record([dict(zip(names, row(6), strict=True))], "evt-f"),  # a row as named features
            capture_record([[1e9] * len(names)], "evt-g"),  # outside the contract: the API refuses such rows
            capture_record([row(7)], "evt-h"),  # label 3.5 is no class (a regressor's target, though)
            capture_record([row(8)[:5]], "evt-i"),  # 5 features: not the schema
        ],
    )
    put_lines(s3, CAPTURE, "2026/11/29/23/capture-0.jsonl", [capture_record([row(9)], "evt-old")])  # before window
    ground_truth = {"data": "1", "encoding": "CSV"}
    sagemaker_format = json.dumps({"groundTruthData": ground_truth, "eventMetadata": {"eventId": "evt-b"}})
    put_lines(
        s3,
        LABELS,
        "2026/11/30/18/labels.jsonl",
        [
            json.dumps({"inferenceId": "inf-a", "labels": [1, 0]}),
            sagemaker_format,
            json.dumps({"eventId": "evt-c", "labels": [1, 0]}),
            json.dumps({"eventId": "evt-e", "label": 1}),
            json.dumps({"eventId": "evt-f", "label": 0}),
            json.dumps({"eventId": "evt-g", "label": 1}),
            json.dumps({"eventId": "evt-h", "label": 3.5}),
            json.dumps({"eventId": "evt-i", "label": 1}),
            json.dumps({"eventId": "evt-old", "label": 1}),
            "garbage",
        ],
    )
    code, out = build(tmp_path, *with_traffic())
    assert code == 0
    snapshot = load(out)
    features, labels = snapshot.part("captured")
    # inf-a (2 rows), evt-b, evt-f served by 1.0.0, then evt-e (no response, no version): grouped by the serving
    # version as the drift engine groups them, in capture order within a version.
    if CLASSES is None:  # evt-h's 3.5 is a target too
        assert labels.tolist() == [1, 0, 1, 0, 3.5, 1] and labels.dtype == np.float64
        assert np.array_equal(features, np.array([row(0), row(1), row(2), row(6), row(7), row(5)]))
    else:
        assert labels.tolist() == [1, 0, 1, 0, 1] and labels.dtype == np.int64
        assert np.array_equal(features, np.array([row(0), row(1), row(2), row(6), row(5)]))
    assert snapshot.part("base")[0].shape == X.shape
    captured = json.loads((out / "manifest.json").read_text())["sources"][1]
    assert captured["window"] == {"start": "2026-11-30T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    assert (captured["capture_files"], captured["label_files"]) == (2, 1)
    assert (captured["captured_records"], captured["malformed_records"], captured["malformed_label_lines"]) == (
        10,
        1,
        1,
    )
    assert captured["labelled_rows"] == 8  # evt-c's count mismatch and evt-d's missing label never join
    bad = 0 if CLASSES is None else 1
    assert captured["dropped"] == {"schema_mismatch": 1, "incomplete": 0, "bad_label": bad, "out_of_contract": 1}
    assert captured["rows"] == 6 - bad and captured["capture_uri"] == CAPTURE and captured["labels_uri"] == LABELS


def test_the_hash_follows_the_content_not_the_files_it_came_from(tmp_path: Path, s3: Any) -> None:
    put_lines(s3, CAPTURE, "2026/11/30/10/a.jsonl", [capture_record([row(0)], "evt-1")])
    put_lines(s3, LABELS, "2026/11/30/11/a.jsonl", [json.dumps({"eventId": "evt-1", "label": 1})])
    hashes = {}
    code, out = build(tmp_path, *with_traffic(), out="first")
    hashes["first"] = load(out).content_sha256
    # More traffic, but nothing labelled: the training data is the same, and so is its hash.
    put_lines(s3, CAPTURE, "2026/11/30/15/b.jsonl", [capture_record([row(1)], "evt-2")])
    code, out = build(tmp_path, *with_traffic(), out="unlabelled")
    hashes["unlabelled"] = load(out).content_sha256
    put_lines(s3, LABELS, "2026/11/30/16/b.jsonl", [json.dumps({"eventId": "evt-2", "label": 0})])
    code, out = build(tmp_path, *with_traffic(), out="labelled")
    hashes["labelled"] = load(out).content_sha256
    assert code == 0
    assert hashes["first"] == hashes["unlabelled"] != hashes["labelled"]
    bundled = build(tmp_path, out="bundled")[1]
    assert load(bundled).content_sha256 not in hashes.values()


def test_the_base_dataset_comes_from_a_versioned_s3_prefix_with_its_object_versions(tmp_path: Path, s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    columns = ["label", *reversed(NAMES), "site"]  # any column order; unknown columns are ignored

    def csv_of(indices: range) -> bytes:
        lines = [",".join(columns)]
        lines += [",".join([str(Y[i]), *(repr(v) for v in reversed(X[i].tolist())), "north"]) for i in indices]
        return ("\n".join(lines) + "\n").encode()

    half = ROWS // 2
    s3.put_object(Bucket=BUCKET, Key="datasets/v3/part-2.csv", Body=csv_of(range(half, ROWS)))
    first = s3.put_object(Bucket=BUCKET, Key="datasets/v3/part-1.csv", Body=csv_of(range(half)))
    s3.put_object(Bucket=BUCKET, Key="datasets/v3/README.txt", Body=b"not data")
    code, out = build(tmp_path, "--dataset-uri", f"s3://{BUCKET}/datasets/v3/", out="v3")
    assert code == 0
    snapshot = load(out)
    assert np.array_equal(snapshot.features, X) and np.array_equal(snapshot.labels, Y)  # keys in order
    base = snapshot.manifest["sources"][0]
    assert [(o["key"], o["rows"]) for o in base["objects"]] == [
        ("datasets/v3/part-1.csv", half),
        ("datasets/v3/part-2.csv", ROWS - half),
    ]
    assert base["objects"][0]["version_id"] == first["VersionId"]
    assert base["objects"][0]["etag"] == first["ETag"].strip('"')
    # The bundled data and the same rows from S3 are the same training data: the same hash.
    assert snapshot.content_sha256 == load(build(tmp_path, out="bundled")[1]).content_sha256
    s3.put_object(Bucket=BUCKET, Key="datasets/v3/part-1.csv", Body=csv_of(range(1, half)))  # a new version
    changed = load(build(tmp_path, "--dataset-uri", f"s3://{BUCKET}/datasets/v3/", out="v3b")[1])
    assert changed.content_sha256 != snapshot.content_sha256
    assert changed.manifest["sources"][0]["objects"][0]["version_id"] != first["VersionId"]


def test_a_base_csv_without_a_feature_is_unusable_and_names_the_file(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.put_object(Bucket=BUCKET, Key="datasets/bad/data.csv", Body=f"label,{NAMES[0]}\n1,10.0\n".encode())
    code, out = build(tmp_path, "--dataset-uri", f"s3://{BUCKET}/datasets/bad/")
    assert code == EXIT_UNUSABLE and not out.exists()
    error = capsys.readouterr().err
    assert f"s3://{BUCKET}/datasets/bad/data.csv: missing column(s) {NAMES[1]}, " in error


@pytest.mark.parametrize("check", ["min-rows", "min-class-fraction"])
def test_a_snapshot_too_small_or_too_skewed_is_refused(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str], check: str
) -> None:
    """Breast cancer: 569 rows is below min_rows 600; label 1 makes up 0.373 of the rows (212 of 569)."""
    if check == "min-rows":
        extra, message = ["--min-rows", str(ROWS + 31)], f"{ROWS} rows is below training.min_rows {ROWS + 31}"
    elif COUNTS is None:
        pytest.skip("a regressor's targets have no classes for training.min_class_fraction to check")
    else:
        rarest = int(np.argmin(COUNTS))
        fraction = COUNTS[rarest] / ROWS
        extra = ["--min-class-fraction", "0.4"]
        message = f"label {rarest} makes up {fraction:.3f} of the rows ({COUNTS[rarest]} of {ROWS}), below"
    code, out = build(tmp_path, *extra)
    assert code == EXIT_REFUSED and not out.exists()
    assert message in capsys.readouterr().err
    floor = f"{int(COUNTS.min() / ROWS * 100) / 100}" if COUNTS is not None else "0.4"
    code, _ = build(tmp_path, "--min-rows", str(ROWS), "--min-class-fraction", floor, out="at-the-limits")
    assert code == 0


def test_the_upload_is_content_addressed_under_the_data_key(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    code, out = build(tmp_path, "--upload", f"s3://{BUCKET}/datasets/", "--kms-key-id", key)
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    digest = summary["content_sha256"]
    assert summary["snapshot_uri"] == f"s3://{BUCKET}/datasets/{digest}/"
    assert load(out).manifest["snapshot_uri"] == summary["snapshot_uri"]
    for name in ("snapshot.csv", "manifest.json"):
        stored = s3.get_object(Bucket=BUCKET, Key=f"datasets/{digest}/{name}")
        assert stored["Body"].read() == (out / name).read_bytes()
        assert (stored["ServerSideEncryption"], stored["SSEKMSKeyId"]) == ("aws:kms", key)


def test_an_aws_error_exits_3(tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = build(tmp_path, "--dataset-uri", "s3://no-such-bucket-here/datasets/")
    assert code == EXIT_AWS and "NoSuchBucket" in capsys.readouterr().err


def test_a_tampered_or_rewritten_snapshot_is_refused(tmp_path: Path, s3: Any) -> None:
    _, out = build(tmp_path)
    content = (out / "snapshot.csv").read_bytes()
    (out / "snapshot.csv").write_bytes(content.replace(b"\nbase,", b"\nbase,9", 1))  # another first label
    with pytest.raises(SnapshotError, match="is not the manifest's content_sha256"):
        load(out)
    # Same numbers, another spelling: the hash would no longer identify the data, so it is not a snapshot.
    header, first, rest = content.split(b"\n", 2)
    cells = first.split(b",")
    at = next(i for i, cell in enumerate(cells) if i > 1 and b"." in cell and b"e" not in cell)
    cells[at] += b"0"  # 17.99 -> 17.990
    rewritten = b"\n".join([header, b",".join(cells), rest])
    (out / "snapshot.csv").write_bytes(rewritten)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["content_sha256"] = hashlib.sha256(rewritten).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match="not in canonical form"):
        load(out)


def test_the_contract_ranges_come_from_the_committed_feature_schema() -> None:
    contract = FeatureContract.from_schema(load_feature_schema())
    assert contract.names == tuple(NAMES)
    assert contract.inside(X).all()  # every bundled row is one the API accepts
    assert not contract.inside(X * 10).any()


def test_parent_writes_the_live_models_metadata(tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status

    table = create_release_table(boto3.resource("dynamodb", region_name=REGION), "mlapi-prod-releases")
    out = tmp_path / "parent.json"
    args = ["parent", "--endpoint", "mlapi-prod-endpoint", "--table", "mlapi-prod-releases"]
    args += ["--artifacts-bucket", BUCKET, "--out", str(out), "--region", REGION]
    assert main(args) == 0 and not out.exists()
    assert json.loads(capsys.readouterr().out)["live"] is None
    ReleaseRepository(table, "mlapi-prod-endpoint").register(
        Release("cfg-1-1-0", "mlapi-prod-endpoint", Status.LIVE, "2026-11-30T10:00:00Z", model_version="1.1.0")
    )
    metadata = {"model_version": "1.1.0", "lineage": {"dataset": {"content_sha256": "ab"}}}
    s3.put_object(Bucket=BUCKET, Key="baselines/1.1.0/metadata.json", Body=json.dumps(metadata).encode())
    assert main(args) == 0
    assert json.loads(out.read_text()) == metadata


def test_a_retraining_run_yields_a_new_model_when_labels_arrived_and_says_so_when_none_did(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands a retraining run executes: snapshot from the traffic, build against the live model."""
    from model_container.build_model import CONTRACT_DIR
    from model_container.build_model import build as build_model
    from model_container.build_model import main as build_main

    live = build_model(tmp_path / "live", contract_dir=tmp_path / "contract", commit="live")  # 1.0.0, bundled
    (tmp_path / "live.json").write_text(json.dumps(live))

    def retrain(name: str) -> int:
        checks = ("--min-rows", str(min(500, ROWS)), "--min-class-fraction", "0.2")
        code, snapshot = build(tmp_path, *with_traffic(*checks), out=name)
        assert code == 0
        args = ["--out", str(tmp_path / f"{name}-dist"), "--contract-dir", str(CONTRACT_DIR), "--commit", "c"]
        return build_main([*args, "--dataset", str(snapshot), "--parent", str(tmp_path / "live.json")])

    put_lines(s3, CAPTURE, "2026/11/30/09/a.jsonl", [capture_record([row(0)], "evt-1")])  # traffic, no labels yet
    assert retrain("no-labels") == 5
    assert "dataset unchanged since 1.0.0: the retrained model would be identical" in capsys.readouterr().err
    records = [capture_record([row(i, 1.03)], f"evt-x{i}") for i in range(40)]
    put_lines(s3, CAPTURE, "2026/11/30/10/b.jsonl", records)
    put_lines(
        s3, LABELS, "2026/11/30/20/b.jsonl", [json.dumps({"eventId": f"evt-x{i}", "label": 1}) for i in range(40)]
    )
    assert retrain("labelled") == 0
    retrained = json.loads((tmp_path / "labelled-dist" / "metadata.json").read_text())
    assert retrained["model_version"] == "1.1.0" and retrained["content_sha256"] != live["content_sha256"]
    base_holdout = live["lineage"]["holdout"]["by_source"]["base"]  # 114 breast-cancer rows
    assert retrained["lineage"]["holdout"]["by_source"] == {"base": base_holdout, "captured": 8}


def test_production_reads_go_through_the_environment_profile_and_the_upload_through_the_pipelines_credentials(
    tmp_path: Path, s3: Any, calls: list[Call], capsys: pytest.CaptureFixture[str]
) -> None:
    """--environment-profile/--environment-region (as scripts/register_release.py): the dataset, capture and labels
    are production's, read as production's step role in its region; the upload is the pipeline's own bucket, with
    the step's default credentials in --region. Without the flags everything keeps the default credentials."""
    pipeline_bucket, pipeline_region = "mlapi-pipeline-artifacts", "us-west-2"
    boto3.client("s3", region_name=pipeline_region).create_bucket(
        Bucket=pipeline_bucket, CreateBucketConfiguration={"LocationConstraint": pipeline_region}
    )
    key = boto3.client("kms", region_name=pipeline_region).create_key()["KeyMetadata"]["Arn"]
    put_lines(s3, CAPTURE, "2026/11/30/10/b.jsonl", [capture_record([row(0)], "evt-1")])
    put_lines(s3, LABELS, "2026/11/30/20/b.jsonl", [json.dumps({"eventId": "evt-1", "label": 1})])
    upload = ["--upload", f"s3://{pipeline_bucket}/datasets/", "--kms-key-id", key]
    environment = ["--environment-profile", PROFILE, "--environment-region", REGION]
    calls.clear()
    argv = ["build", "--out", str(tmp_path / "snapshot"), "--region", pipeline_region, *with_traffic(*upload)]
    assert main([*argv, *environment]) == 0, capsys.readouterr().err
    assert through(calls, BUCKET) == {(PROFILE, REGION)}
    assert through(calls, pipeline_bucket) == {("default", pipeline_region)}
    assert {op for _, _, op, target in calls if target == pipeline_bucket} == {"PutObject"}
    digest = json.loads(capsys.readouterr().out)["content_sha256"]
    assert s3.head_object(Bucket=pipeline_bucket, Key=f"datasets/{digest}/snapshot.csv")["SSEKMSKeyId"] == key

    calls.clear()
    assert main([*argv[:2], str(tmp_path / "unchanged"), *argv[3:]]) == 0  # no flags: one session, as before
    assert {(profile, region) for profile, region, _, _ in calls} == {("default", pipeline_region)}
    assert through(calls, BUCKET) and through(calls, pipeline_bucket)


def test_parent_reads_production_through_the_environment_profile(
    tmp_path: Path, s3: Any, calls: list[Call], capsys: pytest.CaptureFixture[str]
) -> None:
    from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status

    table = create_release_table(boto3.resource("dynamodb", region_name=REGION), "mlapi-prod-releases")
    ReleaseRepository(table, "mlapi-prod-endpoint").register(
        Release("cfg-1-1-0", "mlapi-prod-endpoint", Status.LIVE, "2026-11-30T10:00:00Z", model_version="1.1.0")
    )
    s3.put_object(Bucket=BUCKET, Key="baselines/1.1.0/metadata.json", Body=b'{"model_version": "1.1.0"}')
    args = ["parent", "--endpoint", "mlapi-prod-endpoint", "--table", "mlapi-prod-releases"]
    args += ["--artifacts-bucket", BUCKET, "--out", str(tmp_path / "parent.json"), "--region", "us-west-2"]
    calls.clear()
    assert main([*args, "--environment-profile", PROFILE, "--environment-region", REGION]) == 0
    assert {op for _, _, op, _ in calls} == {"Query", "GetObject"}  # the release table, then baselines/
    assert {(profile, region) for profile, region, _, _ in calls} == {(PROFILE, REGION)}
    assert json.loads((tmp_path / "parent.json").read_text())["model_version"] == "1.1.0"
    assert main([*args, "--environment-profile", "no-such-profile"]) == EXIT_AWS
    assert "no-such-profile" in capsys.readouterr().err
