"""Model Monitor model-quality schedule: captured predictions joined with ground-truth labels, per task, and the
quality alarms the task's metrics allow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Annotations, CfnResource, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from ml_constructs.drift_monitor import quality_alarms
from ml_constructs.endpoint_alarms import topic_alarm
from ml_constructs.physical_names import name_by_create_only_properties
from ml_constructs.platform_function import FunctionPlacement
from model_container.card import BINARY, MULTICLASS, REGRESSION, Task
from platform_config.settings import ModelMonitorSettings

METRICS_NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"
Q = sagemaker.CfnModelQualityJobDefinition


@dataclass(frozen=True)
class QualityInput:
    """A task's Model Monitor problem type and where the analyzer finds the prediction in the record preprocessor's
    object (model_container/monitoring/record_preprocessor.py, `model_quality` mode)."""

    problem_type: str
    inference_attribute: str
    probability_attribute: str | None = None
    probability_threshold: float | None = None


# ModelQualityAppSpecification.ProblemType and EndpointInput (SageMaker API reference; "Monitor model quality" in
# the Developer Guide): every problem type reads the prediction at InferenceAttribute; a binary classifier's
# probability of the positive class is at ProbabilityAttribute, which ProbabilityThresholdAttribute turns into a
# label (0.5: the container's own rule), so precision/recall/AUC are computed from it. The preprocessor answers
# {"label", "probability"} (binary), {"label"} (the class index, multiclass) or {"value"} (regression).
QUALITY_INPUTS: dict[str, QualityInput] = {
    BINARY: QualityInput("BinaryClassification", "label", "probability", 0.5),
    MULTICLASS: QualityInput("MulticlassClassification", "label"),
    REGRESSION: QualityInput("Regression", "value"),
}
# The CloudWatch metrics a model-quality job publishes per problem type ("Model quality metrics and Amazon CloudWatch
# monitoring"), by our card's metric names: Model Monitor calls ROC AUC `auc`, and computes no macro-F1 or
# worst-class recall (the built-in engine, ml_constructs/drift_monitor.py, alarms on those).
PUBLISHED = {
    BINARY: {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "roc_auc": "auc"},
    MULTICLASS: {"accuracy": "accuracy"},
    REGRESSION: {"rmse": "rmse", "mae": "mae", "r2": "r2"},
}
# Model Monitor's binary metrics take class 1 as the positive class (EndpointInput has no field naming it,
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_EndpointInput.html; "Model quality metrics",
# https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html: precision and recall of
# "1"). For a card whose positive_label is 0 the preprocessor hands over P(label = 1) (POSITIVE_LABEL), so accuracy and
# AUC (symmetric under swapping the class and its score) are the model's; precision and recall would be of the other
# class than the card's acceptance bounds, so no alarm reads them.
CLASS_ONE_ONLY = ("precision", "recall")


class ModelQualitySchedule(Construct):
    """Hourly job of the model's task on the hour before last (labels arrive within an hour).

    The record preprocessor in `model_quality` mode hands the analyzer the prediction of single-row requests, whose
    event id the ground-truth records name. One alarm per quality bound the job can watch: the card's acceptance
    bounds (the model gate's thresholds), with accuracy >= monitoring.min_accuracy (classifiers) and R² >= 0
    (regression) when the card sets none (ml_constructs/drift_monitor.py quality_alarms, as the built-in engine).
    Exposes `job_definition`, `schedule`, `alarms` ({"model-<metric>": alarm}) and `alarm` (the first)."""

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
        task: Task,
        acceptance: Mapping[str, Mapping[str, float]],
        min_accuracy: float,
        placement: FunctionPlacement,
        subnet_ids: list[str],
        security_group: ec2.ISecurityGroup,
        topic: sns.ITopic,
        positive_label: int | None = 1,
    ) -> None:
        super().__init__(scope, construct_id)
        if task not in QUALITY_INPUTS:
            raise ValueError(f"task {task!r}: Model Monitor's model quality knows {', '.join(QUALITY_INPUTS)}")
        positive_label = 1 if positive_label is None else positive_label
        if positive_label not in (0, 1) or isinstance(positive_label, bool):
            raise ValueError(f"model card field 'positive_label': {positive_label!r}, must be 0 or 1")
        self.positive_label = positive_label if task == BINARY else 1
        environment = {"RECORD_MODE": "model_quality", "publish_cloudwatch_metrics": "Enabled"}
        if self.positive_label != 1:
            environment["POSITIVE_LABEL"] = str(self.positive_label)
        quality = QUALITY_INPUTS[task]
        key = placement.data_key.key_arn
        self.job_definition = Q(
            self,
            "Definition",
            role_arn=role.role_arn,
            model_quality_app_specification=Q.ModelQualityAppSpecificationProperty(
                image_uri=image,
                problem_type=quality.problem_type,
                record_preprocessor_source_uri=preprocessor_uri,
                environment=environment,
            ),
            model_quality_job_input=Q.ModelQualityJobInputProperty(
                endpoint_input=Q.EndpointInputProperty(
                    endpoint_name=endpoint_name,
                    local_path="/opt/ml/processing/input/endpoint",
                    inference_attribute=quality.inference_attribute,
                    probability_attribute=quality.probability_attribute,
                    probability_threshold_attribute=quality.probability_threshold,
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
        self.alarms = self._alarms(prefix, endpoint_name, schedule_name, task, acceptance, min_accuracy, topic)
        self.alarm = next(iter(self.alarms.values()))

    def _alarms(
        self,
        prefix: str,
        endpoint_name: str,
        schedule_name: str,
        task: str,
        acceptance: Mapping[str, Mapping[str, float]],
        min_accuracy: float,
        topic: sns.ITopic,
    ) -> dict[str, cloudwatch.Alarm]:
        published = PUBLISHED[task]
        if self.positive_label != 1:
            published = {name: metric for name, metric in published.items() if name not in CLASS_ONE_ONLY}
        bounds = quality_alarms(task, acceptance, min_accuracy)
        unwatched = [bound.metric for bound in bounds if bound.metric not in published]
        if unwatched:
            why = (
                f"computes {', '.join(m for m in unwatched if m in CLASS_ONE_ONLY)} of class 1 only and the card's "
                "positive_label is 0"
                if self.positive_label != 1 and any(m in CLASS_ONE_ONLY for m in unwatched)
                else f"computes no {', '.join(unwatched)} for a {task} model"
            )
            Annotations.of(self).add_warning_v2(
                "ml-platform:model-monitor-unwatched-metric",
                f"Model Monitor {why}: the card's acceptance of {', '.join(unwatched)} is held by the model gate "
                "only (monitoring.engine 'builtin' alarms on them on labelled traffic).",
            )
        alarms = {}
        for bound in bounds:
            if bound.metric not in published:
                continue
            name = f"model-{bound.metric.replace('_', '-')}"
            below = bound.side == "min"
            alarms[name] = topic_alarm(
                self,
                "Accuracy" if bound.metric == "accuracy" else name,  # the accuracy alarm's id predates the others
                topic=topic,
                alarm_name=f"{prefix}-{name}",
                metric=cloudwatch.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name=published[bound.metric],
                    statistic="Minimum" if below else "Maximum",
                    dimensions_map={"Endpoint": endpoint_name, "MonitoringSchedule": schedule_name},
                    period=Duration.hours(1),
                ),
                threshold=bound.threshold,
                comparison=(
                    cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
                    if below
                    else cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
                ),
                evaluation_periods=1,
                description=f"{prefix}: {bound.metric} on labelled traffic {'below' if below else 'above'} "
                f"{bound.threshold} (Model Monitor, {task})",
            )
        return alarms


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
