"""The pipeline's own test traffic never starts a retraining run (issue 13, items 3 and 4).

Feedback loop: the staging load test and the production verification send a handful of rows thousands of times;
scored by the drift job, such traffic drifts on every feature and, before this, the retraining rule (source and
detail-type only, every environment on one default bus) started a run whose load test drifted again. Checked here
end to end with the synthesized app and the real code:
- the traffic is what scripts/smoke_test.py sends (its own request generator), marked the way the synthesized API
  marks it: the integration's request template rendered with airspeed for the pipeline's test key, as
  tests/infra/test_mapping_templates.py renders every template, and the inference id SageMaker writes into the
  capture record's eventMetadata.inferenceId (InvokeEndpoint: InferenceId "is added to the captured data");
- the drift job (lambda_src/drift_monitor) runs on those capture records next to ordinary traffic, against the
  build's own published baseline, in moto S3, and must send no drift event and count the test records it skipped;
- the synthesized retraining rules, evaluated with moto's EventBridge pattern matcher, match production's drift
  and Model Monitor events only: not staging's or dev's, not another account's.
Limits: the load test's paced rate fits the usage plan of the key it uses, and every plan fits under the WAF
rate-based rules that apply to it (AWS WAF, "Aggregating rate-based rules in AWS WAF").
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import airspeed
import boto3
import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from moto import mock_aws
from moto.events.models import EventPattern, EventPatternParser

from ml_constructs import retraining_trigger
from ml_constructs.decision_lock import DecisionLockTable
from model_container.card import MULTICLASS, REGRESSION, ModelCard
from platform_config import load_environments, load_pipeline
from scripts import smoke_test
from scripts.publish_baseline import publish
from tests.infra.small_stacks import outside_vpc
from tests.infra.test_mapping_templates import Input, Util, java_velocity

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "lambda_src" / "drift_monitor"))  # the drift Lambda's code root, as in Lambda

from drift_engine import baseline_store  # noqa: E402
from drift_engine.drift_events import publish_drift_events  # noqa: E402
from drift_engine.feature_drift import ALARM, FeatureDrift  # noqa: E402
from drift_engine.job import AwsClients, run_drift_job  # noqa: E402
from drift_engine.reports import VersionReport  # noqa: E402
from drift_engine.settings import Settings  # noqa: E402
from drift_engine.window import Window  # noqa: E402

DIST = ROOT / "model_container" / "dist"
INFERENCE_HEADER = "integration.request.header.X-Amzn-SageMaker-Inference-Id"
WINDOW = Window(datetime(2026, 11, 25, 12, tzinfo=UTC), datetime(2026, 11, 25, 13, tzinfo=UTC))
OTHER_ACCOUNT = "999999999999"
VERIFY_REQUESTS = 50  # VerifyProduction's --requests (ml_constructs/delivery_pipeline.py)
WAF_WINDOW_S = 300


# ---------------------------------------------------------------------------------------------------------------
# Config and template helpers
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(cdk_context: dict[str, Any]) -> Any:
    ml = cdk_context["ml-platform"]
    environments = load_environments(ml, default_account="123456789012")
    return {env.name: env for env in environments}, load_pipeline(ml, environments)


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """Ref and Fn::Join, the only intrinsics in the values read here."""
    if isinstance(value, list):
        return [resolve(item, refs) for item in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return refs[value["Ref"]]
        if set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve(part, refs)) for part in parts)
        return {key: resolve(item, refs) for key, item in value.items()}
    return value


def fake_key_id(logical_id: str) -> str:
    return f"key{abs(hash(logical_id)) % 10**8:08d}"


def api_keys(synthesized, env: str) -> dict[str, str]:
    """API key name -> the id its Ref resolves to (a stand-in for the id API Gateway assigns)."""
    keys = synthesized.resources(env, "inference", "AWS::ApiGateway::ApiKey")
    return {key["Properties"]["Name"]: fake_key_id(logical_id) for logical_id, key in keys.items()}


def pipeline_test_key(synthesized, env: str) -> str:
    """The key the pipeline's smoke and load tests use: its own, or (before it had one) the standard tier's."""
    keys = api_keys(synthesized, env)
    [name] = [n for n in keys if n.endswith("-pipeline-tests")] or [n for n in keys if n.endswith("-standard")]
    return keys[name]


def predict_integration(synthesized, env: str) -> dict[str, Any]:
    """The predict method's integration request mapping, with the stage's variables under "StageVariables"."""
    methods = synthesized.resources(env, "inference", "AWS::ApiGateway::Method").values()
    [integration] = [m["Properties"]["Integration"] for m in methods if "Integration" in m["Properties"]]
    [stage] = synthesized.resources(env, "inference", "AWS::ApiGateway::Stage").values()
    refs = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}
    keys = synthesized.resources(env, "inference", "AWS::ApiGateway::ApiKey")
    refs.update({logical_id: fake_key_id(logical_id) for logical_id in keys})
    mapping = {k: v for k, v in integration.items() if k in ("RequestParameters", "RequestTemplates")}
    return resolve({**mapping, "StageVariables": stage["Properties"].get("Variables", {})}, refs)


def inference_id(integration: dict[str, Any], key_id: str, body: bytes, client_headers: dict[str, str]) -> str:
    """The InferenceId SageMaker receives for one request: the template's override, else the standard mapping.

    Rendered as tests/infra/test_mapping_templates.py renders integration templates (Velocity semantics), with
    $stageVariables, which that renderer does not model. `client_headers` are what the caller sends; they reach the
    integration only through a method.request.header mapping, which the API does not have for this header."""
    request_id = str(uuid.uuid4())
    mapping = integration["RequestParameters"][INFERENCE_HEADER]
    standard = {"context.requestId": request_id}.get(mapping) or client_headers.get(
        mapping.removeprefix("method.request.header."), ""
    )
    override: dict[str, str] = {}
    context = {"requestId": request_id, "identity": {"apiKeyId": key_id}, "requestOverride": {"header": override}}
    namespace = {
        "util": Util(),
        "input": Input(body.decode()),
        "context": context,
        "stageVariables": integration["StageVariables"],
    }
    with java_velocity():
        rendered = airspeed.Template(integration["RequestTemplates"]["application/json"]).merge(namespace)
    assert json.loads(rendered) == json.loads(body)  # the model still sees the caller's body
    return override.get("X-Amzn-SageMaker-Inference-Id", standard)


# ---------------------------------------------------------------------------------------------------------------
# The drift job on captured traffic
# ---------------------------------------------------------------------------------------------------------------


def capture_record(body: bytes, response: dict[str, Any], inference: str) -> str:
    """One SageMaker data-capture line (sagemaker-hosting.md: JSON bodies captured as text, eventMetadata)."""
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": body.decode(),
                    "encoding": "JSON",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps(response),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {
                "eventId": str(uuid.uuid4()),
                "inferenceId": inference,
                "inferenceTime": "2026-11-25T12:30:00Z",
            },
            "eventVersion": "0",
        }
    )


def prediction(card: ModelCard, score: list[float], version: str) -> dict[str, Any]:
    """One answer of the container for the card's task (the serving contract), from a baseline_predictions.csv
    row: P(positive) (binary), one probability per class (multiclass), or the value (regression)."""
    if card.task == REGRESSION:
        return {"value": score[0], "model_version": version}
    if card.task == MULTICLASS:
        label = max(range(len(score)), key=score.__getitem__)
        return {
            "label": label,
            "probabilities": dict(zip(card.label_names, score, strict=True)),
            "model_version": version,
        }
    return {"label": int(score[0] >= 0.5), "probability": score[0], "model_version": version}


def served(body: bytes, version: str, scores: list[list[float]] | None = None) -> dict[str, Any]:
    """The response to `body`: `scores` per row, or else one confident answer for every row (test traffic)."""
    card = ModelCard.load(DIST)
    rows = json.loads(body)["instances"]
    if scores is None:
        confident = [0.9] if card.task != MULTICLASS else [0.9, *[0.1 / (card.classes - 1)] * (card.classes - 1)]
        scores = [baseline_scores()[0] if card.task == REGRESSION else confident] * len(rows)
    return {"predictions": [prediction(card, score, version) for score in scores]}


def baseline_scores() -> list[list[float]]:
    """baseline_predictions.csv: one row per baseline row (one column, or one per class for multiclass)."""
    lines = (DIST / "baseline_predictions.csv").read_text().splitlines()
    return [[float(v) for v in line.split(",")] for line in lines if line]


def ordinary_traffic(version: str, key_id: str, integration: dict[str, Any]) -> list[str]:
    """Consumers' requests drawn from the build's own baseline rows and scores: no drift of their own."""
    rows = [[float(v) for v in line.split(",")] for line in (DIST / "baseline.csv").read_text().splitlines()]
    scores = baseline_scores()
    lines = []
    for start in range(0, len(rows), 5):
        body = json.dumps({"instances": rows[start : start + 5]}).encode()
        lines.append(
            capture_record(
                body, served(body, version, scores[start : start + 5]), inference_id(integration, key_id, body, {})
            )
        )
    return lines


class Recorder:
    """CloudWatch and EventBridge stand-ins that keep what the job sends."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.metrics.extend(kwargs["MetricData"])

    def put_events(self, **kwargs: Any) -> dict[str, Any]:
        self.entries.extend(kwargs["Entries"])
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in kwargs["Entries"]]}

    def metric(self, name: str) -> list[float]:
        return [d["Value"] for d in self.metrics if d["MetricName"] == name and len(d["Dimensions"]) == 1]


