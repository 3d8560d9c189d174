"""The project's SageMaker Model Registry: one model package group, with the bucket and key that hold its versions'
metrics, in production's account and region.

Every build registers a model package (a version) in it, pending approval; the pipeline's model approval, or a
data scientist in the registry, approves or rejects it, and production deploys only an approved package
(scripts/register_model_package.py). The pipeline registers in its Checks wave, before it deploys production's
stacks: the registry is deployed with production's step roles, in the pipeline's StepAccess wave
(stacks/step_access_stack.py), not with production's data stack (issue 13 item 1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from ml_constructs.decision_lock import DecisionLockTable
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction
from ml_constructs.secure_bucket import access_log_bucket, secure_bucket
from platform_config import CONTEXT_KEY

SAGEMAKER_SOURCE = "aws.sagemaker"
# SageMaker Developer Guide, "Events that Amazon SageMaker AI sends to Amazon EventBridge" — "Model package state
# change": detail-type "SageMaker Model Package State Change", detail.ModelPackageGroupName,
# detail.ModelPackageArn, detail.ModelApprovalStatus (Approved | Rejected | PendingManualApproval).
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
# Read access as "Set up discoverability" (SageMaker Developer Guide, Model Registry cross-account
# discoverability) grants it: on the group ARN and model-package/<group>/*.
READ_ACTIONS = ("sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages")
# What the pipeline account does to the group: approve (ModelPackageApproval) or reject (the registry trigger) a
# version (the group's policy must allow it from another account; Service Authorization Reference: UpdateModelPackage
# on model-package). Registering runs as production's own step role (ml_constructs/step_access.py), in this account.
PUBLISH_ACTIONS = ("sagemaker:UpdateModelPackage",)


def group_name(project: str) -> str:
    """The model package group of a project (ModelPackageGroupName: 1-63 letters, digits and dashes)."""
    return f"{project}-models"


def metrics_bucket_name(*, prefix: str, account: str, region: str) -> str:
    """The bucket holding the registered versions' metrics (ModelMetrics), under `model-registry/`: `prefix` is
    production's resource prefix (`<project>-prod`)."""
    return f"{prefix}-registry-{account}-{region}"


def metrics_key_alias(prefix: str) -> str:
    """The alias of the KMS key that encrypts the metrics bucket (the register step is granted it by alias)."""
    return f"alias/{prefix}/registry"


def group_arns(*, partition: str, region: str, account: str, project: str) -> tuple[str, str]:
    """(the group's ARN, the ARN pattern of its versions: model-package/<group>/<version>)."""
    name = group_name(project)
    base = f"arn:{partition}:sagemaker:{region}:{account}"
    return f"{base}:model-package-group/{name}", f"{base}:model-package/{name}/*"


def state_change_pattern(project: str, statuses: Sequence[str]) -> dict[str, Any]:
    """The EventBridge pattern (template form) of this group's packages changing to one of `statuses`."""
    return {
        "source": [SAGEMAKER_SOURCE],
        "detail-type": [MODEL_PACKAGE_STATE_CHANGE],
        "detail": {"ModelPackageGroupName": [group_name(project)], "ModelApprovalStatus": list(statuses)},
    }


@dataclass(frozen=True)
class RegistryAccess:
    """Who may use the registry from other accounts: readers (staging, production, pipeline) and publishers
    (the pipeline, which decides packages; it registers them as production's own step role)."""

    readers: tuple[str, ...]
    publishers: tuple[str, ...]


