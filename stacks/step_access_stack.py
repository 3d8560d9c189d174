"""The environments' pipeline-step roles, deployed by the pipeline before any step that uses them; and, with
production's, the model registry the Checks wave registers each build in (issue 13 item 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Environment, Stack, Stage, Token
from constructs import Construct

from ml_constructs.model_registry import ModelRegistry, registry_access
from ml_constructs.nag import acknowledge, record_acknowledgements_in_templates, wildcard_finding
from ml_constructs.step_access import EnvironmentAccess, EnvironmentStepRoles
from ml_constructs.training_runner import caller_statements, caller_wildcards, pipeline_training

SYNTH_STEP = "Synth"  # ml_constructs/delivery_pipeline.py: the step that trains a retraining run


class StepAccessStack(Stack):
    """One environment's pipeline-step roles (`<prefix>-steps-<step>`), in that environment's account and region;
    in production's (ml_constructs/model_registry.py `registry_access`), also the project's model registry
    (`model_registry`, else None): its group and metrics bucket must exist before the Checks wave registers the
    build, long before production's data stack deploys. The registry's resources are retained and that stack
    termination-protected, as production's data stack is."""

    def __init__(
        self, scope: Construct, construct_id: str, *, access: EnvironmentAccess, project: str, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.step_roles = EnvironmentStepRoles(self, "PipelineSteps", access=access)
        registry = registry_access(self, access.name)
        self.model_registry = (
            ModelRegistry(self, "ModelRegistry", project=project, prefix=access.prefix, access=registry)
            if registry
            else None
        )
        if self.model_registry is not None:
            self.termination_protection = True
        self._grant_training_jobs(access)
        for grant in access.grants:
            policy = self.step_roles.policies[grant.step_id]
            acknowledge(
                policy,
                [wildcard_finding(self, resource) for resource in grant.wildcards],
                "Each wildcard ends a prefix of this environment's own resources: objects under a bucket's "
                "baselines/ or model-registry/ folder, the data key addressed by alias (kms:ResourceAliases) because "
                "its id lives in another stack, ids CloudFormation and Application Auto Scaling generate, alarms and "
                "endpoint configs named after the endpoint, the inference stack's generated role names.",
            )
            if any("*" in s.resources for s in grant.statements):
                acknowledge(
                    policy,
                    ["AwsSolutions-IAM5[Resource::*]"],
                    "application-autoscaling:DescribeScalableTargets supports no resource-level permissions (Service "
                    "Authorization Reference, Application Auto Scaling): the autoscaling guard's only read of it.",
                )

    def _grant_training_jobs(self, access: EnvironmentAccess) -> None:
        """With `training.runner: sagemaker`, production's Synth role also starts the retraining run's SageMaker
        training job (ml_constructs/training_runner.py `caller_statements`): a job runs in the caller's account."""
        training = pipeline_training(self, access.name)
        synth = next((g for g in access.grants if g.step_id == SYNTH_STEP), None)
        if training is None or synth is None:
            return
        where = {
            "prefix": access.prefix,
            "bucket_name": f"{access.prefix}-artifacts-{access.account}-{access.region}",  # DataStores' name
            "partition": access.partition,
            "region": access.region,
            "account": access.account,
        }
        statements = caller_statements(settings=training, **where)
        self.step_roles.policies[SYNTH_STEP].add_statements(*statements)
        synth.statements.extend(statements)
        synth.wildcards.extend(w for w in caller_wildcards(**where) if w not in synth.wildcards)


class StepAccessStage(Stage):
    """The step roles of every environment the pipeline deploys, one stack each (`stacks`); production's also
    holds the model registry (`registry_stack`)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, project: str, environments: Sequence[EnvironmentAccess]
    ) -> None:
        super().__init__(scope, construct_id)
        record_acknowledgements_in_templates(self)
        self.stacks = [
            StepAccessStack(
                self,
                access.name,
                stack_name=f"{access.prefix}-pipeline-steps",
                access=access,
                project=project,
                # An unset account stays the deploying credentials' (the pipeline's), as for the stages.
                env=Environment(
                    account=None if Token.is_unresolved(access.account) else access.account, region=access.region
                ),
                description=f"{project}: the delivery pipeline's access to {access.name}",
            )
            for access in environments
        ]
        [self.registry_stack] = [s for s in self.stacks if s.model_registry is not None]
