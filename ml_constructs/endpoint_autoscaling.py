"""Application Auto Scaling of the endpoint's production variant."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct, IDependable

from platform_config import EndpointSettings


class EndpointAutoscaling(Construct):
    """Target tracking on invocations per instance and on CPU, plus scheduled peaks; exposes `target`.

    SageMaker rejects an endpoint update that changes the instance type of a variant registered here:
    `scripts/autoscaling_guard.py` deregisters the target before such a deploy (see README).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        variant_name: str,
        settings: EndpointSettings,
        endpoint: IDependable,
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{endpoint_name}/variant/{variant_name}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=settings.min_capacity,
            max_capacity=settings.max_capacity,
        )
        self.target.node.add_dependency(endpoint)
        scale_in = Duration.seconds(settings.scale_in_cooldown_seconds)
        scale_out = Duration.seconds(settings.scale_out_cooldown_seconds)
        self.target.scale_to_track_metric(
            "Invocations",
            target_value=settings.invocations_per_instance_target,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=scale_in,
            scale_out_cooldown=scale_out,
        )
        self.target.scale_to_track_metric(
            "Cpu",
            # CPUUtilization sums the vCPUs (0-100 % each): the per-instance target times the vCPUs
            # (platform_config.settings.instance_vcpus, with the documents it follows).
            target_value=settings.cpu_utilization_target * settings.vcpus,
            custom_metric=cloudwatch.Metric(
                namespace="/aws/sagemaker/Endpoints",
                metric_name="CPUUtilization",
                statistic="Average",
                dimensions_map={"EndpointName": endpoint_name, "VariantName": variant_name},
            ),
            scale_in_cooldown=scale_in,
            scale_out_cooldown=scale_out,
        )
        for peak in settings.scheduled_scaling:
            self.target.scale_on_schedule(
                peak.name,
                schedule=appscaling.Schedule.expression(peak.schedule),
                min_capacity=peak.min_capacity,
                max_capacity=peak.max_capacity,
            )
