"""An instance-type change deregisters autoscaling before the deploy and restores it, as templated, after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from scripts.autoscaling_guard import DesiredScaling, after, before, main, resolve_role_arn

RESOURCE_ID = "endpoint/ep/variant/primary"
TEMPLATE = {
    "Resources": {
        "Endpoint": {"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointName": "ep"}},
        "Config": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {"ProductionVariants": [{"VariantName": "primary", "InstanceType": "ml.c6i.xlarge"}]},
        },
        "Target": {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "sagemaker",
                "ResourceId": RESOURCE_ID,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "MinCapacity": 1,
                "MaxCapacity": 4,
            },
        },
        "Policy": {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": "invocations",
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": {"Ref": "Target"},
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 60000.0,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                    "ScaleInCooldown": 600,
                    "ScaleOutCooldown": 60,
                },
            },
        },
    }
}


class FakeSageMaker:
    """DescribeEndpoint/DescribeEndpointConfig of one endpoint running `instance_type` (None: no endpoint)."""

    def __init__(self, instance_type: str | None) -> None:
        self.instance_type = instance_type

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        if self.instance_type is None:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Could not find endpoint"}}, "DescribeEndpoint"
            )
        return {"EndpointConfigName": f"{EndpointName}-v1"}

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict[str, Any]:
        return {"ProductionVariants": [{"VariantName": "primary", "InstanceType": self.instance_type}]}


@pytest.fixture
def autoscaling():
    with mock_aws():
        client = boto3.client("application-autoscaling", region_name="eu-west-1")
        client.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=RESOURCE_ID,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=1,
            MaxCapacity=4,
        )
        yield client


def targets(client) -> list[dict[str, Any]]:
    return client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]


def test_unchanged_instance_type_leaves_autoscaling_alone(autoscaling) -> None:
    desired = DesiredScaling.from_template(TEMPLATE)
    assert "nothing to do" in before(desired, FakeSageMaker("ml.c6i.xlarge"), autoscaling)
    assert len(targets(autoscaling)) == 1


def test_first_deploy_has_nothing_to_deregister(autoscaling) -> None:
    assert "new endpoint" in before(DesiredScaling.from_template(TEMPLATE), FakeSageMaker(None), autoscaling)


def test_changed_instance_type_deregisters_then_after_restores_the_template(autoscaling) -> None:
    desired = DesiredScaling.from_template(TEMPLATE)
    message = before(desired, FakeSageMaker("ml.c6i.large"), autoscaling)
    assert "ml.c6i.large -> ml.c6i.xlarge" in message
    assert targets(autoscaling) == []
    assert "registered" in after(desired, autoscaling)
    [target] = targets(autoscaling)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    [policy] = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyName"] == "invocations"
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 60000.0
    assert "nothing to do" in after(desired, autoscaling)  # idempotent


def test_template_without_endpoint_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "t.json"
    template.write_text(json.dumps({"Resources": {}}))
    assert main(["before", "--template", str(template), "--region", "eu-west-1"]) == 2
    assert "expected one AWS::SageMaker::Endpoint" in capsys.readouterr().err


# ---- the template's RoleARN (issue 13 item 12) ------------------------------------------------------------------
# Application Auto Scaling API reference, RegisterScalableTarget, RoleARN: required for services without a
# service-linked role; SageMaker has one, so the parameter is optional, and a target registered without it no longer
# matches a template that names a role.
ROLE_TEMPLATE = json.loads(json.dumps(TEMPLATE))
ROLE_TEMPLATE["Resources"]["Target"]["Properties"]["RoleARN"] = {"Fn::GetAtt": ["TargetRole", "Arn"]}
ROLE_TEMPLATE["Resources"]["TargetRole"] = {
    "Type": "AWS::IAM::Role",
    "Properties": {
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "application-autoscaling.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    },
}


class FakeCloudFormation:
    def describe_stack_resource(self, StackName: str, LogicalResourceId: str) -> dict[str, Any]:
        assert (StackName, LogicalResourceId) == ("mlapi-staging-inference", "TargetRole")
        stack_id = "arn:aws:cloudformation:eu-west-1:123456789012:stack/mlapi-staging-inference/guid"
        return {"StackResourceDetail": {"StackId": stack_id, "PhysicalResourceId": "staging-target-role"}}


def test_after_registers_the_target_with_the_templates_role(autoscaling) -> None:
    desired = DesiredScaling.from_template(ROLE_TEMPLATE)
    before(desired, FakeSageMaker("ml.c6i.large"), autoscaling)
    message = after(desired, autoscaling, lambda: resolve_role_arn(desired, FakeCloudFormation(), STACK))
    [target] = targets(autoscaling)
    assert target["RoleARN"] == "arn:aws:iam::123456789012:role/staging-target-role"
    assert message.endswith("and role arn:aws:iam::123456789012:role/staging-target-role")


def test_a_literal_role_arn_is_passed_as_written(autoscaling) -> None:
    template = json.loads(json.dumps(TEMPLATE))
    literal = "arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/x"
    template["Resources"]["Target"]["Properties"]["RoleARN"] = literal
    desired = DesiredScaling.from_template(template)
    before(desired, FakeSageMaker("ml.c6i.large"), autoscaling)
    after(desired, autoscaling, resolve_role_arn(desired, None, None))
    assert targets(autoscaling)[0]["RoleARN"] == literal


STACK = "mlapi-staging-inference"


def write_assembly(tmp_path: Path, template: dict[str, Any]) -> Path:
    """The template in a cloud assembly directory with the manifest that names its stack."""
    path = tmp_path / "PipelinestagingInferenceB038EE4C.template.json"
    path.write_text(json.dumps(template))
    manifest = {
        "artifacts": {
            "PipelinestagingInferenceB038EE4C": {
                "type": "aws:cloudformation:stack",
                "properties": {"templateFile": path.name, "stackName": STACK},
            }
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return path


class DeployedStack:
    """CloudFormation's DescribeStackResource of the deployed inference stack, whose role exists in IAM (moto's
    CloudFormation needs API Gateway extras this environment lacks, so the stack is stood in for)."""

    def __init__(self, role_name: str) -> None:
        self.role_name = role_name

    def describe_stack_resource(self, StackName: str, LogicalResourceId: str) -> dict[str, Any]:
        assert (StackName, LogicalResourceId) == (STACK, "TargetRole")
        stack_id = f"arn:aws:cloudformation:eu-west-1:123456789012:stack/{STACK}/guid"
        return {"StackResourceDetail": {"StackId": stack_id, "PhysicalResourceId": self.role_name}}


def test_the_command_resolves_the_role_through_the_deployed_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        document = json.dumps(ROLE_TEMPLATE["Resources"]["TargetRole"]["Properties"]["AssumeRolePolicyDocument"])
        role = boto3.client("iam").create_role(
            RoleName="mlapi-staging-inference-TargetRole-X1", AssumeRolePolicyDocument=document
        )
        real_client = boto3.Session.client
        monkeypatch.setattr(
            boto3.Session,
            "client",
            lambda self, name, *a, **k: (
                DeployedStack(role["Role"]["RoleName"])
                if name == "cloudformation"
                else real_client(self, name, *a, **k)
            ),
        )
        template = write_assembly(tmp_path, ROLE_TEMPLATE)
        assert main(["after", "--template", str(template)]) == 0  # the target was deregistered before the deploy
        [target] = targets(boto3.client("application-autoscaling"))
        assert target["RoleARN"] == role["Role"]["Arn"]
        assert "and role " + role["Role"]["Arn"] in capsys.readouterr().out


def test_a_role_it_cannot_resolve_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "t.json"
    template.write_text(json.dumps(ROLE_TEMPLATE))  # no manifest beside it, no --stack-name
    with mock_aws():
        assert main(["after", "--template", str(template), "--region", "eu-west-1"]) == 2
    assert "pass --stack-name or --role-arn" in capsys.readouterr().err
