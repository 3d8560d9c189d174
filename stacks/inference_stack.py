"""The model endpoint, its autoscaling and alarms, and the public API in front of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ml_constructs.api_firewall import ApiFirewall
from ml_constructs.batch_inference import BatchInference
from ml_constructs.cost_alerts import CostAlerts
from ml_constructs.deployment_guardrail import blue_green_deployment
from ml_constructs.drift_monitor import DriftMonitor
from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.endpoint_alarms import EndpointAlarms
from ml_constructs.endpoint_autoscaling import EndpointAutoscaling
from ml_constructs.model_endpoint import (
    CAPTURE_PREFIX,
    VARIANT_NAME,
    ModelEndpoint,
    ModelRelease,
    model_source_build_arg,
)
from ml_constructs.model_monitor import ModelMonitorSchedule
from ml_constructs.platform_function import FunctionPlacement
from ml_constructs.prediction_api import CONTRACT_DIR, STAGE_NAME, PredictionApi
from ml_constructs.private_network import PrivateNetwork
from ml_constructs.release_safety import ReleaseSafety
from ml_constructs.training_runner import add_training_runner, pipeline_training
from model_container.card import ModelCard
from platform_config import CONTEXT_KEY, EnvironmentSettings


class InferenceStack(Stack):
    """WAF → API Gateway → SageMaker runtime → endpoint in private subnets; alarms guard every release.

    The model is the package in `settings.model.artifact_dir` (`make model`), named, tagged and monitored as its
    card says; the API's request and response models are the contract generated from that card (`contract_dir`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        network: PrivateNetwork,
        data_key: kms.IKey,
        logs_key: kms.IKey,
        capture_bucket: s3.IBucket,
        capture_bucket_name: str,
        release_table_name: str,
        artifacts_bucket_name: str,
        reports_bucket_name: str,
        removal_policy: RemovalPolicy,
        commit: str,
        contract_dir: Path = CONTRACT_DIR,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        prefix = settings.resource_prefix()
        endpoint_name, api_name = f"{prefix}-endpoint", f"{prefix}-api"
        # The card of the package `make model` built is the one source of the model's name, version, task,
        # features and acceptance: names, tags, alarms, the drift job and the batch output follow it.
        card = ModelCard.load(settings.model.artifact_dir)
        release = ModelRelease.from_card(card)
        # cdk.json's ml-platform.defaults.model.source, as the Dockerfile's build stage takes it (MODEL_SOURCE).
        context = self.node.try_get_context(CONTEXT_KEY) or {}
        model_source = context.get("defaults", {}).get("model", {}).get("source")

        self.alarms = EndpointAlarms(
            self,
            "Alarms",
            prefix=prefix,
            settings=settings.alarms,
            emails=settings.alarm_emails,
            key=logs_key,
            endpoint_name=endpoint_name,
            variant_name=VARIANT_NAME,
            api_name=api_name,
            api_stage=STAGE_NAME,
            model_name=release.name,
            model_version=release.version,
            max_instances=settings.endpoint.max_capacity,
            instance_vcpus=settings.endpoint.vcpus,
            task=release.task,
            class_names=release.label_names,
        )
        # The environment's monthly budget and cost anomaly alerts, to the alarm topic and settings.cost.emails.
        self.cost_alerts = CostAlerts(
            self, "CostAlerts", prefix=prefix, environment_name=settings.name, settings=settings.cost,
            topic=self.alarms.topic, topic_key=logs_key,
        )  # fmt: skip
        self.model_endpoint = ModelEndpoint(
            self,
            "Model",
            endpoint_name=endpoint_name,
            settings=settings.endpoint,
            source=settings.model,
            release=release,
            vpc=network.vpc,
            subnets=network.inference_subnets,
            security_group=network.endpoint_security_group,
            data_key=data_key,
            capture_bucket=capture_bucket,
            capture_bucket_name=capture_bucket_name,
            logs=LogPolicy(logs_key, settings.data.log_retention_days, removal_policy),
            commit=commit,
            model_source=model_source,
            rollback_alarms=self.alarms.rollback_alarms,
            deployment_config=blue_green_deployment(
                settings.deployment,
                alarms=self.alarms.rollback_alarms,
            ),
        )
        EndpointAutoscaling(
            self,
            "Autoscaling",
            endpoint_name=endpoint_name,
            variant_name=VARIANT_NAME,
            settings=settings.endpoint,
            endpoint=self.model_endpoint.endpoint,
        )
        self.api = PredictionApi(
            self,
            "Api",
            api_name=api_name,
            endpoint_name=endpoint_name,
            settings=settings.api,
            logs_key=logs_key,
            log_retention_days=settings.api.access_log_retention_days,
            removal_policy=removal_policy,
            contract_dir=contract_dir,
        )
        self.api.node.add_dependency(self.model_endpoint.endpoint)
        placement = FunctionPlacement(
            vpc=network.vpc,
            subnets=network.inference_subnets,
            security_group=network.endpoint_security_group,
            data_key=data_key,
            logs_key=logs_key,
            log_retention_days=settings.data.log_retention_days,
            removal_policy=removal_policy,
        )
        self.release_safety = ReleaseSafety(
            self,
            "Releases",
            prefix=prefix,
            endpoint_name=endpoint_name,
            table_name=release_table_name,
            guard_alarms=self.alarms.rollback_alarms,
            topic=self.alarms.topic,
            settings=settings.deployment,
            powertools_layer_arn=settings.lambdas.powertools_layer_arn(settings.region),
            placement=placement,
        )
        if settings.monitoring.engine == "model_monitor":
            self.drift: DriftMonitor | ModelMonitorSchedule = ModelMonitorSchedule(
                self,
                "ModelMonitor",
                prefix=prefix,
                environment_name=settings.name,
                settings=settings.monitoring,
                endpoint_name=endpoint_name,
                model_version=release.version,
                capture_bucket_name=capture_bucket_name,
                capture_prefix=CAPTURE_PREFIX,
                monitoring_bucket_name=reports_bucket_name,
                topic=self.alarms.topic,
                placement=placement,
                task=release.task,
                acceptance=card.acceptance,
                feature_names=card.feature_names,
                positive_label=card.positive_label,
            )
            self.drift.node.add_dependency(self.model_endpoint.endpoint)
            CfnOutput(
                self,
                "ModelMonitorBaseline",
                description="Inputs of scripts/model_monitor_baseline.py --stack",
                value=self.to_json_string(self.drift.baseline_inputs),
            )
        else:
            self.drift = DriftMonitor(
                self,
                "Drift",
                prefix=prefix,
                settings=settings.monitoring,
                endpoint_name=endpoint_name,
                variant_name=VARIANT_NAME,
                model_version=release.version,
                capture_bucket_name=capture_bucket_name,
                capture_prefix=CAPTURE_PREFIX,
                artifacts_bucket_name=artifacts_bucket_name,
                reports_bucket_name=reports_bucket_name,
                topic=self.alarms.topic,
                placement=placement,
                release_table_name=release_table_name,
                task=release.task,
                acceptance=card.acceptance,
                feature_names=card.feature_names,
            )
        if self.drift.alarms:
            self.alarms.dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(title="Drift", alarms=list(self.drift.alarms.values()), width=24)
            )
        if settings.batch.enabled:
            self.batch = BatchInference(
                self,
                "Batch",
                prefix=prefix,
                settings=settings.batch,
                model_endpoint=self.model_endpoint,
                bucket_name=artifacts_bucket_name,
                data_key=data_key,
                topic=self.alarms.topic,
                topic_key=logs_key,
                logs=LogPolicy(logs_key, settings.data.log_retention_days, removal_policy),
                owns_transform_log_group=settings.batch.transform_log_group == "own",
            )
        # training.runner: sagemaker - the retraining runs' SageMaker training jobs, in production only.
        training = pipeline_training(self, settings.name)
        self.training = None
        if training is not None:
            self.training = add_training_runner(
                self,
                prefix=prefix,
                settings=training,
                network=network,
                data_key=data_key,
                bucket_name=artifacts_bucket_name,
                logs=LogPolicy(logs_key, settings.data.log_retention_days, removal_policy),
                build_args=model_source_build_arg(model_source),
            )
        self.firewall = ApiFirewall(
            self,
            "Firewall",
            prefix=prefix,
            stage_arn=self.api.stage.stage_arn,
            rate_limit_per_5_minutes=settings.api.waf_rate_limit_per_5_minutes,
            key_rate_limit_per_5_minutes=settings.api.waf_key_rate_limit_per_5_minutes,
            max_body_kb=settings.api.max_body_kb,
            logs_key=logs_key,
            log_retention_days=settings.data.log_retention_days,
            removal_policy=removal_policy,
        )