class ModelRegistry(Construct):
    """A retained model package group `<project>-models` whose resource policy lets `access.readers` describe and
    list its packages and `access.publishers` approve and reject them; and the retained, KMS-encrypted bucket its
    versions' metrics live in (`metrics_bucket_name`, key alias `metrics_key_alias`), written by the register step.

    No description: ModelPackageGroupDescription is create-only, and the group must never be replaced (its
    versions and their approval history live in it). Exposes `group`, `group_name`, `group_arn`, `versions_arn`,
    `metrics_key` and `metrics_bucket`.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, project: str, prefix: str, access: RegistryAccess
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.group_name = group_name(project)
        self.group_arn, self.versions_arn = group_arns(
            partition=stack.partition, region=stack.region, account=stack.account, project=project
        )
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=self.group_name,
            model_package_group_policy=self._policy(stack, access),
        )
        # Retained whatever the stack's fate: a package's metrics and approval history outlive any deploy.
        self.group.apply_removal_policy(RemovalPolicy.RETAIN)
        self.metrics_key = kms.Key(
            self,
            "MetricsKey",
            alias=metrics_key_alias(prefix),
            description=f"{prefix}: the model registry's metrics (model-registry/ in {prefix}-registry-*)",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.RETAIN,
        )
        logs = access_log_bucket(self, "AccessLogs", expire_days=365, removal_policy=RemovalPolicy.RETAIN)
        self.metrics_bucket = secure_bucket(
            self,
            "Metrics",
            key=self.metrics_key,
            access_logs=logs,
            removal_policy=RemovalPolicy.RETAIN,
            bucket_name=metrics_bucket_name(prefix=prefix, account=stack.account, region=stack.region),
            # A version's metrics are written once and referenced by its package for good; only overwritten
            # copies (a retried registration) expire.
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )

    def _policy(self, stack: Stack, access: RegistryAccess) -> dict[str, Any]:
        def principals(accounts: Sequence[str]) -> dict[str, list[str]]:
            return {"AWS": [f"arn:{stack.partition}:iam::{account}:root" for account in accounts]}

        resources = [self.group_arn, self.versions_arn]
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadModelPackages",
                    "Effect": "Allow",
                    "Principal": principals(access.readers),
                    "Action": list(READ_ACTIONS),
                    "Resource": resources,
                },
                {
                    "Sid": "DecideModelPackages",
                    "Effect": "Allow",
                    "Principal": principals(access.publishers),
                    "Action": list(PUBLISH_ACTIONS),
                    "Resource": resources,
                },
            ],
        }


def registry_environment(scope: Construct) -> str:
    """The environment whose account and region hold the registry: `pipeline.production` ("prod" by default)."""
    pipeline = _mapping(_mapping(scope.node.try_get_context(CONTEXT_KEY)).get("pipeline"))
    return str(pipeline.get("production", "prod"))


def registry_access(scope: Construct, environment: str) -> RegistryAccess | None:
    """The registry's access when `environment` is the production environment (`registry_environment`), else
    None: one group per project, deployed with production's step roles (stacks/step_access_stack.py).

    Read from the app's context, which the app validated before building any stage. An account left unset in
    the config is the deploying credentials' (CDK_DEFAULT_ACCOUNT), as for the stages themselves; `scope`'s stack
    is in production's account."""
    if environment != registry_environment(scope):
        return None
    context = _mapping(scope.node.try_get_context(CONTEXT_KEY))
    pipeline = _mapping(context.get("pipeline"))
    configured = _configured_account(context, environment)
    own = configured or Stack.of(scope).account
    default = own if configured is None else os.environ.get("CDK_DEFAULT_ACCOUNT")
    staging = _configured_account(context, pipeline.get("staging", "staging")) or default or own
    pipeline_account = pipeline.get("account") or default or own
    readers = tuple(dict.fromkeys([str(staging), own, str(pipeline_account)]))
    return RegistryAccess(readers=readers, publishers=(str(pipeline_account),))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _configured_account(context: Mapping[str, Any], environment: str) -> str | None:
    raw = _mapping(_mapping(context.get("environments")).get(environment))
    account = raw.get("account", _mapping(context.get("defaults")).get("account"))
    return str(account) if account else None


CODEPIPELINE_ACTION_STATE_CHANGE = "CodePipeline Action Execution State Change"


