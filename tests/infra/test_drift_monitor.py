"""The built-in drift job runs hourly, may read only its prefixes, alarms per feature and routes drift events."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from ml_constructs.drift_monitor import DEFAULT_R2_MIN, DriftMonitor, quality_alarms
from ml_constructs.prediction_api import TEST_INFERENCE_ID_PREFIX
from model_container.card import ModelCard
from platform_config import MonitoringSettings
from tests.infra.small_stacks import outside_vpc
from tests.model_packages import model_package

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "lambda_src" / "drift_monitor"))  # the drift Lambda's code root, as in Lambda

from drift_engine import feature_drift, metrics_publisher  # noqa: E402
from drift_engine.baseline_store import (  # noqa: E402
    Baseline,
    parse_baseline_csv,
    parse_feature_schema,
    parse_prediction_baseline,
)
from drift_engine.capture_records import CapturedRow, CaptureStats  # noqa: E402
from drift_engine.ground_truth import QualityStream, parse_label_lines  # noqa: E402
from drift_engine.job import VersionRun, close_version  # noqa: E402
from drift_engine.model_output import ModelOutput  # noqa: E402
from drift_engine.payload_decoding import decode_predictions  # noqa: E402
from drift_engine.settings import Settings  # noqa: E402

from model_container.server.model import LoadedModel  # noqa: E402

__all__ = ["model_package"]  # the imported fixture, requested by name below
ENVS = ("dev", "staging", "prod")


def drift_function(synthesized, env: str) -> dict:
    [fn] = [
        f["Properties"]
        for f in synthesized.resources(env, "inference", "AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName") == f"mlapi-{env}-drift-monitor"
    ]
    return fn


@pytest.mark.parametrize("env", ENVS)
def test_job_reads_the_endpoints_capture_and_is_a_private_image_function(synthesized, env: str) -> None:
    fn = drift_function(synthesized, env)
    # One run at a time under the decision lock, not reserved concurrency (tests/infra/test_reserved_concurrency.py).
    assert fn["PackageType"] == "Image" and "VpcConfig" in fn and "ReservedConcurrentExecutions" not in fn
    variables = fn["Environment"]["Variables"]
    assert variables["ENDPOINT_NAME"] == f"mlapi-{env}-endpoint"
    assert variables["VARIANT_NAME"] == "primary" and variables["CAPTURE_PREFIX"] == "capture"
    assert json.loads(variables["THRESHOLDS_JSON"])["psi_alarm"] == 0.25
    # The job leaves out the records the API marks as the pipeline's test traffic (the same prefix).
    assert variables["TEST_INFERENCE_ID_PREFIX"] == TEST_INFERENCE_ID_PREFIX


@pytest.mark.parametrize("env", ENVS)
def test_job_is_scheduled_hourly_and_drift_events_reach_the_topic(synthesized, env: str) -> None:
    rules = [r["Properties"] for r in synthesized.resources(env, "inference", "AWS::Events::Rule").values()]
    assert any(r.get("ScheduleExpression") == "cron(5 * * * ? *)" for r in rules)
    [drift] = [r for r in rules if r.get("EventPattern", {}).get("source") == ["ml-platform.drift-monitor"]]
    assert drift["EventPattern"]["detail-type"] == ["Model Drift Detected"]
    [topic] = synthesized.resources(env, "inference", "AWS::SNS::Topic")
    assert [t["Arn"] for t in drift["Targets"]] == [{"Ref": topic}]


@pytest.mark.parametrize("env", ENVS)
def test_one_alarm_per_feature_plus_summary_alarms(synthesized, env: str) -> None:
    features = ModelCard.load(ROOT / "model_container/dist").feature_names  # the model the app deploys
    names = {
        a["Properties"]["AlarmName"] for a in synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()
    }
    assert {f"mlapi-{env}-drift-{feature}" for feature in features} <= names
    assert {f"mlapi-{env}-drift-features", f"mlapi-{env}-drift-prediction"} <= names


@pytest.mark.parametrize("env", ENVS)
def test_job_writes_only_its_report_prefix(synthesized, env: str) -> None:
    template = synthesized.templates[(env, "inference")]
    [policy] = [
        r["Properties"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::ManagedPolicy" and k.startswith("DriftJob")
    ]
    puts = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "s3:PutObject"]
    assert len(puts) == 1
    assert f"/drift-reports/mlapi-{env}-endpoint/*" in json.dumps(puts[0]["Resource"])


def _listed(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _job_statements(synthesized, env: str) -> list[dict]:
    template = synthesized.templates[(env, "inference")]
    return [
        statement
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::ManagedPolicy" and k.startswith("DriftJob")
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
    ]


@pytest.mark.parametrize("env", ENVS)
def test_job_reads_which_build_served_from_its_environments_release_history(synthesized, env: str) -> None:
    """Issue 13 item 11: the job looks the serving build's content hash up in `<prefix>-releases` (status index)."""
    variables = drift_function(synthesized, env)["Environment"]["Variables"]
    [table_id] = [
        logical_id
        for logical_id, t in synthesized.resources(env, "data", "AWS::DynamoDB::Table").items()
        if t["Properties"].get("TableName") == f"mlapi-{env}-releases"
    ]
    # The data stack's table itself (a cross-stack reference to its Ref, the table name), not a rebuilt name.
    assert variables["RELEASES_TABLE"]["Fn::ImportValue"].startswith(f"mlapi-{env}-data:ExportsOutputRef{table_id}")
    [query] = [s for s in _job_statements(synthesized, env) if s["Action"] == "dynamodb:Query"]
    resources = json.dumps(query["Resource"])
    # "IAM policy to grant access to a specific DynamoDB table and its indexes" (DynamoDB Developer Guide): the index
    # is its own resource; this job needs exactly the status index and nothing more.
    table = json.dumps(variables["RELEASES_TABLE"])  # the data stack's table, as the environment names it
    assert len(query["Resource"]) == 2 and resources.count(table) == 2
    assert resources.count(":table/") == 2 and resources.count("/index/status-index") == 1
    # The table is encrypted with the data key (stacks/data_stack.py), the key the capture config names too: the
    # job may decrypt with it, unconditioned (Query returns decrypted items to a caller allowed to use the key).
    [config] = synthesized.resources(env, "inference", "AWS::SageMaker::EndpointConfig").values()
    data_key = config["Properties"]["DataCaptureConfig"]["KmsKeyId"]
    assert any(
        "kms:Decrypt" in s["Action"] and data_key in _listed(s["Resource"]) and "Condition" not in s
        for s in _job_statements(synthesized, env)
    )


