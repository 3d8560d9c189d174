"""Drift events → a retraining run of the delivery pipeline (pipeline variables RETRAINING, RETRAINING_REASON)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from ml_constructs.decision_lock import DecisionLockTable
from ml_constructs.drift_monitor import DRIFT_DETAIL_TYPE, DRIFT_EVENT_SOURCE
from ml_constructs.model_monitor import FAILED_OR_VIOLATIONS, MONITORING_EXECUTION
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction


@dataclass(frozen=True)
class RetrainingSource:
    """The one environment whose drift may start a retraining run, production: its account, region and the resource
    prefix its endpoint and Model Monitor schedules are named with."""

    account: str
    region: str
    prefix: str

    @property
    def endpoint_name(self) -> str:
        return f"{self.prefix}-endpoint"


# Only production's drift retrains: staging's and dev's endpoints serve the pipeline's own load tests and
# experiments, and in the shipped config every environment puts its events on this same default bus. An event
# keeps the account it was sent from when a rule forwards it to another account's bus, and the receiving rules
# match "events that come from the sender account" ("Sending and receiving events between AWS accounts in Amazon
# EventBridge"); the drift job names the endpoint in the detail (lambda_src/drift_monitor/EVENTS.md).
def drift_pattern(source: RetrainingSource) -> events.EventPattern:
    return events.EventPattern(
        source=[DRIFT_EVENT_SOURCE],
        detail_type=[DRIFT_DETAIL_TYPE],
        account=[source.account],
        detail={"endpointName": [source.endpoint_name]},
    )


def model_monitor_pattern(source: RetrainingSource, partition: str) -> events.EventPattern:
    # Production's schedules are named <prefix>-<kind> (model_monitor.py); their ARNs are built, not referenced, as
    # they live in another stack, possibly another account.
    schedules = f"arn:{partition}:sagemaker:{source.region}:{source.account}:monitoring-schedule/{source.prefix}-"
    return events.EventPattern(
        **MONITORING_EXECUTION,
        account=[source.account],
        detail={"MonitoringScheduleArn": [{"prefix": schedules}], **FAILED_OR_VIOLATIONS},
    )


class RetrainingTrigger(Construct):
    """Rules on this account's default bus that start `pipeline_name` as a retraining run.

    Environments send their drift events here with `monitoring.retraining_event_bus_arn` set to this bus;
    `source_accounts` may put events on it; only `production`'s endpoint and schedules start a run. One decision at
    a time under `decision_locks`. Exposes `function` (PlatformFunction),
    `rules`, `production` and `decision_locks`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline_name: str,
        source_accounts: Sequence[str],
        placement: FunctionPlacement,
        powertools: lambda_.ILayerVersion,
        production: RetrainingSource,
        decision_locks: DecisionLockTable,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.production = production
        self.function = PlatformFunction(
            self,
            "Function",
            function_name=f"{pipeline_name}-retraining-trigger",
            code=lambda_.Code.from_asset("lambda_src/retraining_trigger"),
            handler="retraining_trigger.handler.handler",
            environment={"PIPELINE_NAME": pipeline_name, "POWERTOOLS_SERVICE_NAME": "retraining-trigger"},
            placement=placement,
            layers=[powertools],
        )
        # One decision at a time (two events must not both start a run) under a lease lock, not a concurrency
        # reservation (issue 13 item 9). A busy lock means another drift event is deciding: the holder's decision
        # (start a run, or one is running) stands for both, so the second returns without starting one (handler.py).
        self.decision_locks = decision_locks
        self.decision_locks.attach(self.function, retried_when_busy=False)
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
            for name, pattern in (
                ("DriftDetected", drift_pattern(self.production)),
                ("ModelMonitorViolations", model_monitor_pattern(self.production, stack.partition)),
            )
        ]
        for rule in self.rules:
            rule.add_target(target)
        bus_arn = f"arn:{stack.partition}:events:{stack.region}:{stack.account}:event-bus/default"
        for account in sorted(set(source_accounts) - {stack.account}):
            # `statement`, not `action`/`principal`, which the CfnEventBusPolicy reference marks "(deprecated)"
            # (AWS CDK API reference, CfnEventBusPolicyProps; AWS::Events::EventBusPolicy keeps them for old stacks).
            events.CfnEventBusPolicy(
                self,
                f"From{account}",
                event_bus_name="default",
                statement_id=f"drift-events-from-{account}",
                statement={
                    "Sid": f"drift-events-from-{account}",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{stack.partition}:iam::{account}:root"},
                    "Action": "events:PutEvents",
                    "Resource": bus_arn,
                },
            )