class RegistryTrigger(Construct):
    """The registry and the pipeline's model approval, kept in step (lambda_src/retraining_trigger/registry.py):
    a package approved or rejected in the registry answers the run waiting for it, or (approved, no run in
    progress) starts the pipeline, through every gate; the model approval rejected in CodePipeline rejects the
    run's package. Runs in the pipeline account and sees the registry's events on its default bus (same
    account; from another account, forward them there). Exposes `function` and `rules`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        pipeline_name: str,
        stage: str,
        approval_action: str,
        register_action: str,
        registry_account: str,
        registry_region: str,
        placement: FunctionPlacement,
        powertools: lambda_.ILayerVersion,
        decision_locks: DecisionLockTable,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.function = PlatformFunction(
            self,
            "Function",
            function_name=f"{pipeline_name}-registry-trigger",
            code=lambda_.Code.from_asset("lambda_src/retraining_trigger"),
            handler="retraining_trigger.registry.handler",
            environment={
                "PIPELINE_NAME": pipeline_name,
                "APPROVAL_STAGE": stage,
                "APPROVAL_ACTION": approval_action,
                "REGISTER_ACTION": register_action,
                "REGISTRY_REGION": registry_region,
                "POWERTOOLS_SERVICE_NAME": "registry-trigger",
            },
            placement=placement,
            layers=[powertools],
        )
        # One decision at a time (two events must not both start a run) under a lease lock, not a concurrency
        # reservation (issue 13 item 9); a busy invocation raises for Lambda's asynchronous retry.
        decision_locks.attach(self.function, retried_when_busy=True)
        pipeline_arn = f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:{pipeline_name}"
        _, self.versions_arn = group_arns(
            partition=stack.partition, region=registry_region, account=registry_account, project=project
        )
        self.function.policy.add_statements(
            iam.PolicyStatement(
                actions=[
                    "codepipeline:GetPipelineState",
                    "codepipeline:ListActionExecutions",
                    "codepipeline:ListPipelineExecutions",
                    "codepipeline:StartPipelineExecution",
                ],
                resources=[pipeline_arn],
            ),
            iam.PolicyStatement(
                actions=["codepipeline:PutApprovalResult"], resources=[f"{pipeline_arn}/{stage}/{approval_action}"]
            ),
            iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=[self.versions_arn]),
            # It only ever rejects (a rejection in CodePipeline); approvals come from the pipeline's own step.
            iam.PolicyStatement(
                actions=["sagemaker:UpdateModelPackage"],
                resources=[self.versions_arn],
                conditions={"StringEquals": {"sagemaker:ModelApprovalStatus": "Rejected"}},
            ),
        )
        acknowledge(
            self.function.policy,
            [wildcard_finding(stack, self.versions_arn)],
            "A model package's ARN ends in its version number, assigned at registration: the wildcard covers the "
            "versions of this project's group only.",
        )
        target = targets.LambdaFunction(
            self.function.function, retry_attempts=2, dead_letter_queue=self.function.dead_letter_queue
        )
        patterns = {
            "ModelPackageDecided": events.EventPattern(
                source=[SAGEMAKER_SOURCE],
                detail_type=[MODEL_PACKAGE_STATE_CHANGE],
                detail=state_change_pattern(project, ["Approved", "Rejected"])["detail"],
            ),
            "ModelApprovalRejected": events.EventPattern(
                source=["aws.codepipeline"],
                detail_type=[CODEPIPELINE_ACTION_STATE_CHANGE],
                detail={
                    "pipeline": [pipeline_name],
                    "stage": [stage],
                    "action": [approval_action],
                    "state": ["FAILED"],
                },
            ),
        }
        self.rules = [
            events.Rule(self, name, description=f"{name} → {pipeline_name} model approval", event_pattern=pattern)
            for name, pattern in patterns.items()
        ]
        for rule in self.rules:
            rule.add_target(target)