@dataclass
class DriftRun:
    summary: dict[str, Any]
    recorder: Recorder


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("capture", "models", "reports"):
            s3.create_bucket(Bucket=bucket)
        publish(DIST, "models", s3)
        baseline_store.clear_cache()
        yield s3
        baseline_store.clear_cache()


def drift_job_env(synthesized, env: str) -> dict[str, str]:
    """The synthesized drift Lambda's settings that decide what is analysed, with moto's bucket names."""
    functions = synthesized.resources(env, "inference", "AWS::Lambda::Function").values()
    [variables] = [
        f["Properties"]["Environment"]["Variables"]
        for f in functions
        if "drift-monitor" in json.dumps(f["Properties"].get("FunctionName", ""))
    ]
    kept = {
        k: v for k, v in variables.items() if k in ("THRESHOLDS_JSON", "TEST_INFERENCE_ID_PREFIX", "PROBABILITY_OF")
    }
    return {
        **kept,
        "ENDPOINT_NAME": variables["ENDPOINT_NAME"],
        "VARIANT_NAME": variables["VARIANT_NAME"],
        "CAPTURE_BUCKET": "capture",
        "CAPTURE_PREFIX": variables["CAPTURE_PREFIX"],
        "BASELINE_BUCKET": "models",
        "BASELINE_PREFIX": variables.get("BASELINE_PREFIX", "baselines/"),
        "REPORT_BUCKET": "reports",
        "METRICS_NAMESPACE": "Test/Drift",
    }


