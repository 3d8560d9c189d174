"""Every branch of the blue/green guardrail: canary, linear, all at once, and serverless (all at once only).

SageMaker API reference, TrafficRoutingConfig (https://docs.aws.amazon.com/sagemaker/latest/APIReference/
API_TrafficRoutingConfig.html): CanarySize is required for CANARY, LinearStepSize for LINEAR, neither for
ALL_AT_ONCE, and both are a CapacitySize, a share of the variant's instances, which a serverless variant has none
of: so a serverless endpoint shifts all at once whatever the setting.
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


def endpoint_config(settings: DeploymentSettings, *, serverless: bool) -> tuple[dict[str, Any], str]:
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
        deployment_config=blue_green_deployment(settings, alarms=[alarm], serverless=serverless),
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
    config, alarm_id = endpoint_config(settings, serverless=False)
    policy = config["BlueGreenUpdatePolicy"]
    traffic = policy["TrafficRoutingConfiguration"]
    assert traffic["Type"] == routing
    assert traffic["WaitIntervalInSeconds"] == 120
    assert {k for k in traffic if k.endswith("Size")} == ({step_key} if step_key else set())
    if step_key:
        assert traffic[step_key] == {"Type": "CAPACITY_PERCENT", "Value": step}
    assert policy["TerminationWaitInSeconds"] == 12 * 60
    assert config["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": {"Ref": alarm_id}}]}


@pytest.mark.parametrize("routing", ["CANARY", "LINEAR", "ALL_AT_ONCE"])
def test_serverless_shifts_all_at_once_whatever_the_setting(routing: str) -> None:
    config, _ = endpoint_config(DeploymentSettings(traffic_routing=routing), serverless=True)  # type: ignore[arg-type]
    traffic = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert traffic["Type"] == "ALL_AT_ONCE"
    assert not {k for k in traffic if k.endswith("Size")}
    assert config["AutoRollbackConfiguration"]["Alarms"]  # the rollback alarms still guard the update
