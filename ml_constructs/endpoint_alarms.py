"""Alarms on the public API, the endpoint and the container, to one encrypted SNS topic, plus a dashboard."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ml_constructs.alarm_topic import alarm_topic
from model_container.card import BINARY, MAX_CLASS_SHARES, MULTICLASS, OTHER_CLASSES, REGRESSION
from platform_config import AlarmSettings

CONTAINER_NAMESPACE = "MlApi/ModelServer"
# The server's EMF count of every response with a status >= 500 (Status<code> exists only per code seen).
CONTAINER_5XX_METRIC = "Errors5xx"
# The server's EMF p99 latency (ms) of each worker's interval; the guard alarm takes the worst worker's (Maximum).
CONTAINER_LATENCY_METRIC = "LatencyP99"
# The alarms that must stay OK while a new model takes traffic; named `{prefix}-{name}`. SageMaker rolls the
# deployment back if any of them goes to ALARM while traffic shifts or bakes (SageMaker Developer Guide,
# "Auto-Rollback Configuration and Monitoring"; AutoRollbackConfig takes 1-10 alarms, API reference). The two
# container guards are the fast twins of endpoint-5xx and model-latency-p99: same budgets, 10-second periods.
ROLLBACK_ALARMS = ("endpoint-5xx", "model-latency-p99", "container-error-rate", "container-latency-p99")
# The container's guard alarms evaluate 10-second periods of its high-resolution EMF metrics (the server stores
# Requests/Errors*/Latency* with StorageResolution 1 and writes a record every 5 s per worker): CloudWatch User
# Guide, "Using Amazon CloudWatch alarms" - "If you set an alarm on a high-resolution metric, you can specify a
# high-resolution alarm with a period of 10 seconds or 30 seconds, or you can set a regular alarm with a period of
# any multiple of 60 seconds"; CloudWatch API Reference, PutMetricAlarm, Period: sub-minute periods only for metrics
# stored with StorageResolution 1 (others lapse into INSUFFICIENT_DATA), and they make it a high-resolution alarm,
# "which has a higher charge than other alarms" (0.30 instead of 0.10 USD per alarm metric-month, Amazon CloudWatch
# pricing). 3 breaching periods out of 6 (30 s of errors or slowness within a minute) put a guard in ALARM within
# 40 s of a bad release's first requests (tests/infra/test_inference_stack.py, "rollback detection"); one noisy
# 10-second period does not. The AWS/SageMaker metrics are 1-minute metrics: their alarms keep
# `settings.period_seconds`.
GUARD_PERIOD_S = 10
GUARD_EVALUATION_PERIODS = 6
GUARD_DATAPOINTS_TO_ALARM = 3
# What the container reports of its answers, per task (model_container/server/metrics.py): graphed on the dashboard,
# never alarmed on - whether predictions moved is the drift job's question, against the model's own baseline. A
# multiclass container reports PredictedClassShare once per class, with the class name as dimension PredictedClass
# (the first MAX_CLASS_SHARES classes; the rest share OTHER_CLASSES).
PREDICTION_METRICS: dict[str, tuple[str, ...]] = {
    BINARY: ("MeanPositiveProbability", "PositiveRate"),
    MULTICLASS: ("PredictedClassShare",),
    REGRESSION: ("MeanPredictedValue",),
}


def prediction_metrics(task: str, class_names: Sequence[str], dims: dict[str, str]) -> list[cloudwatch.Metric]:
    """The container's prediction metrics of `task`, one per class name for a multiclass model."""
    if task != MULTICLASS:
        return [
            cloudwatch.Metric(namespace=CONTAINER_NAMESPACE, metric_name=name, dimensions_map=dims)
            for name in PREDICTION_METRICS[task]
        ]
    classes = list(class_names)
    if len(classes) > MAX_CLASS_SHARES:
        classes = [*classes[:MAX_CLASS_SHARES], OTHER_CLASSES]
    return [
        cloudwatch.Metric(
            namespace=CONTAINER_NAMESPACE,
            metric_name="PredictedClassShare",
            dimensions_map={**dims, "PredictedClass": name},
            label=f"share predicted {name}",
        )
        for name in classes
    ]


