"""The built-in drift job runs hourly, may read only its prefixes, alarms per feature and routes drift events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_constructs.prediction_api import TEST_INFERENCE_ID_PREFIX

ROOT = Path(__file__).resolve().parents[2]
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
    features = [
        f["name"] for f in json.loads((ROOT / "model_container/contract/feature_schema.json").read_text())["features"]
    ]
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
        logical_id for logical_id, t in synthesized.resources(env, "data", "AWS::DynamoDB::Table").items()
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
