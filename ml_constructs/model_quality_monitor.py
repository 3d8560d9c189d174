"""Model Monitor model-quality schedule: captured predictions joined with ground-truth labels, accuracy alarm."""

from __future__ import annotations

from aws_cdk import CfnResource, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from ml_constructs.endpoint_alarms import topic_alarm
from ml_constructs.physical_names import name_by_create_only_properties
from ml_constructs.platform_function import FunctionPlacement
from platform_config.settings import ModelMonitorSettings

METRICS_NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"
Q = sagemaker.CfnModelQualityJobDefinition


class ModelQualitySchedule(Construct):
    """Hourly BinaryClassification job on the hour before last (labels arrive within an hour).

    The container answers one flat object per row ({"label", "probability", ...}); the record preprocessor in
    `model_quality` mode hands the analyzer that object for single-row requests, whose event id the
    ground-truth records name. Exposes `job_definition`, `schedule` and `alarm`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        endpoint_name: str,
        slug: str,
        image: str,
        role: iam.IRole,
        ground_truth_uri: str,
        preprocessor_uri: str,
        reports_uri: str,
        settings: ModelMonitorSettings,
        min_accuracy: float,
        placement: FunctionPlacement,
        subnet_ids: list[str],
        security_group: ec2.ISecurityGroup,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        key = placement.data_key.key_arn
        self.job_definition = Q(
            self,
            "Definition",
            role_arn=role.role_arn,
            model_quality_app_specification=Q.ModelQualityAppSpecificationProperty(
                image_uri=image,
                problem_type="BinaryClassification",
                record_preprocessor_source_uri=preprocessor_uri,
                environment={"RECORD_MODE": "model_quality", "publish_cloudwatch_metrics": "Enabled"},
            ),
            model_quality_job_input=Q.ModelQualityJobInputProperty(
                endpoint_input=Q.EndpointInputProperty(
                    endpoint_name=endpoint_name,
                    local_path="/opt/ml/processing/input/endpoint",
                    inference_attribute="label",
                    probability_attribute="probability",
                    probability_threshold_attribute=0.5,
                    start_time_offset="-PT2H",
                    end_time_offset="-PT1H",
                    s3_input_mode="File",
                    s3_data_distribution_type="FullyReplicated",
                ),
                ground_truth_s3_input=Q.MonitoringGroundTruthS3InputProperty(s3_uri=ground_truth_uri),
            ),
            model_quality_job_output_config=Q.MonitoringOutputConfigProperty(
                kms_key_id=key,
                monitoring_outputs=[
                    Q.MonitoringOutputProperty(
                        s3_output=Q.S3OutputProperty(
                            local_path="/opt/ml/processing/output",
                            s3_uri=f"{reports_uri}/model-quality",
                            s3_upload_mode="EndOfJob",
                        )
                    )
                ],
            ),
            job_resources=Q.MonitoringResourcesProperty(
                cluster_config=Q.ClusterConfigProperty(
                    instance_count=1,
                    instance_type=settings.instance_type,
                    volume_size_in_gb=settings.volume_size_gb,
                    volume_kms_key_id=key,
                )
            ),
            network_config=Q.NetworkConfigProperty(
                enable_network_isolation=True,
                enable_inter_container_traffic_encryption=True,
                vpc_config=Q.VpcConfigProperty(
                    security_group_ids=[security_group.security_group_id], subnets=subnet_ids
                ),
            ),
            stopping_condition=Q.StoppingConditionProperty(max_runtime_in_seconds=settings.max_runtime_seconds),
        )
        # Every property of a job definition is create-only: its name must change with them.
        job_definition_name = name_by_create_only_properties(
            self.job_definition, base=f"{prefix}-model-quality-{slug}", name_property="job_definition_name"
        )
        schedule_name = f"{prefix}-model-quality"
        self.schedule = monitoring_schedule(
            self,
            name=schedule_name,
            endpoint_name=endpoint_name,
            job_definition=self.job_definition,
            job_definition_name=job_definition_name,
            monitoring_type="ModelQuality",
            expression=settings.schedule_expression,
        )
        self.alarm = topic_alarm(
            self,
            "Accuracy",
            topic=topic,
            alarm_name=f"{prefix}-model-accuracy",
            metric=cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name="accuracy",
                statistic="Minimum",
                dimensions_map={"Endpoint": endpoint_name, "MonitoringSchedule": schedule_name},
                period=Duration.hours(1),
            ),
            threshold=min_accuracy,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=1,
            description=f"{prefix}: accuracy on labelled traffic below {min_accuracy} (Model Monitor)",
        )


def monitoring_schedule(
    scope: Construct,
    *,
    name: str,
    endpoint_name: str,
    job_definition: CfnResource,
    job_definition_name: str,
    monitoring_type: str,
    expression: str,
) -> sagemaker.CfnMonitoringSchedule:
    """The schedule that runs `job_definition` (created first) on `endpoint_name`'s captured traffic."""
    schedule = sagemaker.CfnMonitoringSchedule(
        scope,
        "Hourly",
        monitoring_schedule_name=name,
        endpoint_name=endpoint_name,
        monitoring_schedule_config=sagemaker.CfnMonitoringSchedule.MonitoringScheduleConfigProperty(
            monitoring_job_definition_name=job_definition_name,
            monitoring_type=monitoring_type,
            schedule_config=sagemaker.CfnMonitoringSchedule.ScheduleConfigProperty(schedule_expression=expression),
        ),
    )
    schedule.node.add_dependency(job_definition)
    return schedule
