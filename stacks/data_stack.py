"""Stateful resources of one environment: keys, buckets and the audit trail."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from constructs import Construct

from ml_constructs.audit_trail import AuditTrail
from ml_constructs.data_stores import DataStores
from ml_constructs.platform_keys import PlatformKeys
from ml_constructs.release_history_table import release_history_table
from platform_config import EnvironmentSettings


class DataStack(Stack):
    """Keys, buckets and trail; retained in prod, destroyable where the config says so."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        removal_policy: RemovalPolicy,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.keys = PlatformKeys(self, "Keys", prefix=settings.resource_prefix(), removal_policy=removal_policy)
        self.stores = DataStores(
            self,
            "Stores",
            prefix=settings.resource_prefix(),
            settings=settings.data,
            key=self.keys.data_key,
            removal_policy=removal_policy,
        )
        self.release_table = release_history_table(
            self,
            "ReleaseHistory",
            table_name=f"{settings.resource_prefix()}-releases",
            key=self.keys.data_key,
            removal_policy=removal_policy,
        )
        # Not the model registry: the pipeline registers a build before it deploys this stack, so the registry
        # is deployed with production's step roles (stacks/step_access_stack.py, issue 13 item 1).
        if not settings.data.organization_trail_exists:
            AuditTrail(
                self,
                "Audit",
                key=self.keys.logs_key,
                access_logs=self.stores.access_logs_bucket,
                retention_days=settings.data.log_retention_days,
                removal_policy=removal_policy,
            )
