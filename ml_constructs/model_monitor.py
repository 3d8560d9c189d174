"""SageMaker Model Monitor engine: hourly data-quality schedule, its drift alarms, and violations → SNS."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from ml_constructs.drift_monitor import check_feature_alarms
from ml_constructs.endpoint_alarms import topic_alarm
from ml_constructs.model_endpoint import sagemaker_vpc_statements
from ml_constructs.model_quality_monitor import ModelQualitySchedule, monitoring_schedule
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.physical_names import name_by_create_only_properties
from ml_constructs.platform_function import FunctionPlacement, terminal_dead_letter_queue
from model_container.card import Task
from platform_config import MonitoringSettings

ANALYZER_REGISTRIES = Path(__file__).with_name("model_monitor_images.json")
METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
BASELINE_COMMAND = "python -m scripts.model_monitor_baseline"
# A monitoring execution is a processing job: it fails, or completes with an exit message naming violations.
MONITORING_EXECUTION = {"source": ["aws.sagemaker"], "detail_type": ["SageMaker Processing Job State Change"]}
FAILED_OR_VIOLATIONS = {
    "$or": [{"ProcessingJobStatus": ["Failed"]}, {"ExitMessage": [{"prefix": "CompletedWithViolations"}]}]
}


def analyzer_image(region: str) -> str:
    """The pre-built Model Monitor analyzer image of `region` (AWS's table, as the SageMaker SDK ships it)."""
    registries: dict[str, str] = json.loads(ANALYZER_REGISTRIES.read_text())
    if region not in registries:
        raise ValueError(f"Model Monitor has no analyzer image in {region}; use monitoring.engine 'builtin' there")
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{registries[region]}.dkr.ecr.{region}.{domain}/sagemaker-model-monitor-analyzer"


class ModelMonitorSchedule(Construct):
    """Exposes `role`, and once the model version has a baseline: `job_definition`, `schedule`, `alarms`, `rule`,
    and `model_quality` (ModelQualitySchedule) with `model_monitor.model_quality` and a ground-truth prefix.

    `task`, `acceptance` and `feature_names` are the served model's card's (model_container/card.py): the
    model-quality job's problem type and alarms follow the task and acceptance, the drift alarms the feature order of
    the baseline (required: the card's, never a generated copy such as contract/feature_schema.json).
    `positive_label` is a binary card's: for 0, the model-quality job is handed P(label = 1) and alarms on accuracy
    and AUC, not on precision and recall (ml_constructs/model_quality_monitor.py CLASS_ONE_ONLY).
    Without a baseline nothing is scheduled; synth warns with the command that creates one."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        environment_name: str,
        settings: MonitoringSettings,
        endpoint_name: str,
        model_version: str,
        capture_bucket_name: str,
        capture_prefix: str,
        monitoring_bucket_name: str,
        topic: sns.ITopic,
        placement: FunctionPlacement,
        task: Task = "binary_classification",  # a card without task
        acceptance: Mapping[str, Mapping[str, float]] | None = None,
        feature_names: Sequence[str],
        positive_label: int | None = 1,  # a binary card's (ModelCard.positive_label; None for other tasks)
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.feature_names = check_feature_alarms(list(feature_names))
        monitor = settings.model_monitor
        image = analyzer_image(stack.region)
        version_prefix = f"model-monitor/{endpoint_name}/{model_version}"
        self.baseline_uri = f"s3://{monitoring_bucket_name}/{version_prefix}/baseline"
        self.reports_uri = f"s3://{monitoring_bucket_name}/model-monitor/{endpoint_name}/reports"
        ground_truth = (
            (capture_bucket_name, settings.ground_truth_prefix.strip("/") + "/")
            if monitor.model_quality and settings.ground_truth_prefix
            else None
        )
        self.role = self._role(
            stack,
            prefix,
            endpoint_name,
            capture_bucket_name,
            capture_prefix,
            monitoring_bucket_name,
            image,
            placement,
            ground_truth,
        )
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        # What scripts/model_monitor_baseline.py needs to run the baseline job as the schedule runs its jobs.
        self.baseline_inputs: dict[str, Any] = {
            "bucket": monitoring_bucket_name,
            "endpoint": endpoint_name,
            "role_arn": self.role.role_arn,
            "kms_key_arn": placement.data_key.key_arn,
            "instance_type": monitor.instance_type,
            "volume_size_gb": monitor.volume_size_gb,
            "max_runtime_seconds": monitor.max_runtime_seconds,
        }
        if placement.vpc and placement.subnets and placement.security_group:
            self.baseline_inputs["subnets"] = placement.vpc.select_subnets(
                subnet_group_name=placement.subnets.subnet_group_name
            ).subnet_ids
            self.baseline_inputs["security_group_ids"] = [placement.security_group.security_group_id]
        if model_version not in monitor.baselined_versions:
            Annotations.of(self).add_warning_v2(
                "ml-platform:model-monitor-baseline-missing",
                f"No Model Monitor baseline for model {model_version} in {environment_name}: no schedule is "
                f"created. After the deploy, run `{BASELINE_COMMAND} --environment {environment_name} --stack "
                f"{Stack.of(self).stack_name} --wait` (the pipeline does, in its own account), "
                f'then add "{model_version}" to ml-platform.environments.{environment_name}.monitoring.'
                "model_monitor.baselined_versions.",
            )
            return
        if placement.vpc is None or placement.subnets is None or placement.security_group is None:
            raise ValueError("Model Monitor jobs run in the VPC: the placement needs subnets and a security group")
        slug = model_version.replace(".", "-").replace("+", "-")
        preprocessor_uri = f"s3://{monitoring_bucket_name}/{version_prefix}/record_preprocessor.py"
        subnet_ids = placement.vpc.select_subnets(subnet_group_name=placement.subnets.subnet_group_name).subnet_ids
        self.job_definition = sagemaker.CfnDataQualityJobDefinition(
            self,
            "DataQuality",
            role_arn=self.role.role_arn,
            data_quality_app_specification=sagemaker.CfnDataQualityJobDefinition.DataQualityAppSpecificationProperty(
                image_uri=image,
                record_preprocessor_source_uri=preprocessor_uri,
                environment={"publish_cloudwatch_metrics": "Enabled"},
            ),
            data_quality_baseline_config=sagemaker.CfnDataQualityJobDefinition.DataQualityBaselineConfigProperty(
                constraints_resource=sagemaker.CfnDataQualityJobDefinition.ConstraintsResourceProperty(
                    s3_uri=f"{self.baseline_uri}/constraints.json"
                ),
                statistics_resource=sagemaker.CfnDataQualityJobDefinition.StatisticsResourceProperty(
                    s3_uri=f"{self.baseline_uri}/statistics.json"
                ),
            ),
            data_quality_job_input=sagemaker.CfnDataQualityJobDefinition.DataQualityJobInputProperty(
                endpoint_input=sagemaker.CfnDataQualityJobDefinition.EndpointInputProperty(
                    endpoint_name=endpoint_name,
                    local_path="/opt/ml/processing/input/endpoint",
                    s3_input_mode="File",
                    s3_data_distribution_type="FullyReplicated",
                )
            ),
            data_quality_job_output_config=sagemaker.CfnDataQualityJobDefinition.MonitoringOutputConfigProperty(
                kms_key_id=placement.data_key.key_arn,
                monitoring_outputs=[
                    sagemaker.CfnDataQualityJobDefinition.MonitoringOutputProperty(
                        s3_output=sagemaker.CfnDataQualityJobDefinition.S3OutputProperty(
                            local_path="/opt/ml/processing/output",
                            s3_uri=f"{self.reports_uri}/data-quality",
                            s3_upload_mode="EndOfJob",
                        )
                    )
                ],
            ),
            job_resources=sagemaker.CfnDataQualityJobDefinition.MonitoringResourcesProperty(
                cluster_config=sagemaker.CfnDataQualityJobDefinition.ClusterConfigProperty(
                    instance_count=1,
                    instance_type=monitor.instance_type,
                    volume_size_in_gb=monitor.volume_size_gb,
                    volume_kms_key_id=placement.data_key.key_arn,
                )
            ),
            network_config=sagemaker.CfnDataQualityJobDefinition.NetworkConfigProperty(
                enable_network_isolation=True,
                enable_inter_container_traffic_encryption=True,
                vpc_config=sagemaker.CfnDataQualityJobDefinition.VpcConfigProperty(
                    security_group_ids=[placement.security_group.security_group_id],
                    subnets=placement.vpc.select_subnets(
                        subnet_group_name=placement.subnets.subnet_group_name
                    ).subnet_ids,
                ),
            ),
            stopping_condition=sagemaker.CfnDataQualityJobDefinition.StoppingConditionProperty(
                max_runtime_in_seconds=monitor.max_runtime_seconds
            ),
        )
        # Every property of a job definition is create-only: its name must change with them.
        job_definition_name = name_by_create_only_properties(
            self.job_definition, base=f"{prefix}-data-quality-{slug}", name_property="job_definition_name"
        )
        self.job_definition.node.add_dependency(self.policy)
        schedule_name = f"{prefix}-data-quality"
        self.schedule = monitoring_schedule(
            self,
            name=schedule_name,
            endpoint_name=endpoint_name,
            job_definition=self.job_definition,
            job_definition_name=job_definition_name,
            monitoring_type="DataQuality",
            expression=monitor.schedule_expression,
        )
        schedules = [self.schedule]
        self.model_quality = None
        if ground_truth:
            self.model_quality = ModelQualitySchedule(
                self,
                "ModelQuality",
                prefix=prefix,
                endpoint_name=endpoint_name,
                slug=slug,
                image=image,
                role=self.role,
                ground_truth_uri=f"s3://{ground_truth[0]}/{ground_truth[1]}",
                preprocessor_uri=preprocessor_uri,
                reports_uri=self.reports_uri,
                settings=monitor,
                task=task,
                acceptance=acceptance or {},
                min_accuracy=settings.min_accuracy,
                positive_label=positive_label,
                placement=placement,
                subnet_ids=subnet_ids,
                security_group=placement.security_group,
                topic=topic,
            )
            self.model_quality.node.add_dependency(self.policy)
            schedules.append(self.model_quality.schedule)
        self.dead_letter_queue = terminal_dead_letter_queue(
            self, "DeadLetters", key=placement.data_key, removal_policy=placement.removal_policy
        )
        self.rule = events.Rule(
            self,
            "Violations",
            description=f"{schedule_name}: violations or a failed execution → alarm topic and retraining trigger",
            event_pattern=events.EventPattern(
                **MONITORING_EXECUTION,
                detail={
                    "MonitoringScheduleArn": [schedule.attr_monitoring_schedule_arn for schedule in schedules],
                    **FAILED_OR_VIOLATIONS,
                },
            ),
            targets=[targets.SnsTopic(topic, dead_letter_queue=self.dead_letter_queue)],
        )
        if settings.retraining_event_bus_arn:
            bus = events.EventBus.from_event_bus_arn(self, "RetrainingBus", settings.retraining_event_bus_arn)
            self.rule.add_target(targets.EventBus(bus, dead_letter_queue=self.dead_letter_queue))
        self.alarms = self._alarms(prefix, monitor.drift_threshold, endpoint_name, schedule_name, model_version, topic)
        if self.model_quality:
            self.alarms |= self.model_quality.alarms

    def _role(
        self,
        stack: Stack,
        prefix: str,
        endpoint_name: str,
        capture_bucket: str,
        capture_prefix: str,
        monitoring_bucket: str,
        image: str,
        placement: FunctionPlacement,
        ground_truth: tuple[str, str] | None,
    ) -> iam.Role:
        """The baseline job and the scheduled jobs: read capture and baseline, write reports, metrics, logs."""
        role = iam.Role(
            self,
            "Role",
            role_name=f"{prefix}-model-monitor",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"{prefix}: Model Monitor baseline and data-quality jobs",
        )

        def s3_arn(bucket: str, key: str = "") -> str:
            return f"arn:{stack.partition}:s3:::{bucket}{key}"

        reads = [
            (capture_bucket, f"{capture_prefix}/{endpoint_name}/"),
            (monitoring_bucket, f"model-monitor/{endpoint_name}/"),
            *([ground_truth] if ground_truth else []),
        ]
        objects = [s3_arn(bucket, f"/{key}*") for bucket, key in reads]
        writes = s3_arn(monitoring_bucket, f"/model-monitor/{endpoint_name}/*")
        logs = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/ProcessingJobs:*"
        registry, repository = image.split(".", 1)[0], image.rsplit("/", 1)[1]
        self.policy = iam.ManagedPolicy(self, "Policy", roles=[role])
        self.policy.add_statements(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[placement.data_key.key_arn])
        )
        self.policy.add_statements(iam.PolicyStatement(actions=["s3:GetObject"], resources=objects))
        self.policy.add_statements(iam.PolicyStatement(actions=["s3:PutObject"], resources=[writes]))
        for bucket, key in reads:
            self.policy.add_statements(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[s3_arn(bucket)],
                    conditions={"StringLike": {"s3:prefix": [f"{key}*"]}},
                )
            )
        self.policy.add_statements(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        self.policy.add_statements(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], resources=[logs]
            )
        )
        self.policy.add_statements(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                resources=[f"arn:{stack.partition}:ecr:{stack.region}:{registry}:repository/{repository}"],
            )
        )
        self.policy.add_statements(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        if placement.vpc is not None:
            self.policy.add_statements(*sagemaker_vpc_statements(placement.vpc))
        acknowledge(
            self.policy,
            [wildcard_finding(stack, arn) for arn in [*objects, writes, logs]] + ["AwsSolutions-IAM5[Resource::*]"],
            "Model Monitor reads this endpoint's capture and baseline prefixes and writes under its own "
            "model-monitor prefix (keys are per hour and version); its processing-job log streams are created per "
            "job. Resource '*' only where AWS has no resource scope: PutMetricData (limited to Model Monitor's "
            "namespace by condition), ECR GetAuthorizationToken, and the VPC network-interface calls SageMaker "
            "makes for jobs in private subnets.",
        )
        return role

    def _alarms(
        self,
        prefix: str,
        threshold: float,
        endpoint_name: str,
        schedule_name: str,
        model_version: str,
        topic: sns.ITopic,
    ) -> dict[str, cloudwatch.Alarm]:
        """Per feature, on the drift distance Model Monitor publishes; same names as the built-in engine's."""
        features = self.feature_names
        return {
            f"drift-{feature}": topic_alarm(
                self,
                f"drift-{feature}",
                topic=topic,
                alarm_name=f"{prefix}-drift-{feature}",
                # The baseline is header-less, so the analyzer names column i `_c{i}`.
                metric=cloudwatch.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name=f"feature_baseline_drift__c{index}",
                    statistic="Maximum",
                    dimensions_map={"Endpoint": endpoint_name, "MonitoringSchedule": schedule_name},
                    period=Duration.hours(1),
                ),
                threshold=threshold,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                description=f"{prefix}: drift of {feature} (Model Monitor, model {model_version})",
            )
            for index, feature in enumerate(features)
        }