class EndpointAlarms(Construct):
    """Creates `topic`, the alarms (`rollback_alarms` guard deployments) and `dashboard`.

    Alarm names are fixed (`{prefix}-...`) so the rollback Lambdas and operators can find them. The CPU alarm's
    threshold is `alarms.cpu_utilization_percent` per instance times `instance_vcpus` (EndpointSettings.vcpus),
    as CPUUtilization sums the vCPUs; callers that do not pass it yet get the per-instance value. `task` (the model
    card's, with its `class_names` for a multiclass model) picks the prediction metrics the dashboard graphs
    (PREDICTION_METRICS): no alarm watches a metric only one task's container publishes.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: AlarmSettings,
        emails: tuple[str, ...],
        key: kms.IKey,
        endpoint_name: str,
        variant_name: str,
        api_name: str,
        api_stage: str,
        model_name: str,
        model_version: str,
        max_instances: int,
        instance_vcpus: int | None = None,
        task: str = BINARY,
        class_names: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = alarm_topic(self, "Topic", prefix=prefix, key=key, emails=emails)
        period = Duration.seconds(settings.period_seconds)
        endpoint_dims = {"EndpointName": endpoint_name, "VariantName": variant_name}
        api_dims = {"ApiName": api_name, "Stage": api_stage}

        def metric(
            namespace: str, name: str, statistic: str, dims: dict[str, str], every: Duration = period
        ) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace, metric_name=name, statistic=statistic, dimensions_map=dims, period=every
            )

        def sagemaker(name: str, statistic: str = "Average") -> cloudwatch.Metric:
            return metric("AWS/SageMaker", name, statistic, endpoint_dims)

        def host(name: str) -> cloudwatch.Metric:
            return metric("/aws/sagemaker/Endpoints", name, "Average", endpoint_dims)

        def api(name: str, statistic: str) -> cloudwatch.Metric:
            return metric("AWS/ApiGateway", name, statistic, api_dims)

        container_dims = {"ModelName": model_name, "ModelVersion": model_version}
        guard_period = Duration.seconds(GUARD_PERIOD_S)
        container_errors = cloudwatch.MathExpression(
            expression="100 * errors / MAX([requests, 1])",
            using_metrics={
                # Every 5xx the server answers (500 model failure, 503 not ready...): model_container/server/metrics.py
                "errors": metric(CONTAINER_NAMESPACE, CONTAINER_5XX_METRIC, "Sum", container_dims, guard_period),
                "requests": metric(CONTAINER_NAMESPACE, "Requests", "Sum", container_dims, guard_period),
            },
            label="Container 5xx rate (%)",
            period=guard_period,
        )
        # (name, metric, threshold, comparison); latencies of SageMaker are in microseconds.
        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        specs: dict[str, tuple[cloudwatch.IMetric, float, cloudwatch.ComparisonOperator]] = {
            "api-5xx-rate": (
                cloudwatch.MathExpression(
                    expression="100 * m",
                    using_metrics={"m": api("5XXError", "Average")},
                    label="API 5xx rate (%)",
                    period=period,
                ),
                settings.api_5xx_rate_percent,
                above,
            ),
            "api-4xx-rate": (
                cloudwatch.MathExpression(
                    expression="100 * m",
                    using_metrics={"m": api("4XXError", "Average")},
                    label="API 4xx rate (%)",
                    period=period,
                ),
                settings.api_4xx_rate_percent,
                above,
            ),
            "api-latency-p99": (api("Latency", "p99"), settings.api_p99_latency_ms, above),
            "endpoint-5xx": (sagemaker("Invocation5XXErrors", "Sum"), settings.endpoint_5xx_errors, above),
            "model-latency-p99": (sagemaker("ModelLatency", "p99"), settings.model_latency_p99_ms * 1000, above),
            "overhead-latency-p99": (
                sagemaker("OverheadLatency", "p99"),
                settings.overhead_latency_p99_ms * 1000,
                above,
            ),
            # CPUUtilization is summed over the instance's vCPUs (0-100 % each; SageMaker Developer Guide,
            # "Monitor Amazon SageMaker AI with Amazon CloudWatch"); memory and disk are 0-100 % of the instance.
            "cpu": (host("CPUUtilization"), settings.cpu_utilization_percent * (instance_vcpus or 1), above),
            "memory": (host("MemoryUtilization"), settings.memory_utilization_percent, above),
            "disk": (host("DiskUtilization"), settings.disk_utilization_percent, above),
        }
        self.alarms = {
            name: topic_alarm(
                self,
                name,
                topic=self.topic,
                alarm_name=f"{prefix}-{name}",
                metric=alarm_metric,
                threshold=threshold,
                comparison=comparison,
                evaluation_periods=settings.evaluation_periods,
                datapoints_to_alarm=min(2, settings.evaluation_periods),
                description=f"{prefix}: {name} above {threshold:g}",
                notify_ok=True,
            )
            for name, (alarm_metric, threshold, comparison) in specs.items()
        }
        # ModelLatency (SageMaker) includes the container's own time, so the container's p99 is held to the same
        # budget: above it, model-latency-p99 follows a minute or two later; this guard sees it within 40 s.
        container_latency = metric(
            CONTAINER_NAMESPACE, CONTAINER_LATENCY_METRIC, "Maximum", container_dims, guard_period
        )
        guards: dict[str, tuple[cloudwatch.IMetric, float]] = {
            "container-error-rate": (container_errors, settings.container_error_rate_percent),
            "container-latency-p99": (container_latency, settings.model_latency_p99_ms),
        }
        for name, (guard_metric, threshold) in guards.items():
            self.alarms[name] = topic_alarm(
                self,
                name,
                topic=self.topic,
                alarm_name=f"{prefix}-{name}",
                metric=guard_metric,
                threshold=threshold,
                comparison=above,
                evaluation_periods=GUARD_EVALUATION_PERIODS,
                datapoints_to_alarm=GUARD_DATAPOINTS_TO_ALARM,
                description=f"{prefix}: {name} above {threshold:g} "
                f"in {GUARD_DATAPOINTS_TO_ALARM} of {GUARD_EVALUATION_PERIODS} {GUARD_PERIOD_S}-second periods",
                notify_ok=True,
            )
        action = cw_actions.SnsAction(self.topic)
        self.alarms["instances-at-max"] = self._instances_at_max(prefix, endpoint_dims, max_instances, period)
        self.alarms["instances-at-max"].add_alarm_action(action)
        # The alarms that must stay OK while a new model takes traffic (SageMaker rolls back otherwise).
        self.rollback_alarms = [self.alarms[name] for name in ROLLBACK_ALARMS]
        predictions = prediction_metrics(task, class_names, container_dims)
        self.dashboard = self._dashboard(prefix, api, sagemaker, host, container_errors, container_latency, predictions)

    def _instances_at_max(
        self, prefix: str, dims: dict[str, str], max_instances: int, period: Duration
    ) -> cloudwatch.Alarm:
        # Autoscaling has no headroom left once the variant runs at max_capacity.
        instances = cloudwatch.Metric(
            namespace="/aws/sagemaker/Endpoints",
            metric_name="CPUUtilization",
            statistic="SampleCount",
            dimensions_map=dims,
            period=period,
        )
        return cloudwatch.Alarm(
            self,
            "instances-at-max",
            alarm_name=f"{prefix}-instances-at-max",
            metric=instances,
            threshold=max_instances,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=15,
            datapoints_to_alarm=15,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{prefix}: endpoint has run at max_capacity ({max_instances}) for 15 periods",
        )

    def _dashboard(  # type: ignore[no-untyped-def]
        self, prefix, api, sagemaker, host, container_errors, container_latency, predictions
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{prefix}-inference")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[api("Count", "Sum")],
                right=[api("4XXError", "Sum"), api("5XXError", "Sum")],
            ),
            cloudwatch.GraphWidget(
                title="API latency p99 (ms)", left=[api("Latency", "p99"), api("IntegrationLatency", "p99")]
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values())),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Endpoint invocations",
                left=[sagemaker("Invocations", "Sum")],
                right=[sagemaker("Invocation4XXErrors", "Sum"), sagemaker("Invocation5XXErrors", "Sum")],
            ),
            cloudwatch.GraphWidget(
                title="Model / overhead latency p99 (us)",
                left=[sagemaker("ModelLatency", "p99"), sagemaker("OverheadLatency", "p99")],
            ),
            cloudwatch.GraphWidget(
                title="Scaling: invocations per instance", left=[sagemaker("InvocationsPerInstance", "Sum")]
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Instance utilisation (%)",
                left=[host("CPUUtilization"), host("MemoryUtilization"), host("DiskUtilization")],
            ),
            cloudwatch.GraphWidget(title="Predictions (container)", left=predictions, right=[container_errors]),
            cloudwatch.GraphWidget(title="Container latency p99, worst worker (ms)", left=[container_latency]),
        )
        return dashboard


def topic_alarm(
    scope: Construct,
    construct_id: str,
    *,
    topic: sns.ITopic,
    alarm_name: str,
    metric: cloudwatch.IMetric,
    threshold: float,
    comparison: cloudwatch.ComparisonOperator,
    evaluation_periods: int,
    description: str,
    datapoints_to_alarm: int | None = None,
    notify_ok: bool = False,
) -> cloudwatch.Alarm:
    """An alarm that notifies `topic` (missing data is not breaching: no traffic is not an incident)."""
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name,
        metric=metric,
        threshold=threshold,
        comparison_operator=comparison,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    alarm.add_alarm_action(cw_actions.SnsAction(topic))
    if notify_ok:
        alarm.add_ok_action(cw_actions.SnsAction(topic))
    return alarm