def run_job(s3: Any, env: dict[str, str], lines: list[str]) -> DriftRun:
    settings = Settings.from_env(env)
    s3.put_object(
        Bucket="capture", Key=f"{settings.capture_root}2026/11/25/12/capture.jsonl", Body="\n".join(lines) + "\n"
    )
    recorder = Recorder()
    summary = run_drift_job(settings, WINDOW, AwsClients(s3=s3, cloudwatch=recorder, events=recorder))
    return DriftRun(summary, recorder)


def pipeline_traffic(synthesized, env: str, requests: int, key_id: str) -> list[str]:
    """What one smoke-test run leaves in `env`'s data capture, through the API's marking for `key_id`."""
    version = ModelCard.load(DIST).version
    integration = predict_integration(synthesized, env)
    rows = smoke_test.sample_rows(ModelCard.load(DIST).feature_schema, 5)  # the pipeline's --rows
    return [
        capture_record(body, served(body, version), inference_id(integration, key_id, body, {}))
        for body in smoke_test.model_bodies(rows, requests)
    ]


def test_the_staging_load_test_raises_no_drift_event(synthesized, config, aws) -> None:
    _, pipeline = config
    key = pipeline_test_key(synthesized, "staging")
    lines = pipeline_traffic(synthesized, "staging", pipeline.load_test_requests, key)
    run = run_job(aws, drift_job_env(synthesized, "staging"), lines)
    assert run.recorder.entries == [], (
        f"the load test's own traffic drifts: {run.summary['versions']} -> a retraining run whose load test drifts "
        "again"
    )
    assert run.summary["rows_total"] == 0 and run.summary["capture"]["test_traffic_records"] == len(lines)
    assert run.recorder.metric("TestTrafficRecords") == [float(len(lines))]


def test_the_production_verification_is_left_out_of_production_drift(synthesized, aws) -> None:
    key = pipeline_test_key(synthesized, "prod")
    integration = predict_integration(synthesized, "prod")
    version = ModelCard.load(DIST).version
    consumers = ordinary_traffic(version, api_keys(synthesized, "prod")["mlapi-prod-api-standard"], integration)
    verification = pipeline_traffic(synthesized, "prod", VERIFY_REQUESTS, key)
    run = run_job(aws, drift_job_env(synthesized, "prod"), consumers + verification)
    assert run.recorder.entries == [], f"VerifyProduction drifts prod: {run.summary['versions']}"
    assert run.summary["capture"]["test_traffic_records"] == len(verification)
    # Consumers' traffic is still analysed, all of it.
    assert run.summary["rows_total"] == sum(
        len(json.loads(json.loads(line)["captureData"]["endpointInput"]["data"])["instances"]) for line in consumers
    )


