"""The endpoint's DeploymentConfig: blue/green traffic shifting that alarms roll back."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sagemaker as sagemaker

from platform_config import DeploymentSettings

Endpoint = sagemaker.CfnEndpoint


def blue_green_deployment(
    settings: DeploymentSettings, *, alarms: list[cloudwatch.Alarm]
) -> Endpoint.DeploymentConfigProperty:
    """Shift traffic per `settings`, keep the old fleet for the bake, roll back if any alarm fires."""
    routing = settings.traffic_routing
    step = None
    if routing == "CANARY":
        step = Endpoint.CapacitySizeProperty(type="CAPACITY_PERCENT", value=settings.canary_percent)
    traffic = Endpoint.TrafficRoutingConfigProperty(
        type=routing,
        wait_interval_in_seconds=settings.wait_interval_seconds,
        canary_size=step,
        linear_step_size=Endpoint.CapacitySizeProperty(type="CAPACITY_PERCENT", value=settings.linear_step_percent)
        if routing == "LINEAR"
        else None,
    )
    return Endpoint.DeploymentConfigProperty(
        blue_green_update_policy=Endpoint.BlueGreenUpdatePolicyProperty(
            traffic_routing_configuration=traffic,
            termination_wait_in_seconds=settings.bake_minutes * 60,
        ),
        auto_rollback_configuration=Endpoint.AutoRollbackConfigProperty(
            alarms=[Endpoint.AlarmProperty(alarm_name=alarm.alarm_name) for alarm in alarms]
        ),
    )
