"""Release history table, recorder and rollback controller: wired to the right events, scoped to one endpoint."""

from __future__ import annotations

import json

import pytest

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
    assert len(alarm_rule["detail"]["alarmName"]) == 3
    assert any(r.get("ScheduleExpression") == "rate(5 minutes)" for r in rules)
    assert all("DeadLetterConfig" in t for r in rules for t in r["Targets"])


@pytest.mark.parametrize("env", ENVS)
def test_only_the_controller_may_update_and_only_this_endpoint(synthesized, env: str) -> None:
    template = synthesized.templates[(env, "inference")]
    updaters = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::ManagedPolicy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "sagemaker:UpdateEndpoint" in actions:
                updaters.append(logical_id)
                resources = json.dumps(statement["Resource"])
                assert f"endpoint/mlapi-{env}-endpoint" in resources
                assert f"endpoint-config/mlapi-{env}-endpoint-*" in resources
                assert "sagemaker:*" not in resources
    assert len(updaters) == 1 and "Controller" in updaters[0]