def test_a_consumer_cannot_mark_its_traffic_as_test_traffic(synthesized, aws) -> None:
    """The same rows from a consumer's key, even with the header set by the client, are analysed and drift."""
    integration = predict_integration(synthesized, "prod")
    standard = api_keys(synthesized, "prod")["mlapi-prod-api-standard"]
    rows = smoke_test.sample_rows(ModelCard.load(DIST).feature_schema, 5)
    body = smoke_test.load_body(rows)
    forged = {"X-Amzn-SageMaker-Inference-Id": "pipeline-test-forged"}
    assert not inference_id(integration, standard, body, forged).startswith("pipeline-test-")
    version = ModelCard.load(DIST).version
    lines = [
        capture_record(b, served(b, version), inference_id(integration, standard, b, forged))
        for b in smoke_test.model_bodies(rows, VERIFY_REQUESTS)
    ]
    run = run_job(aws, drift_job_env(synthesized, "prod"), lines)
    assert run.summary["capture"]["test_traffic_records"] == 0
    assert len(run.recorder.entries) == 1  # the check above can fail: this traffic does drift when analysed


# ---------------------------------------------------------------------------------------------------------------
# The retraining rules against the drift job's and Model Monitor's events
# ---------------------------------------------------------------------------------------------------------------


def retraining_rules(synthesized) -> dict[str, dict[str, Any]]:
    template = synthesized.templates[("pipeline", "pipeline")]
    rules = {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Events::Rule"
        and "retraining run of" in resource["Properties"].get("Description", "")
    }
    assert len(rules) == 2, rules
    refs = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}
    return {logical_id: resolve(rule["EventPattern"], refs) for logical_id, rule in rules.items()}


def matched_by(rules: dict[str, dict[str, Any]], event: dict[str, Any]) -> list[str]:
    # moto's implementation of EventBridge's pattern matching (prefix, exists, $or included).
    return [
        logical_id
        for logical_id, pattern in rules.items()
        if EventPattern(None, EventPatternParser(json.dumps(pattern)).parse()).matches_event(event)
    ]


def drift_event(env: Any, account: str) -> dict[str, Any]:
    """The event the drift job of `env` puts on the bus (drift_events.publish_drift_events), as EventBridge delivers
    it: the entry's Source, DetailType and Detail plus the sender's account and region."""
    settings = Settings.from_env(
        {"ENDPOINT_NAME": f"{env.resource_prefix()}-endpoint", "CAPTURE_BUCKET": "c", "BASELINE_BUCKET": "b",
         "REPORT_BUCKET": "r"}
    )  # fmt: skip
    card = ModelCard.load(DIST)  # the served model's first feature drifted
    drifted = FeatureDrift(card.feature_names[0], ALARM, 100, 0.0, 0.0, 3.8, 0.9, 0.0, ["psi 3.800 >= alarm 0.25"])
    report = VersionReport(card.version, "drift_detected", rows=100, features=[drifted])
    recorder = Recorder()
    publish_drift_events(recorder, settings, WINDOW, [report])
    [entry] = recorder.entries
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "source": entry["Source"],
        "detail-type": entry["DetailType"],
        "account": account,
        "region": env.region,
        "time": "2026-11-25T13:05:00Z",
        "resources": [],
        "detail": json.loads(entry["Detail"]),
    }


def model_monitor_event(env: Any, account: str) -> dict[str, Any]:
    schedule = f"arn:aws:sagemaker:{env.region}:{account}:monitoring-schedule/{env.resource_prefix()}-data-quality"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Processing Job State Change",
        "account": account,
        "region": env.region,
        "resources": [],
        "detail": {"MonitoringScheduleArn": schedule, "ProcessingJobStatus": "Completed",
                   "ExitMessage": "CompletedWithViolations: Job completed successfully with 3 violations."},
    }  # fmt: skip


@pytest.mark.parametrize("event_of", [drift_event, model_monitor_event])
def test_retraining_rules_match_production_only(synthesized, config, event_of) -> None:
    environments, pipeline = config
    rules = retraining_rules(synthesized)
    production = environments[pipeline.production]
    account = production.account or "123456789012"
    assert matched_by(rules, event_of(production, account)), "production's event must start a retraining run"
    for name, env in environments.items():
        if name != pipeline.production:
            # The shipped config: every environment in one account, all on the pipeline's default bus.
            assert matched_by(rules, event_of(env, env.account or account)) == [], f"{name}'s event starts a run"
    assert matched_by(rules, event_of(production, OTHER_ACCOUNT)) == [], "another account's event starts a run"


