"""DynamoDB table of releases: one item per release, plus freeze flag, rollback lock and alarm log."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from ml_constructs.nag import acknowledge

STATUS_INDEX = "status-index"


def release_history_table(
    scope: Construct, construct_id: str, *, table_name: str, key: kms.IKey, removal_policy: RemovalPolicy
) -> dynamodb.Table:
    """Layout as `lambda_src/releases/release_history/repository.py` expects it (pk/sk, status GSI, TTL)."""
    table = keyed_table(
        scope,
        construct_id,
        key=key,
        removal_policy=removal_policy,
        table_name=table_name,
        time_to_live_attribute="expires_at",
    )
    table.add_global_secondary_index(
        index_name=STATUS_INDEX,
        partition_key=dynamodb.Attribute(name="status_key", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="status_changed_at", type=dynamodb.AttributeType.STRING),
        projection_type=dynamodb.ProjectionType.ALL,
    )
    return table


def keyed_table(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    removal_policy: RemovalPolicy,
    table_name: str | None = None,
    time_to_live_attribute: str | None = None,
) -> dynamodb.Table:
    """An on-demand pk/sk table encrypted with `key`, with point-in-time recovery and, when kept, protection."""
    table = dynamodb.Table(
        scope,
        construct_id,
        table_name=table_name,
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=time_to_live_attribute,
        deletion_protection=removal_policy == RemovalPolicy.RETAIN,
        removal_policy=removal_policy,
    )
    acknowledge_pitr_backups(table)
    return table


def acknowledge_pitr_backups(table: dynamodb.Table) -> None:
    """Tables here back up continuously (PITR) instead of joining an AWS Backup plan."""
    acknowledge(
        table,
        (
            "HIPAA.Security-DynamoDBInBackupPlan",
            "NIST.800.53.R5-DynamoDBInBackupPlan",
        ),
        "Continuous backups via point-in-time recovery (35 days) and deletion protection outside dev; "
        "AWS Backup plans are managed at the organisation level, not per application.",
    )
