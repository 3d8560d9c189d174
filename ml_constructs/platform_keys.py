"""Customer-managed KMS keys: one for data at rest, one for logs, alarms and notifications."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class PlatformKeys(Construct):
    """Rotating KMS keys exposed as `data_key` (S3, DynamoDB, SageMaker volumes) and `logs_key`."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.data_key = kms.Key(
            self,
            "DataKey",
            alias=f"alias/{prefix}/data",
            description=f"{prefix}: model artifacts, data capture, reports, release history",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=removal_policy,
        )
        # EventBridge delivers undeliverable events to the Lambdas' KMS-encrypted dead-letter queues.
        self.data_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.logs_key = kms.Key(
            self,
            "LogsKey",
            alias=f"alias/{prefix}/logs",
            description=f"{prefix}: CloudWatch Logs, CloudTrail, alarm notifications",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=removal_policy,
        )
        # CloudWatch Logs encrypts with the key only for log groups of this account and region.
        self.logs_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
                        )
                    }
                },
            )
        )
        # CloudTrail User Guide, "Configure AWS KMS key policies for CloudTrail": three separate sections, each
        # held to this account's trails by aws:SourceArn (the guide recommends it over aws:SourceAccount).
        # DescribeKey carries no encryption context, so it must not share the encrypt statement's condition;
        # kms:Decrypt is needed because the trail bucket uses an S3 Bucket Key.
        trails = {
            "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudtrail:{stack.region}:{stack.account}:trail/*"}
        }
        cloudtrail = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        self.logs_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailEncryptsLogs",
                principals=[cloudtrail],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    **trails,
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": (
                            f"arn:{stack.partition}:cloudtrail:*:{stack.account}:trail/*"
                        )
                    },
                },
            )
        )
        self.logs_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDescribesKey",
                principals=[cloudtrail],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions=trails,
            )
        )
        self.logs_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDecryptsBucketKey",
                principals=[cloudtrail],
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions=trails,
            )
        )
        # EventBridge forwards drift events, CodeStar Notifications pipeline events, to the encrypted topics.
        self.logs_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[
                    iam.ServicePrincipal("events.amazonaws.com"),
                    iam.ServicePrincipal("codestar-notifications.amazonaws.com"),
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        # CloudWatch alarms publish to the KMS-encrypted SNS topic.
        self.logs_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
