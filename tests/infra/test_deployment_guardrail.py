"""Every branch of the blue/green guardrail: canary, linear and all at once, each with exactly its step.

SageMaker API reference, TrafficRoutingConfig (https://docs.aws.amazon.com/sagemaker/latest/APIReference/
API_TrafficRoutingConfig.html): CanarySize is required for CANARY, LinearStepSize for LINEAR, neither for
ALL_AT_ONCE.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk.assertions import Template

from ml_constructs.deployment_guardrail import blue_green_deployment
from platform_config.settings import DeploymentSettings


def endpoint_config(settings: DeploymentSettings) -> tuple[dict[str, Any], str]:
    """The endpoint's DeploymentConfig, and the logical id of the one rollback alarm it is given."""
    stack = Stack(App(), "Probe")
    alarm = cloudwatch.Alarm(
        stack,
        "Errors",
        alarm_name="probe-errors",
        metric=cloudwatch.Metric(namespace="AWS/SageMaker", metric_name="Invocation5XXErrors"),
        threshold=1,
        evaluation_periods=1,
    )
    sagemaker.CfnEndpoint(
        stack,
        "Endpoint",
        endpoint_config_name="probe",
        deployment_config=blue_green_deployment(settings, alarms=[alarm]),
    )
    [endpoint] = Template.from_stack(stack).find_resources("AWS::SageMaker::Endpoint").values()
    return endpoint["Properties"]["DeploymentConfig"], stack.get_logical_id(alarm.node.default_child)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("routing", "step_key", "step"),
    [("CANARY", "CanarySize", 15), ("LINEAR", "LinearStepSize", 20), ("ALL_AT_ONCE", None, None)],
)
def test_each_routing_sets_exactly_its_step(routing: str, step_key: str | None, step: int | None) -> None:
    settings = DeploymentSettings(
        traffic_routing=routing,  # type: ignore[arg-type]
        canary_percent=15,
        linear_step_percent=20,
        wait_interval_seconds=120,
        bake_minutes=12,
    )
    config, alarm_id = endpoint_config(settings)
    policy = config["BlueGreenUpdatePolicy"]
    traffic = policy["TrafficRoutingConfiguration"]
    assert traffic["Type"] == routing
    assert traffic["WaitIntervalInSeconds"] == 120
    assert {k for k in traffic if k.endswith("Size")} == ({step_key} if step_key else set())
    if step_key:
        assert traffic[step_key] == {"Type": "CAPACITY_PERCENT", "Value": step}
    assert policy["TerminationWaitInSeconds"] == 12 * 60
    assert config["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": {"Ref": alarm_id}}]}
