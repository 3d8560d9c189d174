"""Release history table, recorder and rollback controller: wired to the right events, scoped to one endpoint."""

from __future__ import annotations

import json

import pytest

from ml_constructs.release_safety import OPERATOR_METRICS
from platform_config import DeploymentSettings
from platform_config.loader import ConfigError

ENVS = ("dev", "staging", "prod")


def functions(synthesized, env: str) -> dict[str, dict]:
    return {
        f["Properties"]["FunctionName"].removeprefix(f"mlapi-{env}-release-"): f["Properties"]
        for f in synthesized.resources(env, "inference", "AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName", "").startswith(f"mlapi-{env}-release-")
    }


@pytest.mark.parametrize(("env", "deletion"), [("dev", "Delete"), ("prod", "Retain")])
def test_release_table_has_pitr_kms_and_the_status_index(synthesized, env: str, deletion: str) -> None:
    [table] = synthesized.resources(env, "data", "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True and "KMSMasterKeyId" in props["SSESpecification"]
    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == ["status-index"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["DeletionPolicy"] == deletion


@pytest.mark.parametrize("env", ENVS)
def test_functions_are_private_traced_with_dlq_and_controller_runs_alone(synthesized, env: str) -> None:
    fns = functions(synthesized, env)
    assert set(fns) == {"recorder", "controller"}
    assert fns["controller"]["ReservedConcurrentExecutions"] == 1
    assert fns["controller"]["Environment"]["Variables"]["MAX_ROLLBACK_ATTEMPTS"] == "3"
    for fn in fns.values():
        assert fn["TracingConfig"] == {"Mode": "Active"}
        assert "VpcConfig" in fn and "DeadLetterConfig" in fn
        assert fn["Environment"]["Variables"]["ENDPOINT_NAME"] == f"mlapi-{env}-endpoint"
    invoke_configs = synthesized.resources(env, "inference", "AWS::Lambda::EventInvokeConfig").values()
    assert all("OnFailure" in c["Properties"]["DestinationConfig"] for c in invoke_configs)


@pytest.mark.parametrize("env", ENVS)
def test_rules_route_endpoint_changes_schedule_and_guard_alarms(synthesized, env: str) -> None:
    rules = [r["Properties"] for r in synthesized.resources(env, "inference", "AWS::Events::Rule").values()]
    patterns = [r["EventPattern"] for r in rules if "EventPattern" in r]
    assert {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Endpoint State Change"],
        "detail": {"EndpointName": [f"mlapi-{env}-endpoint"]},
    } in patterns
    [alarm_rule] = [p for p in patterns if p["source"] == ["aws.cloudwatch"]]
    assert alarm_rule["detail"]["state"] == {"value": ["ALARM"]}
    # Every rollback alarm of the environment (EndpointAlarms.rollback_alarms; their number grows with new guards).
    alarm_ids = synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm")
    names = alarm_rule["detail"]["alarmName"]
    assert names and all(name["Ref"] in alarm_ids for name in names)
    assert any(r.get("ScheduleExpression") == "rate(5 minutes)" for r in rules)
    assert all("DeadLetterConfig" in t for r in rules for t in r["Targets"])


def statements(policy: dict) -> list[dict]:
    found = policy["Properties"]["PolicyDocument"]["Statement"]
    return [{**s, "Action": s["Action"] if isinstance(s["Action"], list) else [s["Action"]]} for s in found]


def endpoint_updaters(synthesized, env: str) -> dict[str, dict]:
    return {
        logical_id: policy
        for logical_id, policy in synthesized.resources(env, "inference", "AWS::IAM::ManagedPolicy").items()
        if any("sagemaker:UpdateEndpoint" in s["Action"] for s in statements(policy))
    }


@pytest.mark.parametrize("env", ENVS)
def test_only_the_controller_and_the_operator_policy_may_update_and_only_this_endpoint(synthesized, env: str) -> None:
    updaters = endpoint_updaters(synthesized, env)
    for policy in updaters.values():
        for statement in statements(policy):
            if "sagemaker:UpdateEndpoint" in statement["Action"]:
                resources = json.dumps(statement["Resource"])
                assert f"endpoint/mlapi-{env}-endpoint" in resources
                assert f"endpoint-config/mlapi-{env}-endpoint-*" in resources
                assert "sagemaker:*" not in resources
    assert len(updaters) == 2
    assert sum("Controller" in i for i in updaters) == 1 and sum("OperatorPolicy" in i for i in updaters) == 1


@pytest.mark.parametrize("env", ENVS)
def test_whoever_updates_the_endpoint_may_have_sagemaker_use_its_configs_key(synthesized, env: str) -> None:
    # UpdateEndpoint onto a config with KmsKeyId: SageMaker creates a KMS grant on that key with the caller's rights
    # ("Amazon SageMaker AI API Permissions: Actions, Permissions, and Resources Reference": kms:CreateGrant when the
    # endpoint config has a KmsKeyId; CreateEndpointConfig API reference, KmsKeyId). kms:GrantIsForAWSResource holds
    # the grant to SageMaker's requests (KMS Developer Guide, "Controlling access to grants").
    [config] = synthesized.resources(env, "inference", "AWS::SageMaker::EndpointConfig").values()
    config_key = config["Properties"]["KmsKeyId"]
    for logical_id, policy in endpoint_updaters(synthesized, env).items():
        grants = [s for s in statements(policy) if "kms:CreateGrant" in s["Action"]]
        assert grants, f"{logical_id} may UpdateEndpoint but not create the grant on the config's key"
        assert all(s["Resource"] == config_key for s in grants), logical_id
        assert all(s.get("Condition") == {"Bool": {"kms:GrantIsForAWSResource": "true"}} for s in grants), logical_id
        describe = [s for s in statements(policy) if "kms:DescribeKey" in s["Action"]]
        assert [s["Resource"] for s in describe] == [config_key], logical_id


# What `python -m lambda_src.releases.release_history` calls (cli.py, rollback.py, repository.py, endpoint.py).
OPERATOR_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
    "sagemaker:DescribeEndpoint",
    "sagemaker:DescribeEndpointConfig",
    "sagemaker:DescribeModel",
    "sagemaker:ListTags",
    "sagemaker:UpdateEndpoint",
    "kms:CreateGrant",
    "kms:DescribeKey",
    "kms:Decrypt",
    "kms:GenerateDataKey",
}


@pytest.mark.parametrize("env", ENVS)
def test_operator_policy_covers_the_cli_is_scoped_and_its_arn_is_an_output(synthesized, env: str) -> None:
    template = synthesized.templates[(env, "inference")]
    policies = synthesized.resources(env, "inference", "AWS::IAM::ManagedPolicy")
    [(logical_id, policy)] = [(i, p) for i, p in policies.items() if "OperatorPolicy" in i]
    found = statements(policy)
    assert {a for s in found for a in s["Action"]} == OPERATOR_ACTIONS
    assert all(s["Effect"] == "Allow" and s["Resource"] != "*" for s in found)
    assert not {"Roles", "Users", "Groups"} & set(policy["Properties"])  # an admin attaches it to operators
    outputs = {k: o for k, o in template.get("Outputs", {}).items() if o["Value"] == {"Ref": logical_id}}
    assert list(outputs) == ["ReleaseOperatorPolicyArn"]  # the key the README's runbook looks up


@pytest.mark.parametrize("env", ENVS)
def test_controller_gets_the_flap_guard_cooldown_from_settings(synthesized, env: str) -> None:
    variables = functions(synthesized, env)["controller"]["Environment"]["Variables"]
    assert variables["ROLLBACK_COOLDOWN_MINUTES"] == str(DeploymentSettings().rollback_cooldown_minutes)


def test_cooldown_setting_is_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        DeploymentSettings(rollback_cooldown_minutes=0)
    assert raised.value.key == "rollback_cooldown_minutes" and "1..1440" in str(raised.value)


@pytest.mark.parametrize("env", ENVS)
def test_every_operator_metric_and_dead_letter_queue_alarms_to_the_topic(synthesized, env: str) -> None:
    # RELEASES.md "Bounded and honest failure": a gave-up rollback, a lost notice, a malformed event and an event
    # whose retries were spent each reach a person.
    alarms = [a["Properties"] for a in synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()]
    by_metric = {(a.get("Namespace"), a.get("MetricName"), json.dumps(a.get("Dimensions"))): a for a in alarms}
    for function, metrics in OPERATOR_METRICS.items():
        for metric, _ in metrics:
            key = ("MlApi/Releases", metric, json.dumps([{"Name": "service", "Value": f"release-{function}"}]))
            assert key in by_metric, f"no alarm on {key}"
            assert by_metric[key]["AlarmActions"] and by_metric[key]["Threshold"] == 1
    dead_letters = [
        a
        for a in alarms
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and str(a.get("AlarmName", "")).startswith(f"mlapi-{env}-release-")
    ]
    assert len(dead_letters) == 2 and all(a["AlarmActions"] for a in dead_letters)
