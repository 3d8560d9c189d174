"""Hourly drift job over captured traffic, its alarms, and the drift → SNS / retraining path."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from ml_constructs.decision_lock import DecisionLockTable
from ml_constructs.drift_task import DriftTask
from ml_constructs.endpoint_alarms import topic_alarm
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction
from ml_constructs.prediction_api import TEST_INFERENCE_ID_PREFIX
from ml_constructs.release_history_table import STATUS_INDEX
from model_container.card import BINARY, METRICS, REGRESSION, CardError, Task
from platform_config import MonitoringSettings

CODE_DIR = "lambda_src/drift_monitor"
# CloudFormation quotas: "Maximum number of resources that you can declare in your AWS CloudFormation template - 500
# resources" (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html). Either
# drift engine declares one `drift-<feature>` alarm per card feature in the inference stack, and nothing else grows
# with the width (measured: 138-145 resources at 30 features, dev to prod, so ~110 besides the feature alarms; each
# feature adds exactly one, tests/infra/test_drift_monitor.py). A card wider than this is refused at synth, naming
# the card field, leaving ~90 resources of headroom for the rest of the stack, rather than failing later with CDK's
# generic "Number of resources ... is greater than allowed maximum of 500" or silently leaving features unwatched.
MAX_ALARMED_FEATURES = 300
METRICS_NAMESPACE = "MlApi/ModelDrift"
DRIFT_EVENT_SOURCE = "ml-platform.drift-monitor"
DRIFT_DETAIL_TYPE = "Model Drift Detected"
# The drift job's CloudWatch names of the card's quality metrics, read as data from the job's own table
# (tests/infra/test_drift_monitor.py runs the job's publisher against the alarms made from them).
QUALITY_METRIC_NAMES: dict[str, str] = json.loads(
    (Path(__file__).resolve().parents[1] / CODE_DIR / "drift_engine" / "quality_metrics.json").read_text()
)["names"]
# Without the card's acceptance bound for them: accuracy alarms below monitoring.min_accuracy (classifiers), R²
# below 0, a model worse on labelled traffic than predicting the mean (regression: a scale-free default).
DEFAULT_R2_MIN = 0.0


@dataclass(frozen=True)
class QualityAlarm:
    """One ground-truth quality alarm: the card metric, its CloudWatch name and the bound it must keep."""

    metric: str
    metric_name: str
    side: str  # "min": alarm below it; "max": alarm above it
    threshold: float


def check_feature_alarms(feature_names: Sequence[str]) -> list[str]:
    """The card's features, each of which gets a drift alarm; refuses a width past MAX_ALARMED_FEATURES."""
    if len(feature_names) > MAX_ALARMED_FEATURES:
        raise CardError(
            f"model card field 'feature_schema.features': {len(feature_names)} features; the inference stack "
            f"declares one drift alarm per feature and holds at most {MAX_ALARMED_FEATURES} of them within "
            "CloudFormation's 500 resources per stack (reduce the model's inputs, e.g. select or embed features)"
        )
    return list(feature_names)


def quality_alarms(task: str, acceptance: Mapping[str, Mapping[str, float]], min_accuracy: float) -> list[QualityAlarm]:
    """The task's quality alarms: one per metric the card's acceptance bounds (the model gate's own thresholds,
    held on labelled traffic), plus the documented defaults for accuracy (classifiers) and R² (regression)."""
    bounds = {metric: dict(bound) for metric, bound in acceptance.items()}
    if task == REGRESSION:
        bounds.setdefault("r2", {"min": DEFAULT_R2_MIN})
    else:
        bounds.setdefault("accuracy", {"min": min_accuracy})
    alarms = []
    for metric in METRICS[task]:  # the card's order; a bound for another task's metric is the card's error
        if metric in bounds:
            ((side, threshold),) = bounds[metric].items()
            alarms.append(QualityAlarm(metric, QUALITY_METRIC_NAMES[metric], side, float(threshold)))
    unknown = sorted(set(bounds) - set(METRICS[task]))
    if unknown:
        raise ValueError(f"acceptance names {unknown}: a {task} model's metrics are {', '.join(METRICS[task])}")
    return alarms


