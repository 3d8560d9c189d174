"""KMS-encrypted CloudWatch log groups with a retention given in days."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def encrypted_log_group(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    retention_days: int,
    removal_policy: RemovalPolicy,
    log_group_name: str | None = None,
) -> logs.LogGroup:
    """Create a log group encrypted with `key`, kept for `retention_days` (validated by the config)."""
    group = logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group_name,
        encryption_key=key,
        removal_policy=removal_policy,
    )
    # RetentionDays is an enum of names; the config speaks in days, which the L1 takes directly.
    cfn = group.node.default_child
    assert isinstance(cfn, logs.CfnLogGroup)
    cfn.retention_in_days = retention_days
    return group


@dataclass(frozen=True)
class LogPolicy:
    """How a stack keeps its logs: the key that encrypts them, how long, and what happens on stack deletion."""

    key: kms.IKey
    retention_days: int
    removal_policy: RemovalPolicy

    def group(self, scope: Construct, construct_id: str, log_group_name: str | None = None) -> logs.LogGroup:
        return encrypted_log_group(
            scope,
            construct_id,
            key=self.key,
            retention_days=self.retention_days,
            removal_policy=self.removal_policy,
            log_group_name=log_group_name,
        )
