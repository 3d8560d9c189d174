"""Drift events → a retraining run of the delivery pipeline (pipeline variables RETRAINING, RETRAINING_REASON)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from ml_constructs.drift_monitor import DRIFT_DETAIL_TYPE, DRIFT_EVENT_SOURCE
from ml_constructs.model_monitor import FAILED_OR_VIOLATIONS, MONITORING_EXECUTION
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction

DRIFT_PATTERN = events.EventPattern(source=[DRIFT_EVENT_SOURCE], detail_type=[DRIFT_DETAIL_TYPE])
# Any environment's schedules: the events arrive from other accounts, whose schedule ARNs this stack cannot know.
MODEL_MONITOR_PATTERN = events.EventPattern(
    **MONITORING_EXECUTION, detail={"MonitoringScheduleArn": [{"exists": True}], **FAILED_OR_VIOLATIONS}
)


class RetrainingTrigger(Construct):
    """Rules on this account's default bus that start `pipeline_name` as a retraining run.

    Environments send their drift events here with `monitoring.retraining_event_bus_arn` set to this bus;
    `source_accounts` may put events on it. Exposes `function` (PlatformFunction) and `rules`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline_name: str,
        source_accounts: Sequence[str],
        placement: FunctionPlacement,
        powertools: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.function = PlatformFunction(
            self,
            "Function",
            function_name=f"{pipeline_name}-retraining-trigger",
            code=lambda_.Code.from_asset("lambda_src/retraining_trigger"),
            handler="retraining_trigger.handler.handler",
            environment={"PIPELINE_NAME": pipeline_name, "POWERTOOLS_SERVICE_NAME": "retraining-trigger"},
            placement=placement,
            reserved_concurrency=1,  # one decision at a time: two events must not both start a run
            layers=[powertools],
        )
        pipeline_arn = f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:{pipeline_name}"
        self.function.policy.add_statements(
            iam.PolicyStatement(
                actions=[
                    "codepipeline:ListPipelineExecutions",
                    "codepipeline:GetPipelineExecution",
                    "codepipeline:StartPipelineExecution",
                ],
                resources=[pipeline_arn],
            )
        )
        target = targets.LambdaFunction(
            self.function.function, retry_attempts=2, dead_letter_queue=self.function.dead_letter_queue
        )
        self.rules = [
            events.Rule(self, name, description=f"{name} → retraining run of {pipeline_name}", event_pattern=pattern)
            for name, pattern in (("DriftDetected", DRIFT_PATTERN), ("ModelMonitorViolations", MODEL_MONITOR_PATTERN))
        ]
        for rule in self.rules:
            rule.add_target(target)
        for account in sorted(set(source_accounts) - {stack.account}):
            events.CfnEventBusPolicy(
                self,
                f"From{account}",
                event_bus_name="default",
                statement_id=f"drift-events-from-{account}",
                action="events:PutEvents",
                principal=account,
            )
