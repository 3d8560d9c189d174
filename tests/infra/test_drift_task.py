"""With monitoring.runner fargate the built-in drift job is an hourly ECS task instead of a Lambda."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.conftest import Variant


@pytest.fixture(scope="module")
def prod(variant: Variant) -> Template:
    return variant.prod_inference


def test_the_job_runs_as_an_unprivileged_fargate_task_with_encrypted_logs(prod: Template) -> None:
    names = [f["Properties"].get("FunctionName") for f in prod.find_resources("AWS::Lambda::Function").values()]
    assert names and "mlapi-prod-drift-monitor" not in names  # the task replaces the drift Lambda
    [definition] = prod.find_resources("AWS::ECS::TaskDefinition").values()
    props = definition["Properties"]
    assert props["RequiresCompatibilities"] == ["FARGATE"] and props["NetworkMode"] == "awsvpc"
    assert (props["Cpu"], props["Memory"]) == ("1024", "4096")
    [container] = props["ContainerDefinitions"]
    assert container["EntryPoint"] == ["python", "-m", "drift_engine.task"]
    assert container["User"] == "65534"
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["ENDPOINT_NAME"] == "mlapi-prod-endpoint" and environment["PROBABILITY_OF"] == "positive_class"
    prod.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/ecs/mlapi-prod-drift-monitor", "KmsKeyId": Match.any_value()}
    )
    prod.has_resource_properties(
        "AWS::ECS::Cluster", {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]}
    )


def test_an_hourly_rule_starts_the_task_in_the_private_subnets_without_a_public_ip(prod: Template) -> None:
    rules = prod.find_resources("AWS::Events::Rule", {"Properties": {"ScheduleExpression": "cron(5 * * * ? *)"}})
    [rule] = rules.values()
    [target] = rule["Properties"]["Targets"]
    network = target["EcsParameters"]["NetworkConfiguration"]["AwsVpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED" and len(network["Subnets"]) == 3
    assert target["EcsParameters"]["LaunchType"] == "FARGATE"
    assert target["DeadLetterConfig"]["Arn"] and target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_task_role_has_the_jobs_scoped_policy_and_nothing_inline(prod: Template) -> None:
    [definition] = prod.find_resources("AWS::ECS::TaskDefinition").values()
    role = definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = prod.find_resources("AWS::IAM::ManagedPolicy", {"Properties": {"Roles": [{"Ref": role}]}})
    [policy] = policies.values()
    text = json.dumps(policy["Properties"]["PolicyDocument"])
    assert "drift-reports/mlapi-prod-endpoint/*" in text and "capture/mlapi-prod-endpoint/*" in text
    prod.resource_properties_count_is("AWS::IAM::Policy", {"Roles": [{"Ref": role}]}, 0)


def test_the_task_role_may_use_the_data_key_that_encrypts_the_buckets_it_reads_and_writes(prod: Template) -> None:
    # Capture, artifacts and reports are SSE-KMS with the data key: reading needs kms:Decrypt, writing
    # kms:GenerateDataKey (S3 User Guide, "Using server-side encryption with AWS KMS keys (SSE-KMS)").
    [config] = prod.find_resources("AWS::SageMaker::EndpointConfig").values()
    data_key = config["Properties"]["DataCaptureConfig"]["KmsKeyId"]  # the capture bucket's key: the data key
    [definition] = prod.find_resources("AWS::ECS::TaskDefinition").values()
    role = definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    [policy] = prod.find_resources("AWS::IAM::ManagedPolicy", {"Properties": {"Roles": [{"Ref": role}]}}).values()
    granted = set()
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if data_key in resources and "Condition" not in statement:
            granted.update(actions)
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= granted


def test_the_task_reads_which_build_served_from_the_release_history(prod: Template) -> None:
    """Issue 13 item 11: the task runs the same job, so it gets the same RELEASES_TABLE and Query on its status index
    ("IAM policy to grant access to a specific DynamoDB table and its indexes", DynamoDB Developer Guide)."""
    [definition] = prod.find_resources("AWS::ECS::TaskDefinition").values()
    [container] = definition["Properties"]["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    # The data stack's table (a cross-stack reference to its Ref, the name), not a name rebuilt here.
    assert environment["RELEASES_TABLE"]["Fn::ImportValue"].startswith("mlapi-prod-data:ExportsOutputRefReleaseHistory")
    role = definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    [policy] = prod.find_resources("AWS::IAM::ManagedPolicy", {"Properties": {"Roles": [{"Ref": role}]}}).values()
    [query] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Action"] == "dynamodb:Query"]
    text = json.dumps(query["Resource"])
    assert len(query["Resource"]) == 2 and text.count(json.dumps(environment["RELEASES_TABLE"])) == 2
    assert text.count("/index/status-index") == 1
