"""The delivery pipeline, deployed once to the tooling account; it then deploys staging and prod itself."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from ml_constructs.delivery_pipeline import DeliveryPipeline
from platform_config import EnvironmentSettings, PipelineSettings
from stacks.platform_stage import PlatformStage


class PipelineStack(Stack):
    """Self-mutating pipeline whose stages are the same PlatformStage the app synthesizes directly."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: PipelineSettings,
        project: str,
        staging: EnvironmentSettings,
        production: EnvironmentSettings,
        commit: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.delivery = DeliveryPipeline(
            self,
            "Delivery",
            prefix=f"{project}-pipeline",
            project=project,
            settings=settings,
            staging=PlatformStage(self, staging.name, settings=staging, commit=commit),
            production=PlatformStage(self, production.name, settings=production, commit=commit),
            staging_prefix=staging.resource_prefix(),
            staging_bake_minutes=staging.deployment.bake_minutes,
            production_prefix=production.resource_prefix(),
            # The name DataStores gives it; prod defaults to the pipeline's own account.
            production_artifacts_bucket=artifacts_bucket(production, self.account),
            staging_artifacts_bucket=artifacts_bucket(staging, self.account),
            powertools_layer_arn=production.lambdas.powertools_layer_arn(settings.region),
            environment_accounts=[env.account for env in (staging, production) if env.account],
            # The model registry lives in production's StepAccess stack; prod defaults to the pipeline's own account.
            production_account=production.account or self.account,
            production_region=production.region,
        )


def artifacts_bucket(environment: EnvironmentSettings, pipeline_account: str) -> str:
    """The name DataStores gives an environment's artifacts bucket; its account defaults to the pipeline's."""
    return f"{environment.resource_prefix()}-artifacts-{environment.account or pipeline_account}-{environment.region}"