def test_event_bus_policies_use_statement_not_the_deprecated_properties() -> None:
    """A pipeline account that receives another account's events (the shipped config has one account: none)."""
    stack = Stack(App(), "Pipeline", env={"account": "111111111111", "region": "eu-west-1"})
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    retraining_trigger.RetrainingTrigger(
        stack,
        "Retraining",
        pipeline_name="p-delivery",
        source_accounts=["222222222222", "111111111111"],
        placement=outside_vpc(key),
        powertools=lambda_.LayerVersion.from_layer_version_arn(
            stack, "Powertools", "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:1"
        ),
        production=retraining_trigger.RetrainingSource(account="222222222222", region="eu-west-1", prefix="mlapi-prod"),
        decision_locks=DecisionLockTable(stack, "Locks", key=key, removal_policy=RemovalPolicy.DESTROY),
    )
    policies = Template.from_stack(stack).find_resources("AWS::Events::EventBusPolicy")
    assert len(policies) == 1, "one policy, for the other account"
    [properties] = [policy["Properties"] for policy in policies.values()]
    # CfnEventBusPolicyProps: Action, Condition and Principal are "(deprecated)"; Statement replaces them.
    assert {"Action", "Principal", "Condition"}.isdisjoint(properties)
    statement = resolve(properties["Statement"], {"AWS::Partition": "aws"})
    assert statement["Effect"] == "Allow" and statement["Action"] == "events:PutEvents"
    assert statement["Principal"] == {"AWS": "arn:aws:iam::222222222222:root"}
    assert statement["Resource"] == "arn:aws:events:eu-west-1:111111111111:event-bus/default"


# ---------------------------------------------------------------------------------------------------------------
# Load test, usage plans and WAF limits
# ---------------------------------------------------------------------------------------------------------------


def usage_plans(synthesized, env: str) -> dict[str, dict[str, Any]]:
    plans = synthesized.resources(env, "inference", "AWS::ApiGateway::UsagePlan").values()
    return {plan["Properties"]["UsagePlanName"]: plan["Properties"] for plan in plans}


@pytest.mark.parametrize("role", ["staging", "production"])
def test_the_paced_load_test_fits_the_plan_of_the_key_it_uses(synthesized, config, role: str) -> None:
    environments, pipeline = config
    env = environments[getattr(pipeline, role)]
    plans = usage_plans(synthesized, env.name)
    plan = plans.get(f"{env.resource_prefix()}-api-pipeline-tests")
    assert plan is not None, f"the load test has no key and plan of its own in {env.name}: {sorted(plans)}"
    # The smoke test spaces requests 1/rate apart, retries included (scripts/smoke_test.py Pacer): its rate must
    # stay under the plan's steady rate, whatever the burst lets through.
    assert pipeline.load_test_rate <= 0.8 * plan["Throttle"]["RateLimit"]
    assert pipeline.load_test_requests <= plan["Quota"]["Limit"] / 4, "four runs a day must fit the plan's quota"


def rate_rules(synthesized, env: str) -> dict[str, dict[str, Any]]:
    [acl] = synthesized.resources(env, "inference", "AWS::WAFv2::WebACL").values()
    return {
        rule["Name"]: rule["Statement"]["RateBasedStatement"]
        for rule in acl["Properties"]["Rules"]
        if "RateBasedStatement" in rule["Statement"]
    }


def applies_to_keyed_requests(statement: dict[str, Any]) -> bool:
    """Every rate rule counts keyed requests unless it aggregates on something they may lack."""
    if statement.get("AggregateKeyType", "IP") in ("IP", "CONSTANT"):
        return True
    keys = statement.get("CustomKeys", [])
    return all(key.get("Header", {}).get("Name", "").lower() == "x-api-key" for key in keys)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_usage_plan_fits_under_the_waf_limits_that_apply_to_it(synthesized, env: str) -> None:
    rules = rate_rules(synthesized, env)
    assert any(s.get("AggregateKeyType") == "CUSTOM_KEYS" for s in rules.values()), "no rate rule per API key"
    for name, plan in usage_plans(synthesized, env).items():
        # Over a WAF evaluation window (300 s by default) a plan admits its steady rate for the whole window plus one
        # burst (API Gateway's token bucket: "Throttle requests to your REST APIs for better throughput").
        for rule, statement in rules.items():
            if applies_to_keyed_requests(statement):
                window = statement.get("EvaluationWindowSec", WAF_WINDOW_S)
                admitted = plan["Throttle"]["RateLimit"] * window + plan["Throttle"]["BurstLimit"]
                assert admitted <= statement["Limit"], (
                    f"{name} admits {admitted} requests per {window} s; WAF rule {rule} blocks above "
                    f"{statement['Limit']}"
                )
