"""The model card names, tags and describes what the platform deploys, for every task.

ModelRelease (ml_constructs/model_endpoint.py) reads the card of the package `make model` built: the SageMaker
resources' names and tags, the container's MODEL_VERSION, the serving image's labels (Docker build args), the
batch output's fields and the dashboard's prediction metrics follow it. Each example package (binary, multiclass,
regression; tests/model_packages.py) goes through a small stack of the model's constructs, and the multiclass and
regression ones through a whole environment's synth with every nag pack.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from ml_constructs.alarm_topic import alarm_topic
from ml_constructs.batch_inference import BatchInference
from ml_constructs.drift_monitor import METRICS_NAMESPACE, quality_alarms
from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.endpoint_alarms import PREDICTION_METRICS
from ml_constructs.model_endpoint import ModelEndpoint, ModelRelease
from ml_constructs.nag import add_rule_packs
from model_container.card import MULTICLASS, REGRESSION, CardError, ModelCard
from platform_config import EndpointSettings, ModelSource, load_environments
from platform_config.settings import BatchSettings, MonitoringSettings
from tests.infra.cfn_resolve import Resolver
from tests.infra.small_stacks import imported_vpc
from tests.model_packages import example_package

ROOT = Path(__file__).resolve().parents[2]


def test_the_release_is_what_the_card_says(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    release = ModelRelease.from_metadata_dir(str(model_package))
    assert (release.name, release.version, release.task) == (card.name, card.version, card.task)
    assert release.content_hash == card.content_sha256 and release.label_names == tuple(card.label_names)
    assert release.slug == card.version.replace(".", "-")
    assert release.tags == {
        "model-name": card.name,
        "model-version": card.version,
        "model-task": card.task,
        "model-hash": card.content_sha256[:16],
    }
    assert release.image_build_args == {
        "MODEL_NAME": card.name,
        "MODEL_VERSION": card.version,
        "MODEL_DESCRIPTION": card.description,
    }


def test_a_card_without_its_content_hash_is_refused_naming_the_field(tmp_path: Path) -> None:
    raw = json.loads((example_package("breast_cancer") / "metadata.json").read_text())
    del raw["content_sha256"]
    (tmp_path / "metadata.json").write_text(json.dumps(raw))
    with pytest.raises(CardError, match="'content_sha256'"):
        ModelRelease.from_metadata_dir(str(tmp_path))


def test_a_missing_card_says_to_build_the_package(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="make model"):
        ModelRelease.from_metadata_dir(str(tmp_path))


# --- the model's constructs in a small stack, per task ------------------------------------------------------------
@dataclasses.dataclass
class Small:
    card: ModelCard
    template: dict[str, Any]
    assets: dict[str, Any]

    def one(self, resource_type: str) -> dict[str, Any]:
        [resource] = [r for r in self.template["Resources"].values() if r["Type"] == resource_type]
        return dict(resource["Properties"])


@pytest.fixture(scope="module")
def small_stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Small]:
    built = {}
    for name in ("breast_cancer", "wine", "diabetes"):
        package = example_package(name)
        outdir = tmp_path_factory.mktemp(f"release-{name}")
        app = App(outdir=str(outdir))
        stack = Stack(app, "Model", env={"account": "123456789012", "region": "eu-west-1"})
        vpc = imported_vpc(stack)
        key = kms.Key(stack, "Key")
        logs = LogPolicy(key, 30, RemovalPolicy.DESTROY)
        endpoint = ModelEndpoint(
            stack, "Model", endpoint_name="mlapi-test-endpoint",
            settings=EndpointSettings(initial_instance_count=1, min_capacity=1, max_capacity=2),
            source=dataclasses.replace(ModelSource(), artifact_dir=str(package)),
            release=ModelRelease.from_metadata_dir(str(package)), vpc=vpc,
            subnets=ec2.SubnetSelection(subnet_group_name="inference"),
            security_group=ec2.SecurityGroup(stack, "Sg", vpc=vpc), data_key=key,
            capture_bucket=s3.Bucket.from_bucket_name(stack, "Capture", "capture-bucket"),
            capture_bucket_name="capture-bucket", logs=logs, commit="abc123",
        )  # fmt: skip
        BatchInference(
            stack, "Batch", prefix="mlapi-test", settings=BatchSettings(enabled=True), model_endpoint=endpoint,
            bucket_name="artifacts", data_key=key, topic=alarm_topic(stack, "Topic", prefix="p", key=key, emails=()),
            topic_key=key, logs=logs,
        )  # fmt: skip
        assembly = app.synth()
        artifact = assembly.get_stack_by_name("Model")
        [assets_file] = Path(outdir).glob("Model.assets.json")
        built[name] = Small(ModelCard.load(package), artifact.template, json.loads(assets_file.read_text()))
    return built


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "diabetes"])
def test_names_tags_and_environment_follow_the_card(small_stacks: dict[str, Small], name: str) -> None:
    small = small_stacks[name]
    card = small.card
    model = small.one("AWS::SageMaker::Model")
    assert model["ModelName"].startswith(f"mlapi-test-endpoint-{card.version.replace('.', '-')}-")
    assert model["PrimaryContainer"]["Environment"]["MODEL_VERSION"] == card.version
    for resource_type in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"):
        tags = {t["Key"]: t["Value"] for t in small.one(resource_type)["Tags"]}
        assert tags == {
            "model-name": card.name,
            "model-version": card.version,
            "model-task": card.task,
            "model-hash": card.content_sha256[:16],
            "commit": "abc123",
        }, resource_type


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "diabetes"])
def test_the_serving_image_is_labelled_from_the_card_without_docker_at_synth(
    small_stacks: dict[str, Small], name: str
) -> None:
    small = small_stacks[name]
    [image] = small.assets["dockerImages"].values()
    # The label values reach the Dockerfile's ARGs as build args (cdk-assets passes them at publish time).
    assert image["source"]["dockerBuildArgs"] == {
        "MODEL_NAME": small.card.name,
        "MODEL_VERSION": small.card.version,
        "MODEL_DESCRIPTION": small.card.description,
    }
    dockerfile = (ROOT / image["source"]["dockerFile"]).read_text()
    for arg in image["source"]["dockerBuildArgs"]:
        assert f"ARG {arg}" in dockerfile, arg
    # The model data is the package's own model.tar.gz, uploaded as a file asset.
    [model_data] = [a for a in small.assets["files"].values() if a["source"]["path"].endswith(".tar.gz")]
    assert model_data["source"]["packaging"] == "file"


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "diabetes"])
def test_the_batch_report_names_the_output_fields_of_the_task(small_stacks: dict[str, Small], name: str) -> None:
    small = small_stacks[name]
    card = small.card
    machine = Resolver(small.template).resolve(small.one("AWS::StepFunctions::StateMachine"))
    definition = json.loads(machine["DefinitionString"])
    fields = definition["States"]["Prepare"]["Parameters"]["output_fields"].split(",")
    assert fields[-1] == "model_version"
    if card.task == REGRESSION:
        assert fields == ["value", "model_version"]
    elif card.task == MULTICLASS:  # text/csv: one probability column per class, in label order
        assert fields == ["label", *card.label_names, "model_version"] and len(fields) == card.classes + 2
    else:
        assert fields == ["label", "probability", "model_version"]


# --- a whole environment per task, every nag pack on --------------------------------------------------------------
def environment_synth(
    package: Path, contract_dir: Path, outdir: Path, monitoring: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """dev alone (PlatformStage, as build_stages adds it) serving `package` with the contract generated from its
    card, cdk.json's settings with `monitoring` over its defaults; raises on any unacknowledged nag finding.
    Returns its templates by stack name."""
    from model_container.contract import generate
    from stacks.platform_stage import PlatformStage

    assert generate.main(["--card", str(package), "--dir", str(contract_dir)]) == 0
    context = copy.deepcopy(json.loads((ROOT / "cdk.json").read_text())["context"])
    if monitoring:
        defaults = context["ml-platform"]["defaults"]
        defaults["monitoring"] = {**defaults.get("monitoring", {}), **monitoring}
    [dev] = [e for e in load_environments(context["ml-platform"], default_account="123456789012") if e.name == "dev"]
    dev = dataclasses.replace(dev, model=dataclasses.replace(dev.model, artifact_dir=str(package)))
    app = App(context=context, outdir=str(outdir))
    stage = PlatformStage(app, "dev", settings=dev, commit="abc123", contract_dir=contract_dir)
    add_rule_packs(app)
    app.synth()
    return {s.stack_name: s.template for s in stage.synth().stacks}


@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_an_environment_synthesizes_for_a_multiclass_and_a_regression_model(tmp_path: Path, name: str) -> None:
    package = example_package(name)
    card = ModelCard.load(package)
    # With labels uploaded (monitoring.ground_truth_prefix) the drift job also alarms on the card's quality metrics.
    monitoring = {"ground_truth_prefix": "ground-truth/"}
    templates = environment_synth(package, tmp_path / "contract", tmp_path / "cdk.out", monitoring)
    inference = templates["mlapi-dev-inference"]["Resources"]

    def of_type(resource_type: str) -> list[dict[str, Any]]:
        return [r["Properties"] for r in inference.values() if r["Type"] == resource_type]

    [endpoint] = of_type("AWS::SageMaker::Endpoint")
    tags = {t["Key"]: t["Value"] for t in endpoint["Tags"]}
    assert (tags["model-name"], tags["model-version"], tags["model-task"]) == (card.name, card.version, card.task)
    # The gateway validates against this card's features and answers with this task's response model.
    models = {m["Name"]: m["Schema"] for m in of_type("AWS::ApiGateway::Model")}
    request = json.dumps(models["PredictRequest"])
    assert all(f'"{feature}"' in request for feature in card.feature_names)
    assert models["PredictResponse"] == json.loads((tmp_path / "contract" / "response.schema.json").read_text())
    # The dashboard graphs what this task's container publishes; no other task's prediction metric.
    [dashboard] = of_type("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["DashboardBody"])
    others = {m for task, names in PREDICTION_METRICS.items() if task != card.task for m in names}
    assert all(metric in body for metric in PREDICTION_METRICS[card.task])
    assert not any(metric in body for metric in others - set(PREDICTION_METRICS[card.task]))
    # Drift alarms: one PSI alarm per feature of this card (and no other), plus the prediction's drift.
    alarms = {a["AlarmName"]: a for a in of_type("AWS::CloudWatch::Alarm") if isinstance(a.get("AlarmName"), str)}
    psi = [a for a in alarms.values() if a.get("MetricName") == "PSI"]
    drifted = {d["Value"] for a in psi for d in a["Dimensions"] if d["Name"] == "Feature"}
    assert drifted == set(card.feature_names)
    assert {f"mlapi-dev-drift-{f}" for f in card.feature_names} <= set(alarms)
    assert alarms["mlapi-dev-drift-prediction"]["MetricName"] == "PredictionPSI"
    # Ground-truth quality alarms: the card's task's metrics, at the card's acceptance bounds (the model gate's).
    quality = {
        name.removeprefix("mlapi-dev-model-"): alarm
        for name, alarm in alarms.items()
        if name.startswith("mlapi-dev-model-") and alarm.get("Namespace") == METRICS_NAMESPACE
    }
    expected = quality_alarms(card.task, card.acceptance, MonitoringSettings().min_accuracy)
    assert sorted(quality) == sorted(a.metric.replace("_", "-") for a in expected) and expected
    for bound in expected:
        alarm = quality[bound.metric.replace("_", "-")]
        assert (alarm["MetricName"], alarm["Threshold"]) == (bound.metric_name, bound.threshold)
        below = "LessThanThreshold" if bound.side == "min" else "GreaterThanThreshold"
        assert alarm["ComparisonOperator"] == below
        assert bound.metric in card.acceptance or bound.metric in ("accuracy", "r2")  # a documented default
    if card.task == REGRESSION:
        assert {"rmse", "mae", "r2"} <= set(quality) and "accuracy" not in quality
    else:
        assert {"accuracy", "macro-f1", "min-class-recall"} <= set(quality) and "roc-auc" not in quality


def test_the_configured_model_source_reaches_the_image_build_as_json() -> None:
    from ml_constructs.model_endpoint import model_source_build_arg

    source = {"train": "model_container.models.wine.train:train", "data": "model_container.models.wine.train:load"}
    [(name, value)] = model_source_build_arg(source).items()
    assert name == "MODEL_SOURCE" and json.loads(value) == source
    assert model_source_build_arg(None) == {}  # unset: the Dockerfile builds its default source
