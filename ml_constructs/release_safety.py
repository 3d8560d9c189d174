"""Release history recorder and steady-state rollback controller, wired to SageMaker and alarm events."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ml_constructs.endpoint_alarms import topic_alarm
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction
from ml_constructs.release_history_table import STATUS_INDEX
from platform_config import DeploymentSettings

CODE_DIR = "lambda_src/releases"
NAMESPACE = "MlApi/Releases"
# Metrics the handlers emit when something needs a person (RELEASES.md, "Bounded and honest failure"): per function,
# (metric, what it means). Powertools adds the dimension service=<POWERTOOLS_SERVICE_NAME>.
OPERATOR_METRICS = {
    "controller": (
        ("RollbackGaveUp", "an alarm's rollback gave up (retries spent or refused): roll back by hand"),
        ("NotificationFailed", "a release notice could not be published; read the function's log"),
        ("MalformedEvent", "an alarm event without the documented shape was ignored"),
    ),
    "recorder": (
        ("NotificationFailed", "a release notice could not be published; read the function's log"),
        ("MalformedEvent", "an endpoint event without the documented shape was ignored"),
    ),
}
# Async retries of the controller; its MAX_ROLLBACK_ATTEMPTS must be one more (see RELEASES.md).
CONTROLLER_RETRIES = 2
# The inference stack's output holding the operator policy's ARN (README, rollback runbook; RELEASES.md).
OPERATOR_POLICY_OUTPUT = "ReleaseOperatorPolicyArn"


class ReleaseSafety(Construct):
    """Exposes `recorder` and `controller` (PlatformFunctions), each scoped to one endpoint and one table, and
    `operator_policy`: what the operator CLI needs for the same endpoint, for an admin to attach to operators."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        endpoint_name: str,
        table_name: str,
        guard_alarms: list[cloudwatch.Alarm],
        topic: sns.ITopic,
        placement: FunctionPlacement,
        settings: DeploymentSettings,
        powertools_layer_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        layer = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", powertools_layer_arn)
        alarm_names = ",".join(alarm.alarm_name for alarm in guard_alarms)
        common = {
            "TABLE_NAME": table_name,
            "ENDPOINT_NAME": endpoint_name,
            "ALARM_NAMES": alarm_names,
            "TOPIC_ARN": topic.topic_arn,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
        }

        def function(
            name: str, handler: str, environment: dict[str, str], concurrency: int, retries: int
        ) -> PlatformFunction:
            return PlatformFunction(
                self,
                name.title(),
                function_name=f"{prefix}-release-{name}",
                code=lambda_.Code.from_asset(CODE_DIR),
                handler=handler,
                environment={**common, "POWERTOOLS_SERVICE_NAME": f"release-{name}", **environment},
                placement=placement,
                reserved_concurrency=concurrency,
                layers=[layer],
                retry_attempts=retries,
            )

        self.recorder = function(
            "recorder",
            "release_history.recorder.handler",
            {"BAKE_MINUTES": str(settings.bake_minutes)},
            concurrency=2,
            retries=2,
        )
        self.controller = function(
            "controller",
            "release_history.controller.handler",
            {
                "AUTO_ROLLBACK": str(settings.auto_rollback).lower(),
                "MAX_ROLLBACK_ATTEMPTS": str(CONTROLLER_RETRIES + 1),
                # Flap guard (RELEASES.md): no second automatic rollback within this many minutes.
                "ROLLBACK_COOLDOWN_MINUTES": str(settings.rollback_cooldown_minutes),
            },
            concurrency=1,
            retries=CONTROLLER_RETRIES,
        )

        partition = stack.partition

        def arn(service: str, resource: str) -> str:
            return f"arn:{partition}:{service}:{stack.region}:{stack.account}:{resource}"

        table_arn = arn("dynamodb", f"table/{table_name}")
        endpoint_arn = arn("sagemaker", f"endpoint/{endpoint_name}")
        # Model and endpoint-config names start with the endpoint's name (see ModelEndpoint).
        config_arns = arn("sagemaker", f"endpoint-config/{endpoint_name}-*")
        model_arns = arn("sagemaker", f"model/{endpoint_name}-*")
        table_actions = [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:ConditionCheckItem",
        ]

        def reads() -> iam.PolicyStatement:
            return iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DescribeModel",
                    "sagemaker:ListTags",
                ],
                resources=[endpoint_arn, config_arns, model_arns],
            )

        for fn in (self.recorder, self.controller):
            fn.policy.add_statements(
                iam.PolicyStatement(
                    actions=table_actions + (["dynamodb:DeleteItem"] if fn is self.controller else []),
                    resources=[table_arn, f"{table_arn}/index/{STATUS_INDEX}"],
                ),
                reads(),
                iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn]),
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[placement.logs_key.key_arn]
                ),
            )
        self.recorder.policy.add_statements(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"], resources=[alarm.alarm_arn for alarm in guard_alarms]
            )
        )
        data_key = placement.data_key.key_arn
        self.controller.policy.add_statements(*update_endpoint_statements(endpoint_arn, config_arns, data_key))
        wildcards = (wildcard_finding(stack, config_arns), wildcard_finding(stack, model_arns))
        for fn in (self.recorder, self.controller):
            acknowledge(
                fn.policy,
                wildcards,
                "Each release creates a new model and endpoint config named after this endpoint; the prefix "
                "scopes access to this endpoint's releases and nothing else.",
            )
        self.operator_policy = self._operator_policy(
            [
                # The CLI reads and writes the release history, freeze flag and rollback lock like the controller.
                iam.PolicyStatement(
                    actions=[*table_actions, "dynamodb:DeleteItem"],
                    resources=[table_arn, f"{table_arn}/index/{STATUS_INDEX}"],
                ),
                # The table is encrypted with the data key, as the Lambdas' PlatformFunction grant reflects.
                iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[data_key]),
                reads(),
                *update_endpoint_statements(endpoint_arn, config_arns, data_key),
            ],
            wildcards,
        )

        self.operator_alarms = self._operator_alarms(prefix, topic)

        events.Rule(
            self,
            "EndpointStateChanges",
            description=f"SageMaker state changes of {endpoint_name}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointName": [endpoint_name]},
            ),
            targets=[
                targets.LambdaFunction(
                    self.recorder.function,
                    retry_attempts=4,
                    max_event_age=Duration.hours(2),
                    dead_letter_queue=self.recorder.dead_letter_queue,
                )
            ],
        )
        events.Rule(
            self,
            "PromotionCheck",
            description="Promote baked releases whose alarms stayed OK",
            schedule=events.Schedule.rate(Duration.minutes(5)),
            targets=[
                targets.LambdaFunction(
                    self.recorder.function, retry_attempts=2, dead_letter_queue=self.recorder.dead_letter_queue
                )
            ],
        )
        events.Rule(
            self,
            "GuardAlarms",
            description=f"Guard alarms of {endpoint_name} went to ALARM",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": [alarm.alarm_name for alarm in guard_alarms], "state": {"value": ["ALARM"]}},
            ),
            targets=[
                targets.LambdaFunction(
                    self.controller.function,
                    retry_attempts=CONTROLLER_RETRIES,
                    max_event_age=Duration.hours(1),
                    dead_letter_queue=self.controller.dead_letter_queue,
                )
            ],
        )

    def _operator_alarms(self, prefix: str, topic: sns.ITopic) -> list[cloudwatch.Alarm]:
        """Something needs a person: a rollback gave up, a notice was lost, an event was malformed, or an event's
        retries were spent (its dead-letter queue is not empty). Each notifies the release topic."""
        alarms = []
        for name, fn in (("recorder", self.recorder), ("controller", self.controller)):
            for metric_name, meaning in OPERATOR_METRICS[name]:
                metric = cloudwatch.Metric(
                    namespace=NAMESPACE,
                    metric_name=metric_name,
                    dimensions_map={"service": f"release-{name}"},
                    statistic="Sum",
                    period=Duration.minutes(5),
                )
                alarms.append(self._alarm(f"{name}-{metric_name}", prefix, topic, metric, meaning))
            alarms.append(
                self._alarm(
                    f"{name}-dead-letters",
                    prefix,
                    topic,
                    _visible(fn.dead_letter_queue),
                    f"an event for the release {name} failed all its retries; it waits in the dead-letter queue",
                )
            )
        return alarms

    def _alarm(
        self, name: str, prefix: str, topic: sns.ITopic, metric: cloudwatch.IMetric, meaning: str
    ) -> cloudwatch.Alarm:
        return topic_alarm(
            self,
            name.title().replace("-", ""),
            topic=topic,
            alarm_name=f"{prefix}-release-{name}",
            metric=metric,
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            description=meaning,
        )

    def _operator_policy(self, statements: list[iam.PolicyStatement], wildcards: tuple[str, ...]) -> iam.ManagedPolicy:
        """Attached to no one here: operators' roles live outside this app (SSO, an account admin's roles).
        Not custom-named, so that a change of a replacement-only property (description, path) can replace it."""
        policy = iam.ManagedPolicy(
            self,
            "OperatorPolicy",
            description="Operator CLI (lambda_src/releases): release history, freeze and manual rollback of "
            "this environment's endpoint; see RELEASES.md",
            statements=statements,
        )
        acknowledge(
            policy,
            wildcards,
            "The operator CLI reads and rolls back to releases, each a model and endpoint config named after this "
            "endpoint; the prefix scopes access to this endpoint's releases and nothing else.",
        )
        output = CfnOutput(
            self,
            "OperatorPolicyArn",
            description="Attach to the role operators use for `python -m lambda_src.releases.release_history`",
            value=policy.managed_policy_arn,
        )
        output.override_logical_id(OPERATOR_POLICY_OUTPUT)  # a stable key for the runbook's lookup
        return policy


