"""Release history recorder and steady-state rollback controller, wired to SageMaker and alarm events."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction
from ml_constructs.release_history_table import STATUS_INDEX
from platform_config import DeploymentSettings

CODE_DIR = "lambda_src/releases"
# Async retries of the controller; its MAX_ROLLBACK_ATTEMPTS must be one more (see RELEASES.md).
CONTROLLER_RETRIES = 2


class ReleaseSafety(Construct):
    """Exposes `recorder` and `controller` (PlatformFunctions), each scoped to one endpoint and one table."""

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
            "POWERTOOLS_METRICS_NAMESPACE": "MlApi/Releases",
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
        for fn in (self.recorder, self.controller):
            fn.policy.add_statements(
                iam.PolicyStatement(
                    actions=table_actions + (["dynamodb:DeleteItem"] if fn is self.controller else []),
                    resources=[table_arn, f"{table_arn}/index/{STATUS_INDEX}"],
                ),
                iam.PolicyStatement(
                    actions=[
                        "sagemaker:DescribeEndpoint",
                        "sagemaker:DescribeEndpointConfig",
                        "sagemaker:DescribeModel",
                        "sagemaker:ListTags",
                    ],
                    resources=[endpoint_arn, config_arns, model_arns],
                ),
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
        self.controller.policy.add_statements(
            iam.PolicyStatement(actions=["sagemaker:UpdateEndpoint"], resources=[endpoint_arn, config_arns])
        )
        for fn in (self.recorder, self.controller):
            acknowledge(
                fn.policy,
                (wildcard_finding(stack, config_arns), wildcard_finding(stack, model_arns)),
                "Each release creates a new model and endpoint config named after this endpoint; the prefix "
                "scopes access to this endpoint's releases and nothing else.",
            )

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