@pytest.mark.parametrize("env", ENVS)
def test_a_run_that_gives_up_after_its_retries_alarms_on_the_topic(synthesized, env: str) -> None:
    """Issue 14: every AWS error ends in success or an explicit "gave up" notice. A drift run that fails after Lambda's
    two retries goes to the function's dead-letter queue (its on-failure destination); a queued message alarms."""
    fn = drift_function(synthesized, env)
    queue = fn["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
    alarms = synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()
    [alarm] = [a["Properties"] for a in alarms if a["Properties"]["AlarmName"] == f"mlapi-{env}-drift-run-gave-up"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    [dimension] = alarm["Dimensions"]
    assert dimension["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    [topic] = synthesized.resources(env, "inference", "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


# ---------------------------------------------------------------------------------------------------------------
# Per task (issue 16): the quality alarms follow the card, and every alarm watches a metric the job publishes
# ---------------------------------------------------------------------------------------------------------------


def monitor_template(card: ModelCard, outdir: Path) -> Template:
    """A small stack holding only a DriftMonitor of `card`'s model, with ground truth configured."""
    stack = Stack(App(outdir=str(outdir)), "Drift", env={"account": "123456789012", "region": "eu-west-1"})
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    DriftMonitor(
        stack,
        "Drift",
        prefix="mlapi-test",
        settings=MonitoringSettings(ground_truth_prefix="ground-truth/"),
        endpoint_name="mlapi-test-endpoint",
        variant_name="primary",
        model_version=card.version,
        capture_bucket_name="capture",
        capture_prefix="capture",
        artifacts_bucket_name="artifacts",
        reports_bucket_name="reports",
        topic=sns.Topic(stack, "Topic"),
        placement=outside_vpc(key),
        task=card.task,
        acceptance=card.acceptance,
        feature_names=card.feature_names,
    )
    return Template.from_stack(stack)


def published_by_the_job(card: ModelCard, package: Path, endpoint: str) -> list[dict[str, Any]]:
    """The metric data the drift job's own code publishes for the package's holdout rows served by its model,
    joined with their true labels: every feature, prediction and quality metric of the task."""
    metadata = json.loads((package / "metadata.json").read_text())
    output, features = ModelOutput.from_metadata(metadata), parse_feature_schema(metadata)
    baseline = Baseline(
        card.version,
        features,
        parse_baseline_csv((package / "baseline.csv").read_text(), len(features)),
        parse_prediction_baseline((package / "baseline_predictions.csv").read_text(), output),
        card.content_sha256,
        output=output,
    )
    holdout = np.loadtxt(package / "holdout.csv", delimiter=",", ndmin=2)
    model = LoadedModel.load(package)
    body = model.json_body(*model.predict(holdout[:, 1:].astype(np.float32)))
    predictions = decode_predictions({"data": body.decode(), "encoding": "JSON"})
    rows = [CapturedRow(list(x), p, "record") for x, p in zip(holdout[:, 1:].tolist(), predictions, strict=True)]
    labels = parse_label_lines([("g:1", json.dumps({"eventId": "record", "labels": holdout[:, 0].tolist()}))])
    settings = Settings.from_env(
        {
            "ENDPOINT_NAME": endpoint,
            "CAPTURE_BUCKET": "c",
            "BASELINE_BUCKET": "b",
            "REPORT_BUCKET": "r",
            "THRESHOLDS_JSON": json.dumps({"min_samples": 10}),
        }
    )
    stream = feature_drift.VersionStream(baseline, settings.thresholds, settings.probability_of)
    run = VersionRun(card.version, stream, QualityStream(labels, settings.probability_of, output=output), {})
    run.add("record", rows)
    report = close_version(settings, run)
    when = datetime(2026, 11, 25, 12, tzinfo=UTC)
    return [
        *metrics_publisher.endpoint_metrics(endpoint, CaptureStats(), when),
        *metrics_publisher.version_metrics(endpoint, report, when),
    ]


def _dimensions(dimensions: list[dict[str, Any]]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in dimensions}


def test_every_drift_alarm_watches_a_metric_the_job_publishes_for_its_task(model_package: Path, tmp_path: Path) -> None:
    """The class check: the runtime's publisher run on the task's real predictions and labels publishes, under the
    function's namespace, every (metric name, dimensions) that one of the construct's alarms watches."""
    card = ModelCard.load(model_package)
    template = monitor_template(card, tmp_path)
    [function] = template.find_resources("AWS::Lambda::Function", {"Properties": {"PackageType": "Image"}}).values()
    variables = function["Properties"]["Environment"]["Variables"]
    published = published_by_the_job(card, model_package, variables["ENDPOINT_NAME"])
    watched = {
        name: alarm["Properties"]
        for name, alarm in template.find_resources("AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("Namespace") != "AWS/SQS"  # the dead-letter alarm watches the queue
    }
    names = {alarm["AlarmName"] for alarm in watched.values()}
    quality = quality_alarms(card.task, card.acceptance, MonitoringSettings().min_accuracy)
    expected = (
        {f"mlapi-test-drift-{f}" for f in card.feature_names}
        | {"mlapi-test-drift-features", "mlapi-test-drift-prediction"}
        | {f"mlapi-test-model-{a.metric.replace('_', '-')}" for a in quality}
    )
    assert names == expected
    # The card's acceptance bounds each become an alarm at that bound, in the metric's direction.
    for metric, bound in card.acceptance.items():
        ((side, threshold),) = bound.items()
        [alarm] = [a for a in watched.values() if a["AlarmName"] == f"mlapi-test-model-{metric.replace('_', '-')}"]
        assert alarm["Threshold"] == threshold
        assert alarm["ComparisonOperator"] == ("LessThanThreshold" if side == "min" else "GreaterThanThreshold")
    for alarm in watched.values():
        assert alarm["Namespace"] == variables["METRICS_NAMESPACE"]
        matching = [
            datum
            for datum in published
            if datum["MetricName"] == alarm["MetricName"]
            and _dimensions(datum["Dimensions"]) == _dimensions(alarm["Dimensions"])
        ]
        assert matching, f"{alarm['AlarmName']} watches {alarm['MetricName']} {alarm['Dimensions']}: never published"


def test_quality_alarms_without_acceptance_use_the_documented_defaults() -> None:
    settings = MonitoringSettings()
    for task in ("binary_classification", "multiclass_classification"):
        assert [(a.metric, a.side, a.threshold) for a in quality_alarms(task, {}, settings.min_accuracy)] == [
            ("accuracy", "min", settings.min_accuracy)
        ]
    assert [(a.metric, a.side, a.threshold) for a in quality_alarms("regression", {}, 0.9)] == [
        ("r2", "min", DEFAULT_R2_MIN)
    ]
    with pytest.raises(ValueError, match="a regression model's metrics are rmse, mae, r2"):
        quality_alarms("regression", {"accuracy": {"min": 0.9}}, 0.9)


def test_each_feature_adds_one_resource_and_a_card_past_the_cap_is_refused_naming_the_field(tmp_path: Path) -> None:
    """CloudFormation declares at most 500 resources per template (CloudFormation User Guide, "CloudFormation quotas",
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html): the width's share of
    the inference stack is measured here, and a card past MAX_ALARMED_FEATURES is refused at synth."""
    from types import SimpleNamespace

    from ml_constructs.drift_monitor import MAX_ALARMED_FEATURES, check_feature_alarms
    from model_container.card import CardError
    from tests.model_packages import example_package

    card = ModelCard.load(example_package("breast_cancer"))

    def wide(width: int) -> Any:
        names = [f"feature_{i}" for i in range(width)]
        return SimpleNamespace(version=card.version, task=card.task, acceptance=card.acceptance, feature_names=names)

    resources = {w: len(monitor_template(wide(w), tmp_path / str(w)).to_json()["Resources"]) for w in (10, 20)}
    assert resources[20] - resources[10] == 10  # one drift alarm a feature, nothing else
    assert len(check_feature_alarms(wide(MAX_ALARMED_FEATURES).feature_names)) == MAX_ALARMED_FEATURES
    with pytest.raises(CardError, match=rf"'feature_schema\.features': {MAX_ALARMED_FEATURES + 1} features.*500"):
        monitor_template(wide(MAX_ALARMED_FEATURES + 1), tmp_path / "wide")