def _visible(queue: sqs.IQueue) -> cloudwatch.IMetric:
    return queue.metric_approximate_number_of_messages_visible(statistic="Maximum", period=Duration.minutes(5))


def update_endpoint_statements(endpoint_arn: str, config_arns: str, data_key_arn: str) -> list[iam.PolicyStatement]:
    """UpdateEndpoint onto a config whose KmsKeyId is the data key (the configs ModelEndpoint creates).

    SageMaker encrypts the new fleet's volumes with that key by creating a KMS grant with the caller's rights:
    "Amazon SageMaker AI API Permissions: Actions, Permissions, and Resources Reference" lists kms:CreateGrant for
    CreateEndpoint when the endpoint config has a KmsKeyId, and the CreateEndpointConfig API reference (KmsKeyId)
    says the key must admit the caller of CreateEndpoint and UpdateEndpoint. kms:GrantIsForAWSResource holds the
    grant to requests SageMaker makes on the caller's behalf (KMS Developer Guide, "Controlling access to grants").
    kms:DescribeKey (key metadata only) lets SageMaker validate the key with the caller's rights; the pages above do
    not name it, the issue asks for it, and it exposes no key material.
    """
    return [
        iam.PolicyStatement(actions=["sagemaker:UpdateEndpoint"], resources=[endpoint_arn, config_arns]),
        iam.PolicyStatement(
            actions=["kms:CreateGrant"],
            resources=[data_key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        iam.PolicyStatement(actions=["kms:DescribeKey"], resources=[data_key_arn]),
    ]
