"""Pre-built model packages (model.source.package): a directory or an S3 prefix, checked and installed as the build
would have written it; every inconsistency refused naming its file and field."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from model_container import package
from model_container.build_model import BuildInputError, build
from model_container.card import ModelCard

BUCKET = "model-packages"
FILES = ["baseline.csv", "baseline_predictions.csv", "holdout.csv", "metadata.json", "model.onnx", "model.tar.gz"]


def copy_package(source: Path, target: Path, drop: tuple[str, ...] = ("model.tar.gz",)) -> Path:
    """What a user brings: the package's files (no archive: the install makes it)."""
    target.mkdir(parents=True)
    for name in FILES:
        if name not in drop:
            (target / name).write_bytes((source / name).read_bytes())
    return target


def edit_card(directory: Path, change: dict[str, Any]) -> None:
    raw = json.loads((directory / "metadata.json").read_text())
    (directory / "metadata.json").write_text(json.dumps({**raw, **change}))


def install(location: Path | str, tmp_path: Path) -> dict[str, Any]:
    return package.install(str(location), tmp_path / "dist", tmp_path / "contract")


def test_a_package_directory_installs_as_the_build_wrote_it(model_package: Path, tmp_path: Path) -> None:
    user = copy_package(model_package, tmp_path / "user")
    card = install(user, tmp_path)
    for name in FILES:
        assert (tmp_path / "dist" / name).read_bytes() == (model_package / name).read_bytes(), name
    assert json.loads((tmp_path / "contract" / "feature_schema.json").read_text()) == card["feature_schema"]
    # The same through the build's entry point, with model.source = {"package": ...}.
    again = build(tmp_path / "again", contract_dir=tmp_path / "c2", source={"package": str(user)})
    assert again == card


def test_baseline_predictions_and_holdout_metrics_are_computed_when_absent(model_package: Path, tmp_path: Path) -> None:
    user = copy_package(model_package, tmp_path / "user", drop=("model.tar.gz", "baseline_predictions.csv"))
    raw = json.loads((user / "metadata.json").read_text())
    del raw["holdout_metrics"], raw["training_rows"]
    (user / "metadata.json").write_text(json.dumps(raw))
    card = install(user, tmp_path)
    built = ModelCard.load(model_package)
    assert card["holdout_metrics"] == built.holdout_metrics and card["training_rows"] == built.raw["training_rows"]
    expected = (model_package / "baseline_predictions.csv").read_bytes()
    assert (tmp_path / "dist" / "baseline_predictions.csv").read_bytes() == expected


def broken(name: str, user: Path, card: ModelCard) -> str:
    """Break the package one way; returns the error expected (a regex)."""
    if name == "missing holdout":
        (user / "holdout.csv").unlink()
        return r"holdout\.csv is missing"
    if name == "hash mismatch":
        (user / "model.onnx").write_bytes((user / "model.onnx").read_bytes() + b"\x00")
        return r"'content_sha256' is .*, model\.onnx's sha256 is"
    if name == "width":
        schema = {**card.feature_schema, "features": card.feature_schema["features"][:-1]}
        edit_card(user, {"feature_schema": schema})
        return rf"model\.onnx: input 'input' has shape .*need \[N, {card.width - 1}\]"
    if name == "task":
        change: dict[str, Any] = {"task": "regression", "target": {"name": "y"}, "acceptance": {}}
        if card.task == "regression":
            change = {"task": "multiclass_classification", "labels": {"0": "a", "1": "b", "2": "c"}, "acceptance": {}}
        edit_card(user, change)
        return r"model\.onnx: a (regression|multiclass_classification) model needs"
    if name == "holdout width":
        lines = (user / "holdout.csv").read_text().splitlines()
        (user / "holdout.csv").write_text("".join(line.rsplit(",", 1)[0] + "\n" for line in lines))
        return rf"holdout\.csv: {card.width} columns per row, the card needs {card.width + 1}"
    if name == "metrics":
        metric = next(iter(card.metrics))
        edit_card(user, {"holdout_metrics": {**card.holdout_metrics, metric: card.holdout_metrics[metric] + 0.05}})
        return rf"'holdout_metrics\.{metric}' is .*, model\.onnx scores"
    if name == "card":
        edit_card(user, {"model_version": "latest"})
        return r"metadata\.json: model card field 'model_version'"
    edit_card(user, {"feature_schema": {**card.feature_schema, "max_batch_rows": 10**9}})
    return r"'feature_schema\.max_batch_rows': 1000000000 is above \d+: .* 6 MB"