class DriftMonitor(Construct):
    """Exposes `job` (PlatformFunction) or, with runner fargate, `task` (DriftTask); and `alarms` (per feature,
    prediction, drift count, and the model `task`'s ground-truth quality metrics, see `quality_alarms`). The Lambda
    job runs one at a time under `decision_locks` (DecisionLockTable).

    `task`, `acceptance` and `feature_names` are the served model's card's (model_container/card.py; required: a
    generated copy such as contract/feature_schema.json may be another model's).

    `release_table_name` (default `<prefix>-releases`, the data stack's release history, encrypted with
    `placement.data_key`): the job reads which model build served a version from it, to compare with that build's
    baseline."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: MonitoringSettings,
        endpoint_name: str,
        variant_name: str,
        model_version: str,
        capture_bucket_name: str,
        capture_prefix: str,
        artifacts_bucket_name: str,
        reports_bucket_name: str,
        topic: sns.ITopic,
        placement: FunctionPlacement,
        release_table_name: str | None = None,
        task: Task = BINARY,
        acceptance: Mapping[str, Mapping[str, float]] | None = None,
        feature_names: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.model_task = task
        self.quality = quality_alarms(task, acceptance or {}, settings.min_accuracy)
        self.feature_names = check_feature_alarms(list(feature_names))
        stack = Stack.of(self)
        release_table_name = release_table_name or f"{prefix}-releases"
        thresholds = {
            "psi_warn": settings.psi_warn,
            "psi_alarm": settings.psi_alarm,
            "ks_p_value": settings.ks_p_value,
            "min_samples": settings.min_samples,
            "features": {name: {"psi_alarm": value} for name, value in settings.feature_psi_alarm.items()},
        }
        environment = {
            "ENDPOINT_NAME": endpoint_name,
            "VARIANT_NAME": variant_name,
            "CAPTURE_BUCKET": capture_bucket_name,
            "CAPTURE_PREFIX": capture_prefix,
            "BASELINE_BUCKET": artifacts_bucket_name,
            "BASELINE_PREFIX": "baselines/",
            "REPORT_BUCKET": reports_bucket_name,
            "METRICS_NAMESPACE": METRICS_NAMESPACE,
            "EVENT_BUS_NAME": "default",
            "WINDOW_HOURS": str(settings.window_hours),
            "THRESHOLDS_JSON": json.dumps(thresholds),
            "PROBABILITY_OF": "positive_class",
            # The marker the API gives the pipeline's test traffic: such capture records stay out of drift statistics.
            "TEST_INFERENCE_ID_PREFIX": TEST_INFERENCE_ID_PREFIX,
            "RELEASES_TABLE": release_table_name,
            "POWERTOOLS_SERVICE_NAME": "drift-monitor",
        }
        if settings.ground_truth_prefix:
            environment["GROUND_TRUTH_PREFIX"] = settings.ground_truth_prefix

        def s3_arn(bucket: str, key: str = "") -> str:
            return f"arn:{stack.partition}:s3:::{bucket}{key}"

        reads = [(capture_bucket_name, f"{capture_prefix}/{endpoint_name}/"), (artifacts_bucket_name, "baselines/")]
        if settings.ground_truth_prefix:
            reads.append((capture_bucket_name, settings.ground_truth_prefix.rstrip("/") + "/"))
        objects = [s3_arn(b, f"/{k}*") for b, k in reads]
        reports = s3_arn(reports_bucket_name, f"/drift-reports/{endpoint_name}/*")
        release_table = f"arn:{stack.partition}:dynamodb:{stack.region}:{stack.account}:table/{release_table_name}"
        statements = [
            *[
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[s3_arn(bucket)],
                    conditions={"StringLike": {"s3:prefix": [f"{key}*"]}},
                )
                for bucket, key in reads
            ],
            iam.PolicyStatement(actions=["s3:GetObject"], resources=objects),
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[reports]),
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            ),
            # served_content_hash queries the status index: an index is its own resource, <table ARN>/index/<name>
            # (DynamoDB Developer Guide, "IAM policy to grant access to a specific DynamoDB table and its indexes").
            # The table is encrypted with the data key, whose kms:Decrypt both runners hold (PlatformFunction,
            # DriftTask).
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[release_table, f"{release_table}/index/{STATUS_INDEX}"],
            ),
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[f"arn:{stack.partition}:events:{stack.region}:{stack.account}:event-bus/default"],
            ),
        ]
        hourly = events.Schedule.cron(minute="5")
        self.job: PlatformFunction | None = None
        self.task: DriftTask | None = None
        self.decision_locks: DecisionLockTable | None = None  # the Lambda runner's; the Fargate task holds none
        if settings.runner == "fargate":
            self.task = DriftTask(
                self,
                "Task",
                name=f"{prefix}-drift-monitor",
                image_directory=CODE_DIR,
                environment=environment,
                statements=statements,
                placement=placement,
                cpu=settings.task_cpu,
                memory_mib=settings.task_memory_mib,
                schedule=hourly,
            )
            policy, dead_letters = self.task.policy, self.task.dead_letter_queue
        else:
            self.job = PlatformFunction(
                self,
                "Job",
                function_name=f"{prefix}-drift-monitor",
                # numpy + scipy: a container image built at deploy time, not at synth.
                # x86_64 like the function, whatever machine runs `cdk deploy` (an arm64 laptop builds arm64).
                code=lambda_.Code.from_asset_image(CODE_DIR, platform=ecr_assets.Platform.LINUX_AMD64),
                handler=lambda_.Handler.FROM_IMAGE,
                runtime=lambda_.Runtime.FROM_IMAGE,
                environment=environment,
                placement=placement,
                timeout_seconds=900,
                memory_size=2048,
                retry_attempts=2,
            )
            self.job.policy.add_statements(*statements)
            # One run at a time under a lease lock, not a concurrency reservation (issue 13 item 9). A run that
            # finds it busy skips its window rather than raising: Lambda's retries (1 and 2 minutes later) would
            # still meet the holder's up to 15-minute run (lambda_src/drift_monitor/drift_engine/handler.py).
            self.decision_locks = DecisionLockTable(
                self, "DecisionLocks", key=placement.data_key, removal_policy=placement.removal_policy
            )
            self.decision_locks.attach(self.job, retried_when_busy=False)
            policy, dead_letters = self.job.policy, self.job.dead_letter_queue
            events.Rule(
                self,
                "Hourly",
                description=f"Drift check of {endpoint_name}'s captured traffic",
                schedule=hourly,
                targets=[targets.LambdaFunction(self.job.function, retry_attempts=2, dead_letter_queue=dead_letters)],
            )
        acknowledge(
            policy,
            [wildcard_finding(stack, arn) for arn in [*objects, reports]],
            "Capture files, baselines and reports are keyed by hour and model version under this "
            "endpoint's own prefixes; the prefix wildcard is the narrowest possible scope.",
        )
        drift_rule = events.Rule(
            self,
            "DriftDetected",
            description="Drift → alarm topic and retraining trigger",
            event_pattern=events.EventPattern(
                source=[DRIFT_EVENT_SOURCE], detail_type=[DRIFT_DETAIL_TYPE], detail={"endpointName": [endpoint_name]}
            ),
            targets=[targets.SnsTopic(topic, dead_letter_queue=dead_letters)],
        )
        if settings.retraining_event_bus_arn:
            bus = events.EventBus.from_event_bus_arn(self, "RetrainingBus", settings.retraining_event_bus_arn)
            drift_rule.add_target(targets.EventBus(bus, dead_letter_queue=dead_letters))

        self.alarms = self._alarms(prefix, settings, endpoint_name, model_version, topic)
        # The "gave up" notice: a run that still fails after Lambda's two retries (or a schedule delivery the task
        # never got, or a drift event its targets never got) lands in the dead-letter queue (lambda_src/
        # drift_monitor/EVENTS.md, "When a run fails"). A queued message is the alarm, not each attempt's RunsFailed.
        self.alarms["drift-run-gave-up"] = topic_alarm(
            self,
            "drift-run-gave-up",
            topic=topic,
            alarm_name=f"{prefix}-drift-run-gave-up",
            metric=dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            description=f"{prefix}: a drift run failed after its retries, or a drift event was not delivered "
            "(dead-letter queue); backfill the window",
        )

    def _alarms(
        self, prefix: str, settings: MonitoringSettings, endpoint_name: str, model_version: str, topic: sns.ITopic
    ) -> dict[str, cloudwatch.Alarm]:
        dims = {"EndpointName": endpoint_name, "ModelVersion": model_version}
        hour = Duration.hours(1)

        def metric(name: str, extra: dict[str, str] | None = None, statistic: str = "Maximum") -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                statistic=statistic,
                dimensions_map={**dims, **(extra or {})},
                period=hour,
            )

        specs: dict[str, tuple[cloudwatch.Metric, float, cloudwatch.ComparisonOperator]] = {
            "drift-features": (
                metric("FeaturesDrifted"),
                1,
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            ),
            "drift-prediction": (
                metric("PredictionPSI"),
                settings.psi_alarm,
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            ),
        }
        for feature in self.feature_names:
            specs[f"drift-{feature}"] = (
                metric("PSI", {"Feature": feature}),
                settings.feature_psi_alarm.get(feature, settings.psi_alarm),
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )
        if settings.ground_truth_prefix:
            for alarm in self.quality:
                below = alarm.side == "min"
                specs[f"model-{alarm.metric.replace('_', '-')}"] = (
                    # The hour's worst value of the metric: Minimum for a floor, Maximum for a ceiling.
                    metric(alarm.metric_name, statistic="Minimum" if below else "Maximum"),
                    alarm.threshold,
                    cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
                    if below
                    else cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                )
        return {
            name: topic_alarm(
                self,
                name,
                topic=topic,
                alarm_name=f"{prefix}-{name}",
                metric=alarm_metric,
                threshold=threshold,
                comparison=comparison,
                evaluation_periods=1,
                description=f"{prefix}: {name} (drift job, model {model_version})",
            )
            for name, (alarm_metric, threshold, comparison) in specs.items()
        }
