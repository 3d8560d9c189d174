"""The model registry: one retained model package group per project, with its metrics bucket and key, in
production's StepAccess stack — deployed before the Checks wave registers each build (issue 13 item 1) — readable by
the platform's accounts; the EventBridge rules that keep it and the pipeline's model approval in step; the function
behind them (lambda_src/retraining_trigger/retraining_trigger/registry.py).

Sources: CloudFormation "AWS::SageMaker::ModelPackageGroup" (ModelPackageGroupName and ModelPackageGroupDescription
are create-only; ModelPackageGroupPolicy updates in place); SageMaker Developer Guide, Model Registry "Set up
discoverability" (the resource policy: sagemaker:DescribeModelPackage, ListModelPackages, DescribeModelPackageGroup
on the group ARN and model-package/<group>/*); "Events that Amazon SageMaker AI sends to Amazon EventBridge",
"Model package state change" (the sample event below); "Cross-account discoverability" and "Set up
discoverability" (https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-ram-discover.html: the owner
attaches the resource policy to the group, principals from the other accounts); CodePipeline "pipeline structure
reference" (stages run one after the other).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_cdk import App, Stack
from botocore.stub import Stubber
from moto.events.models import EventPattern
from parliament import analyze_policy_string

from ml_constructs.model_registry import metrics_bucket_name, metrics_key_alias, registry_access
from scripts.register_model_package import PIPELINE_MARKER

sys.path.append(str(Path(__file__).resolve().parents[2] / "lambda_src" / "retraining_trigger"))
from retraining_trigger import registry as trigger

GROUP = "mlapi-models"
PIPELINE = "mlapi-pipeline-delivery"
PACKAGE = f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{GROUP}/2"
# The documented event, verbatim but for two things: the group (the doc's is versionedmp-p-idy6c3e1fiqj), and the
# doc's second "source" key (a list, a slip in the sample: an event's source is a string), dropped.
DOCUMENTED_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "844e2571-85d4-695f-b930-0153b71dcb42",
    "detail-type": "SageMaker Model Package State Change",
    "source": "aws.sagemaker",
    "account": "123456789012",
    "time": "2021-02-24T17:00:14Z",
    "region": "us-east-2",
    "resources": ["arn:aws:sagemaker:us-east-2:123456789012:model-package/versionedmp-p-idy6c3e1fiqj/2"],
    "detail": {
        "ModelPackageGroupName": GROUP,
        "ModelPackageVersion": 2,
        "ModelPackageArn": PACKAGE,
        "CreationTime": "2021-02-24T17:00:14Z",
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": "257758044811.dkr.ecr.us-east-2.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3",
                    "ImageDigest": "sha256:4dc8a7e4a010a19bb9e0a6b063f355393f6e623603361bd8b105f554d4f0c004",
                    "ModelDataUrl": "s3://sagemaker-project-p-idy6c3e1fiqj/versionedmp-p-idy6c3e1fiqj/model.tar.gz",
                }
            ],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
        "CertifyForMarketplace": False,
        "ModelApprovalStatus": "Rejected",
        "MetadataProperties": {
            "GeneratedBy": "arn:aws:sagemaker:us-east-2:123456789012:pipeline/versionedmp-p-idy6c3e1fiqj/execution/4r83"
        },
        "LastModifiedTime": "2021-02-24T17:00:14Z",
    },
}
# CodePipeline's action events carry pipeline, execution-id, stage, action, state and type (EventBridge schema
# aws.codepipeline@CodePipelineActionExecutionStateChange; CodePipeline User Guide, "Monitoring CodePipeline events").
REJECTED_IN_CODEPIPELINE: dict[str, Any] = {
    "version": "0",
    "id": "cb7c3d1d-bd1b-4d72-a7c1-5ef4c0f3c5a1",
    "detail-type": "CodePipeline Action Execution State Change",
    "source": "aws.codepipeline",
    "account": "123456789012",
    "time": "2026-12-01T10:00:00Z",
    "region": "eu-west-1",
    "resources": [f"arn:aws:codepipeline:eu-west-1:123456789012:{PIPELINE}"],
    "detail": {
        "pipeline": PIPELINE,
        "execution-id": "6e4b6c33-0c0b-4c43-8e7a-1f1e1a6b3c11",
        "stage": "prod",
        "action": "DataScienceApproval",
        "state": "FAILED",
        "region": "eu-west-1",
        "type": {"owner": "AWS", "provider": "Manual", "category": "Approval", "version": "1"},
        "version": 3,
    },
}


def event(base: dict[str, Any], **detail: Any) -> dict[str, Any]:
    return {**base, "detail": {**base["detail"], **detail}}


METRICS_BUCKET = "mlapi-prod-registry-123456789012-eu-west-1"
METRICS_KEY_ALIAS = "alias/mlapi-prod/registry"


def step_access(synthesized) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Environment -> (its StepAccess template, its manifest artifact), from the pipeline's StepAccess stage."""
    [directory] = synthesized.outdir.glob("assembly-*-StepAccess")
    manifest = json.loads((directory / "manifest.json").read_text())
    return {
        artifact["displayName"].split("/")[-1]: (
            json.loads((directory / artifact["properties"]["templateFile"]).read_text()),
            artifact,
        )
        for artifact in manifest["artifacts"].values()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


@pytest.fixture(scope="module")
def registry_stack(synthesized) -> dict[str, Any]:
    return step_access(synthesized)["prod"][0]


@pytest.fixture(scope="module")
def group(registry_stack) -> dict[str, Any]:
    [resource] = of_type(registry_stack, "AWS::SageMaker::ModelPackageGroup").values()
    return resource


@pytest.fixture(scope="module")
def rules(synthesized) -> dict[str, dict[str, Any]]:
    return {
        logical_id: rule["Properties"]
        for logical_id, rule in synthesized.resources("pipeline", "pipeline", "AWS::Events::Rule").items()
        if logical_id.startswith("DeliveryRegistryTrigger")
    }


def rule(rules: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [r for logical_id, r in rules.items() if name in logical_id]
    return found


# ---- the group ---------------------------------------------------------------------------------------------
def test_one_retained_group_per_project_in_production_only(synthesized, group) -> None:
    assert group["Properties"]["ModelPackageGroupName"] == GROUP
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Retain", "Retain")
    # Create-only: a description change would replace the group, and its versions with it.
    assert "ModelPackageGroupDescription" not in group["Properties"]
    for environment in ("dev", "staging", "prod"):
        assert synthesized.resources(environment, "data", "AWS::SageMaker::ModelPackageGroup") == {}
    stacks = step_access(synthesized)
    assert of_type(stacks["staging"][0], "AWS::SageMaker::ModelPackageGroup") == {}
    # Production's stack now holds retained state: protected from deletion, as production's data stack is.
    assert stacks["prod"][1]["properties"].get("terminationProtection") is True
    assert not stacks["staging"][1]["properties"].get("terminationProtection")


def test_the_group_is_created_by_a_deploy_before_the_checks_wave_registers(synthesized) -> None:
    """Checks/RegisterModelPackage writes a version into the group: the stack creating it must deploy in an
    earlier stage of the pipeline (stages run in order), not in the prod stage after the approvals."""
    [pipeline] = synthesized.resources("pipeline", "pipeline", "AWS::CodePipeline::Pipeline").values()
    stages = pipeline["Properties"]["Stages"]
    names = [stage["Name"] for stage in stages]
    checks = names.index("Checks")
    assert any(a["Name"].endswith("RegisterModelPackage") for a in stages[checks]["Actions"])
    creating = []
    for index, stage in enumerate(stages):
        for action in stage["Actions"]:
            configuration = action.get("Configuration", {})
            if configuration.get("ActionMode") != "CHANGE_SET_REPLACE":
                continue
            template = json.loads((synthesized.outdir / configuration["TemplatePath"].split("::", 1)[1]).read_text())
            if of_type(template, "AWS::SageMaker::ModelPackageGroup"):
                creating.append((index, names[index], configuration["StackName"]))
    assert creating == [(names.index("StepAccess"), "StepAccess", "mlapi-prod-pipeline-steps")]
    assert names.index("StepAccess") < checks


def test_the_metrics_bucket_is_retained_and_encrypted_with_the_registrys_own_key(registry_stack) -> None:
    assert metrics_bucket_name(prefix="mlapi-prod", account="123456789012", region="eu-west-1") == METRICS_BUCKET
    assert metrics_key_alias("mlapi-prod") == METRICS_KEY_ALIAS
    buckets = of_type(registry_stack, "AWS::S3::Bucket")
    [(bucket_id, bucket)] = [(k, b) for k, b in buckets.items() if b["Properties"].get("BucketName") == METRICS_BUCKET]
    [aliases] = [a["Properties"] for a in of_type(registry_stack, "AWS::KMS::Alias").values()]
    assert aliases["AliasName"] == METRICS_KEY_ALIAS
    key_id = aliases["TargetKeyId"]["Fn::GetAtt"][0]
    [rule] = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    key = registry_stack["Resources"][key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    for resource in (bucket, key):
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain"), bucket_id
    assert bucket["Properties"]["LoggingConfiguration"]["DestinationBucketName"]


def test_the_register_step_writes_its_metrics_into_the_registrys_bucket_with_its_key(
    synthesized, registry_stack
) -> None:
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project").values()
    [buildspec] = [
        json.dumps(p["Properties"]["Source"]["BuildSpec"])
        for p in projects
        if "scripts.register_model_package register" in json.dumps(p["Properties"]["Source"].get("BuildSpec", ""))
    ]
    assert f"--metrics-bucket {METRICS_BUCKET}" in buildspec
    [policy] = [
        json.dumps(p["Properties"]["PolicyDocument"])
        for k, p in of_type(registry_stack, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("PipelineStepsRegisterModelPackagePolicy")
    ]
    assert f"{METRICS_BUCKET}/model-registry/*" in policy and METRICS_KEY_ALIAS in policy


def test_the_policy_lets_the_platform_accounts_read_and_the_pipeline_register(group) -> None:
    statements = {s["Sid"]: s for s in group["Properties"]["ModelPackageGroupPolicy"]["Statement"]}
    resources = [
        f"arn:aws:sagemaker:eu-west-1:123456789012:model-package-group/{GROUP}",
        f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{GROUP}/*",
    ]
    read, publish = statements["ReadModelPackages"], statements["DecideModelPackages"]
    assert set(read["Action"]) == {
        "sagemaker:DescribeModelPackageGroup",
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListModelPackages",
    }
    # Registering runs as production's own step role: the pipeline account only decides (approve, reject).
    assert publish["Action"] == ["sagemaker:UpdateModelPackage"]
    for statement in (read, publish):
        assert statement["Effect"] == "Allow" and statement["Resource"] == resources
        # The shipped config leaves staging, prod and the pipeline in one account.
        assert statement["Principal"] == {"AWS": ["arn:aws:iam::123456789012:root"]}
    linted = analyze_policy_string(json.dumps(group["Properties"]["ModelPackageGroupPolicy"]))
    assert [f.issue for f in linted.findings] == []


def test_accounts_of_a_cross_account_setup_are_read_from_the_config() -> None:
    context = {
        "ml-platform": {
            "environments": {"staging": {"account": "222222222222"}, "prod": {"account": "333333333333"}},
            "pipeline": {"account": "111111111111", "staging": "staging", "production": "prod"},
        }
    }
    stack = Stack(App(context=context), "Probe")
    access = registry_access(stack, "prod")
    assert access is not None
    assert access.readers == ("222222222222", "333333333333", "111111111111")
    assert access.publishers == ("111111111111",)
    assert registry_access(stack, "staging") is None


# ---- the events --------------------------------------------------------------------------------------------
def test_the_rule_matches_the_documented_event_for_this_group_approved_or_rejected(rules) -> None:
    pattern = rule(rules, "ModelPackageDecided")["EventPattern"]
    assert pattern == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": [GROUP], "ModelApprovalStatus": ["Approved", "Rejected"]},
    }
    matcher = EventPattern(json.dumps(pattern), pattern)  # moto's EventBridge pattern matching
    assert matcher.matches_event(DOCUMENTED_EVENT)
    assert matcher.matches_event(event(DOCUMENTED_EVENT, ModelApprovalStatus="Approved"))
    assert not matcher.matches_event(event(DOCUMENTED_EVENT, ModelApprovalStatus="PendingManualApproval"))
    assert not matcher.matches_event(event(DOCUMENTED_EVENT, ModelPackageGroupName="versionedmp-p-idy6c3e1fiqj"))
    assert not matcher.matches_event({**DOCUMENTED_EVENT, "detail-type": "SageMaker Model State Change"})


def test_the_rejection_rule_matches_only_the_model_approval_failing(rules) -> None:
    pattern = rule(rules, "ModelApprovalRejected")["EventPattern"]
    matcher = EventPattern(json.dumps(pattern), pattern)
    assert matcher.matches_event(REJECTED_IN_CODEPIPELINE)
    assert not matcher.matches_event(event(REJECTED_IN_CODEPIPELINE, state="SUCCEEDED"))
    assert not matcher.matches_event(event(REJECTED_IN_CODEPIPELINE, action="OperationsApproval"))
    assert not matcher.matches_event(event(REJECTED_IN_CODEPIPELINE, pipeline="another-pipeline"))


def test_both_rules_invoke_the_registry_trigger_with_a_dead_letter_queue(synthesized, rules) -> None:
    functions = synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function")
    [function_id] = [
        k for k, f in functions.items() if f["Properties"]["Handler"] == "retraining_trigger.registry.handler"
    ]
    environment = functions[function_id]["Properties"]["Environment"]["Variables"]
    assert environment["APPROVAL_ACTION"] == "DataScienceApproval"
    assert environment["REGISTER_ACTION"] == "RegisterModelPackage"
    # One decision at a time under a lease lock, not a concurrency reservation (issue 13 item 9).
    assert "ReservedConcurrentExecutions" not in functions[function_id]["Properties"]
    assert environment["DECISION_LOCK_NAME"] == functions[function_id]["Properties"]["FunctionName"]
    assert "Ref" in environment["DECISION_LOCK_TABLE"]
    for properties in rules.values():
        [target] = properties["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
        assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_trigger_may_only_reject_packages_and_answer_the_model_approval(synthesized) -> None:
    [policy] = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in synthesized.resources("pipeline", "pipeline", "AWS::IAM::ManagedPolicy").items()
        if k.startswith("DeliveryRegistryTrigger")
    ]
    by_action = {a: s for s in policy for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    pipeline_arn = f"arn:aws:codepipeline:eu-west-1:123456789012:{PIPELINE}"
    assert by_action["codepipeline:PutApprovalResult"]["Resource"] == f"{pipeline_arn}/prod/DataScienceApproval"
    assert by_action["codepipeline:StartPipelineExecution"]["Resource"] == pipeline_arn
    update = by_action["sagemaker:UpdateModelPackage"]
    assert update["Condition"] == {"StringEquals": {"sagemaker:ModelApprovalStatus": "Rejected"}}
    assert update["Resource"] == f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{GROUP}/*"


# ---- the function ------------------------------------------------------------------------------------------
WIRING = trigger.Wiring(PIPELINE, "prod", "DataScienceApproval", "RegisterModelPackage")
EXECUTION = "6e4b6c33-0c0b-4c43-8e7a-1f1e1a6b3c11"


@pytest.fixture
def clients() -> Any:
    made = {
        name: boto3.client(name, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
        for name in ("sagemaker", "codepipeline")
    }
    stubbers = {name: Stubber(client) for name, client in made.items()}
    for stubber in stubbers.values():
        stubber.activate()
    yield made, stubbers
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()


def described(status: str, description: str) -> dict[str, Any]:
    return {
        "ModelPackageName": GROUP,
        "ModelPackageGroupName": GROUP,
        "ModelPackageArn": PACKAGE,
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "CreationTime": "2026-12-01T09:00:00Z",
        "ModelApprovalStatus": status,
        "ApprovalDescription": description,
        "CustomerMetadataProperties": {"build": "abc:def"},
        "LastModifiedBy": {"IamIdentity": {"Arn": "arn:aws:sts::123456789012:assumed-role/DataScientist/alice"}},
    }


def waiting_state() -> dict[str, Any]:
    return {
        "stageStates": [
            {
                "stageName": "prod",
                "latestExecution": {"pipelineExecutionId": EXECUTION, "status": "InProgress"},
                "actionStates": [
                    {"actionName": "DataScienceApproval", "latestExecution": {"status": "InProgress", "token": "t-1"}}
                ],
            }
        ]
    }


def registered(arn: str = PACKAGE, **approval: Any) -> dict[str, Any]:
    details = [
        {
            "actionName": "RegisterModelPackage",
            "status": "Succeeded",
            "output": {"outputVariables": {"MODEL_PACKAGE_ARN": arn}},
        }
    ]
    if approval:
        details.append({"actionName": "DataScienceApproval", "status": "Failed", **approval})
    return {"actionExecutionDetails": details}


def test_a_registry_decision_answers_the_run_waiting_for_that_package(clients) -> None:
    (sagemaker, codepipeline), stubs = clients[0].values(), clients[1]
    stubs["sagemaker"].add_response("describe_model_package", described("Rejected", "leaks the label"))
    stubs["codepipeline"].add_response("get_pipeline_state", waiting_state(), {"name": PIPELINE})
    stubs["codepipeline"].add_response(
        "list_action_executions", registered(), {"pipelineName": PIPELINE, "filter": {"pipelineExecutionId": EXECUTION}}
    )
    summary = "Rejected in the model registry by arn:aws:sts::123456789012:assumed-role/DataScientist/alice: leaks"
    stubs["codepipeline"].add_response(
        "put_approval_result",
        {},
        {
            "pipelineName": PIPELINE,
            "stageName": "prod",
            "actionName": "DataScienceApproval",
            "result": {"summary": summary + " the label", "status": "Rejected"},
            "token": "t-1",
        },
    )
    result = trigger.route(event(DOCUMENTED_EVENT), sagemaker, codepipeline, WIRING)
    assert (result["action"], result["execution"]) == ("answered", EXECUTION)


def test_approved_in_the_registry_with_no_run_waiting_starts_one(clients) -> None:
    (sagemaker, codepipeline), stubs = clients[0].values(), clients[1]
    stubs["sagemaker"].add_response("describe_model_package", described("Approved", "looks good"))
    stubs["codepipeline"].add_response("get_pipeline_state", {"stageStates": []})
    stubs["codepipeline"].add_response(
        "list_pipeline_executions",
        {"pipelineExecutionSummaries": [{"pipelineExecutionId": "old", "status": "Succeeded"}]},
    )
    stubs["codepipeline"].add_response(
        "start_pipeline_execution",
        {"pipelineExecutionId": "new-run"},
        {"name": PIPELINE, "clientRequestToken": DOCUMENTED_EVENT["id"]},
    )
    result = trigger.route(event(DOCUMENTED_EVENT, ModelApprovalStatus="Approved"), sagemaker, codepipeline, WIRING)
    assert (result["action"], result["execution"]) == ("started", "new-run")


def test_the_pipelines_own_decisions_are_not_echoed_back(clients) -> None:
    (sagemaker, codepipeline), stubs = clients[0].values(), clients[1]
    assert trigger.PIPELINE_MARKER == PIPELINE_MARKER
    description = f"{PIPELINE_MARKER} DataScienceApproval approved by alice"
    stubs["sagemaker"].add_response("describe_model_package", described("Approved", description))
    result = trigger.route(event(DOCUMENTED_EVENT, ModelApprovalStatus="Approved"), sagemaker, codepipeline, WIRING)
    assert result["action"] == "none"


def test_a_rejection_in_codepipeline_rejects_the_runs_package_with_who_and_why(clients) -> None:
    (sagemaker, codepipeline), stubs = clients[0].values(), clients[1]
    listing = {"pipelineName": PIPELINE, "filter": {"pipelineExecutionId": EXECUTION}}
    who = "arn:aws:sts::123456789012:assumed-role/DataScientist/bob"
    rejection = {"updatedBy": who, "output": {"executionResult": {"externalExecutionSummary": "drifted holdout"}}}
    stubs["codepipeline"].add_response("list_action_executions", registered(), listing)
    stubs["sagemaker"].add_response("describe_model_package", described("PendingManualApproval", ""))
    stubs["codepipeline"].add_response("list_action_executions", registered(**rejection), listing)
    stubs["sagemaker"].add_response(
        "update_model_package",
        {"ModelPackageArn": PACKAGE},
        {
            "ModelPackageArn": PACKAGE,
            "ModelApprovalStatus": "Rejected",
            "ApprovalDescription": f"{PIPELINE_MARKER} DataScienceApproval rejected by {who} in {PIPELINE} execution "
            f"{EXECUTION}: drifted holdout",
            "CustomerMetadataProperties": {"build": "abc:def", "decided-by": who},
        },
    )
    result = trigger.route(REJECTED_IN_CODEPIPELINE, sagemaker, codepipeline, WIRING)
    assert (result["action"], result["by"]) == ("rejected", who)