@pytest.mark.parametrize(
    "case", ["missing holdout", "hash mismatch", "width", "task", "holdout width", "metrics", "card", "batch"]
)
def test_an_inconsistent_package_is_refused_naming_the_file_and_field(
    case: str, model_package: Path, tmp_path: Path
) -> None:
    user = copy_package(model_package, tmp_path / "user")
    expected = broken(case, user, ModelCard.load(model_package))
    with pytest.raises(BuildInputError, match=expected):
        install(user, tmp_path)
    assert not (tmp_path / "dist").exists() and not (tmp_path / "contract").exists()


def test_a_pre_built_package_takes_no_training_arguments(model_package: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildInputError, match="is not trained"):
        build(tmp_path / "dist", 7, source={"package": str(model_package)})
    with pytest.raises(BuildInputError, match="not a directory"):
        install(tmp_path / "nowhere", tmp_path)


def test_the_check_command(model_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert package.main(["check", str(model_package)]) == 0
    assert json.loads(capsys.readouterr().out)["model_name"] == ModelCard.load(model_package).name
    user = copy_package(model_package, tmp_path / "user")
    (user / "baseline.csv").write_text("1,2\n")
    assert package.main(["check", str(user)]) == 2
    assert "baseline.csv:" in capsys.readouterr().err


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield client


def upload(s3: Any, source: Path, prefix: str, drop: tuple[str, ...] = ("model.tar.gz",)) -> str:
    for name in FILES:
        if name not in drop:
            s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=(source / name).read_bytes())
    return f"s3://{BUCKET}/{prefix}"


def test_an_s3_package_installs_with_its_card_read_from_beside_the_model(s3: Any, tmp_path: Path) -> None:
    from tests.model_packages import example_package

    source = example_package("diabetes")
    uri = upload(s3, source, "teams/forecast/v3/")
    card = package.install(uri, tmp_path / "dist", tmp_path / "contract", s3=s3)
    assert card == json.loads((source / "metadata.json").read_text())
    for name in FILES:
        assert (tmp_path / "dist" / name).read_bytes() == (source / name).read_bytes(), name
    # Without the trailing slash, the same prefix; with the default client (moto intercepts it too).
    assert package.install(uri.rstrip("/"), tmp_path / "again", None)["content_sha256"] == card["content_sha256"]


def test_an_s3_package_with_a_missing_file_or_another_model_is_refused(s3: Any, tmp_path: Path) -> None:
    from tests.model_packages import example_package

    source = example_package("wine")
    missing = upload(s3, source, "missing/", drop=("model.tar.gz", "baseline.csv"))
    with pytest.raises(BuildInputError, match=rf"model\.source\.package {missing}: baseline\.csv is missing"):
        package.install(missing, tmp_path / "dist", tmp_path / "contract", s3=s3)
    swapped = upload(s3, source, "swapped/")
    other = example_package("breast_cancer") / "model.onnx"
    s3.put_object(Bucket=BUCKET, Key="swapped/model.onnx", Body=other.read_bytes())
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    with pytest.raises(BuildInputError, match=rf"'content_sha256' is .*, model\.onnx's sha256 is {digest}"):
        package.install(swapped, tmp_path / "dist", tmp_path / "contract", s3=s3)
    assert not (tmp_path / "dist").exists()


class RefusingAbsentKeys:
    """S3 as a reader without s3:ListBucket sees it: GetObject of an absent key is 403 AccessDenied (Amazon S3 API
    Reference, GetObject, Permissions, https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)."""

    def __init__(self, s3: Any, can_list: bool) -> None:
        self.s3, self.can_list = s3, can_list

    def get_object(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self.s3.get_object(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchKey":
                raise
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject") from None

    def list_objects_v2(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        if not self.can_list:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjectsV2")
        return self.s3.list_objects_v2(**kwargs)


def test_an_absent_optional_file_answered_403_is_absent_when_the_prefix_can_be_listed(s3: Any, tmp_path: Path) -> None:
    from tests.model_packages import example_package

    source = example_package("breast_cancer")
    uri = upload(s3, source, "no-predictions/", drop=("model.tar.gz", "baseline_predictions.csv"))
    card = package.install(uri, tmp_path / "dist", tmp_path / "contract", s3=RefusingAbsentKeys(s3, can_list=True))
    assert card["content_sha256"] == ModelCard.load(source).content_sha256
    assert (tmp_path / "dist" / "baseline_predictions.csv").is_file()  # computed from the model
    with pytest.raises(BuildInputError, match=r"no-predictions/baseline_predictions\.csv: cannot read .*s3:ListBucket"):
        package.install(uri, tmp_path / "again", tmp_path / "contract", s3=RefusingAbsentKeys(s3, can_list=False))
