"""An instance-type change deregisters autoscaling before the deploy and restores it, as templated, after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from scripts.autoscaling_guard import DesiredScaling, after, before, main

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
