"""The delivery pipeline: stage order, gates, approvals with notifications, and scoped roles."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def pipeline(synthesized) -> dict:
    [resource] = synthesized.resources("pipeline", "pipeline", "AWS::CodePipeline::Pipeline").values()
    return resource["Properties"]


def actions(pipeline: dict, stage: str) -> dict[str, dict]:
    [found] = [s for s in pipeline["Stages"] if s["Name"] == stage]
    return {a["Name"]: a for a in found["Actions"]}


def buildspec(synthesized, action: dict) -> str:
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    return projects[action["Configuration"]["ProjectName"]["Ref"]]["Properties"]["Source"]["BuildSpec"]


def test_stages_run_checks_then_staging_then_approvals_then_production(pipeline) -> None:
    names = [s["Name"] for s in pipeline["Stages"]]
    assert names[:3] == ["Source", "Build", "UpdatePipeline"]
    assert names.index("Checks") < names.index("staging") < names.index("prod") == len(names) - 1
    prod = actions(pipeline, "prod")
    first_deploy = min(a["RunOrder"] for n, a in prod.items() if n.endswith(".Deploy"))
    for gate in ("ModelApproval", "OperationsApproval", "ChangeClassifier"):
        assert prod[gate]["RunOrder"] < first_deploy
    assert prod["VerifyProduction"]["RunOrder"] > max(a["RunOrder"] for n, a in prod.items() if n.endswith(".Deploy"))


def test_source_is_a_codeconnections_push_trigger(pipeline, cdk_context) -> None:
    [source] = actions(pipeline, "Source").values()
    config = cdk_context["ml-platform"]["pipeline"]["source"]
    assert source["Configuration"]["ConnectionArn"] == config["connection_arn"]
    assert source["Configuration"]["FullRepositoryId"] == config["repository"]
    assert source["Configuration"]["BranchName"] == config["branch"]


def test_build_specs_run_the_readme_commands(synthesized, pipeline) -> None:
    assert "make synth" in buildspec(synthesized, actions(pipeline, "Build")["Synth"])
    checks = actions(pipeline, "Checks")
    assert set(checks) == {"UnitTests", "SecurityScans", "ModelGate"}
    assert "make test" in buildspec(synthesized, checks["UnitTests"])
    assert "JUNITXML" in buildspec(synthesized, checks["UnitTests"])
    assert "-m scripts.model_gate" in buildspec(synthesized, checks["ModelGate"])
    gate = synthesized.context["ml-platform"]["pipeline"]["latency_gate"]
    assert (
        f"-m scripts.latency_gate --dist model_container/dist --requests {gate['requests']} "
        f"--concurrency {gate['concurrency']} --p99-ms {float(gate['single_row_p99_ms'])}"
    ) in buildspec(synthesized, checks["ModelGate"])
    assert "make security-report" in buildspec(synthesized, checks["SecurityScans"])


def test_staging_is_tested_after_deploy_and_bake_is_checked_before_load(synthesized, pipeline) -> None:
    staging = actions(pipeline, "staging")
    last_deploy = max(a["RunOrder"] for n, a in staging.items() if n.endswith(".Deploy"))
    assert last_deploy < staging["NoAlarmDuringBake"]["RunOrder"] < staging["SmokeAndLoadTests"]["RunOrder"]
    assert "-m scripts.smoke_test" in buildspec(synthesized, staging["SmokeAndLoadTests"])


def test_approvals_notify_the_topic_with_a_link(synthesized, pipeline) -> None:
    [topic] = synthesized.resources("pipeline", "pipeline", "AWS::SNS::Topic")
    prod = actions(pipeline, "prod")
    for name in ("ModelApproval", "OperationsApproval"):
        configuration = prod[name]["Configuration"]
        assert configuration["NotificationArn"] == {"Ref": topic}
        assert configuration["ExternalEntityLink"].startswith("https://")
    # The audit table's name is a reference, so the parameters are a Fn::Join around JSON text.
    classifier = json.dumps(prod["ChangeClassifier"]["Configuration"]["UserParameters"])
    assert '\\"approval_actions\\":[\\"ModelApproval\\",\\"OperationsApproval\\"]' in classifier
    assert "mlapi-prod-inference" in classifier


def test_classifier_may_approve_only_in_this_pipeline(synthesized) -> None:
    template = synthesized.templates[("pipeline", "pipeline")]
    [policy] = [
        r["Properties"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::ManagedPolicy" and k.startswith("DeliveryClassifierPolicy")
    ]
    statements = policy["PolicyDocument"]["Statement"]
    [approve] = [s for s in statements if "codepipeline:PutApprovalResult" in s["Action"]]
    assert "mlapi-pipeline-delivery" in json.dumps(approve["Resource"])
    assert not any("sagemaker" in json.dumps(s["Action"]) for s in statements)


def test_artifacts_are_encrypted_and_tls_only(synthesized) -> None:
    buckets = synthesized.resources("pipeline", "pipeline", "AWS::S3::Bucket")
    [artifacts] = [b for k, b in buckets.items() if k.startswith("DeliveryArtifacts") and "Logs" not in k]
    rule = artifacts["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_autoscaling_is_released_before_and_restored_after_each_deploy(synthesized, pipeline, stage: str) -> None:
    steps = actions(pipeline, stage)
    deploys = [a["RunOrder"] for n, a in steps.items() if n.endswith(".Deploy")]
    assert steps["AutoscalingBeforeDeploy"]["RunOrder"] < min(deploys)
    assert steps["AutoscalingAfterDeploy"]["RunOrder"] > max(deploys)
    assert "-m scripts.autoscaling_guard after" in buildspec(synthesized, steps["AutoscalingAfterDeploy"])
    if stage == "prod":  # nothing changes production before both approvals
        assert steps["AutoscalingBeforeDeploy"]["RunOrder"] > steps["ModelApproval"]["RunOrder"]
        assert steps["VerifyProduction"]["RunOrder"] > steps["AutoscalingAfterDeploy"]["RunOrder"]
    else:
        assert steps["NoAlarmDuringBake"]["RunOrder"] > steps["AutoscalingAfterDeploy"]["RunOrder"]


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_drift_baseline_is_published_before_each_deploy(synthesized, pipeline, stage: str) -> None:
    steps = actions(pipeline, stage)
    first_deploy = min(a["RunOrder"] for n, a in steps.items() if n.endswith(".Deploy"))
    assert steps["PublishDriftBaseline"]["RunOrder"] < first_deploy
    assert f"--bucket mlapi-{stage}-artifacts-" in buildspec(synthesized, steps["PublishDriftBaseline"])


def test_failures_and_pending_approvals_are_notified(synthesized) -> None:
    [rule] = synthesized.resources("pipeline", "pipeline", "AWS::CodeStarNotifications::NotificationRule").values()
    assert {"codepipeline-pipeline-pipeline-execution-failed", "codepipeline-pipeline-manual-approval-needed"} <= set(
        rule["Properties"]["EventTypeIds"]
    )


def test_release_is_recorded_with_its_approvers_before_production_changes(synthesized, pipeline) -> None:
    prod = actions(pipeline, "prod")
    first_deploy = min(a["RunOrder"] for n, a in prod.items() if n.endswith(".Deploy"))
    assert prod["ModelApproval"]["RunOrder"] < prod["RegisterRelease"]["RunOrder"] < first_deploy
    assert "--approvals ModelApproval,OperationsApproval" in buildspec(synthesized, prod["RegisterRelease"])


def test_drift_events_start_a_retraining_run_that_the_model_gate_records(synthesized, pipeline) -> None:
    assert {v["Name"]: v["DefaultValue"] for v in pipeline["Variables"]} == {
        "RETRAINING": "false",
        "RETRAINING_REASON": "source change",
    }
    [gate] = [a for a in actions(pipeline, "Checks").values() if a["Name"] == "ModelGate"]
    env = json.loads(gate["Configuration"]["EnvironmentVariables"])
    assert {"name": "RETRAINING", "type": "PLAINTEXT", "value": "#{variables.RETRAINING}"} in env
    rules = synthesized.resources("pipeline", "pipeline", "AWS::Events::Rule")
    patterns = [r["Properties"]["EventPattern"] for r in rules.values()]
    assert {"source": ["ml-platform.drift-monitor"], "detail-type": ["Model Drift Detected"]} in patterns
    assert any(p["source"] == ["aws.sagemaker"] and "MonitoringScheduleArn" in p["detail"] for p in patterns)
    [trigger_id] = [
        logical_id
        for logical_id, fn in synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function").items()
        if fn["Properties"]["Handler"] == "retraining_trigger.handler.handler"
    ]
    trigger = synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function")[trigger_id]["Properties"]
    assert trigger["ReservedConcurrentExecutions"] == 1
    assert any("AWSLambdaPowertoolsPythonV3" in json.dumps(layer) for layer in trigger["Layers"])
    statements = [
        s
        for policy in synthesized.resources("pipeline", "pipeline", "AWS::IAM::ManagedPolicy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "codepipeline:StartPipelineExecution" in s["Action"]
    ]
    [start] = statements
    assert start["Resource"] == "arn:aws:codepipeline:eu-west-1:123456789012:mlapi-pipeline-delivery"


def test_every_pipeline_function_has_the_powertools_layer_its_code_imports(synthesized) -> None:
    functions = synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function")
    for logical_id, fn in functions.items():
        if fn["Properties"].get("Handler", "").endswith(".handler.handler"):
            assert "AWSLambdaPowertoolsPythonV3" in json.dumps(fn["Properties"].get("Layers")), logical_id


def role_statements(synthesized, role_logical_id: str) -> list[dict]:
    """Every statement of the inline and managed policies attached to one role of the pipeline stack."""
    found = []
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in synthesized.resources("pipeline", "pipeline", kind).values():
            if {"Ref": role_logical_id} in policy["Properties"].get("Roles", []):
                for s in policy["Properties"]["PolicyDocument"]["Statement"]:
                    found.append({**s, "Action": s["Action"] if isinstance(s["Action"], list) else [s["Action"]]})
    return found


def project_role(synthesized, action: dict) -> str:
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    return projects[action["Configuration"]["ProjectName"]["Ref"]]["Properties"]["ServiceRole"]["Fn::GetAtt"][0]


def test_the_source_action_role_may_use_the_connection_under_both_prefixes(synthesized, pipeline, cdk_context) -> None:
    # After the CodeConnections rename "the service prefix needs to match that of the resource" (Developer Tools
    # console User Guide, "Connections rename - Summary of changes"): each action on the ARN in its own prefix.
    [source] = actions(pipeline, "Source").values()
    role = source["RoleArn"]["Fn::GetAtt"][0]
    configured = cdk_context["ml-platform"]["pipeline"]["source"]["connection_arn"]
    suffix = configured.split(":", 3)[3]  # region:account:connection/id
    granted = {
        (action, json.dumps(resource))
        for s in role_statements(synthesized, role)
        if s["Effect"] == "Allow"
        for action in s["Action"]
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    prefixes = ("codestar-connections", "codeconnections")
    for prefix in prefixes:
        assert (f"{prefix}:UseConnection", json.dumps(f"arn:aws:{prefix}:{suffix}")) in granted, prefix
    mismatched = {
        (action, resource)
        for action, resource in granted
        if action.endswith(":UseConnection") and f'"arn:aws:{action.removesuffix(":UseConnection")}:' not in resource
    }
    assert not mismatched  # CDK's own grant names the configured (codeconnections) ARN under codestar-connections


def test_the_model_gate_may_decrypt_the_production_baselines_with_the_data_key(synthesized, pipeline) -> None:
    # The baselines are SSE-KMS under the artifacts bucket's default key (scripts/publish_baseline.py): S3 needs
    # kms:Decrypt on it to serve them. The data key lives in production's data stack, so it is named by alias.
    role = project_role(synthesized, actions(pipeline, "Checks")["ModelGate"])
    decrypts = [s for s in role_statements(synthesized, role) if "kms:Decrypt" in s["Action"]]
    assert any(
        s["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/mlapi-prod/data"}}
        and s["Resource"] == "arn:aws:kms:eu-west-1:123456789012:key/*"
        for s in decrypts
        if "Condition" in s
    ), decrypts
