"""One deployment environment (dev, staging, prod) as a CDK Stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Environment, RemovalPolicy, Stage, Tags
from constructs import Construct

from ml_constructs.nag import record_acknowledgements_in_templates
from ml_constructs.prediction_api import CONTRACT_DIR
from platform_config import EnvironmentSettings
from stacks.account_stack import AccountStack
from stacks.data_stack import DataStack
from stacks.inference_stack import InferenceStack
from stacks.network_stack import NetworkStack


class PlatformStage(Stage):
    """All stacks of one environment, tagged with project and environment; exposes `settings`. Its API deploys the
    contract in `contract_dir` (the one generated from the model card, which app_builder checks)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        commit: str,
        contract_dir: Path = CONTRACT_DIR,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope, construct_id, env=Environment(account=settings.account, region=settings.region), **kwargs
        )
        record_acknowledgements_in_templates(self)
        self.settings = settings
        prefix = settings.resource_prefix()
        removal = RemovalPolicy.RETAIN if settings.data.removal_policy == "retain" else RemovalPolicy.DESTROY
        # One per account and region: the same name and template in every stage (not environment-tagged).
        self.account_stack = AccountStack(self, "Account", stack_name=f"{settings.project}-account")
        self.data = DataStack(
            self,
            "Data",
            stack_name=f"{prefix}-data",
            settings=settings,
            removal_policy=removal,
            termination_protection=settings.data.removal_policy == "retain",
        )
        self.network = NetworkStack(
            self,
            "Network",
            stack_name=f"{prefix}-network",
            settings=settings,
            logs_key=self.data.keys.logs_key,
            removal_policy=removal,
        )
        self.inference = InferenceStack(
            self,
            "Inference",
            stack_name=f"{prefix}-inference",
            settings=settings,
            network=self.network.network,
            data_key=self.data.keys.data_key,
            logs_key=self.data.keys.logs_key,
            capture_bucket=self.data.stores.capture_bucket,
            capture_bucket_name=self.data.stores.capture_bucket_name,
            release_table_name=self.data.release_table.table_name,
            artifacts_bucket_name=self.data.stores.artifacts_bucket_name,
            reports_bucket_name=self.data.stores.monitoring_bucket_name,
            removal_policy=removal,
            commit=commit,
            contract_dir=contract_dir,
        )
        # API Gateway refuses access logging until the account has its CloudWatch role.
        self.inference.add_stack_dependency(self.account_stack)
        Tags.of(self).add("project", settings.project)
        for stack in (self.data, self.network, self.inference):
            Tags.of(stack).add("environment", settings.name)
            for key, value in settings.tags.items():
                Tags.of(stack).add(key, value)
