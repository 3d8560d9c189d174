"""The KMS-encrypted SNS topic that an environment's CloudWatch alarms notify."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


def alarm_topic(
    scope: Construct, construct_id: str, *, prefix: str, key: kms.IKey, emails: tuple[str, ...]
) -> sns.Topic:
    """A TLS-only topic that alarms named `{prefix}-*` of this account and region may publish to.

    `enforce_ssl` writes an explicit topic policy, which replaces SNS's default one: without a statement for
    `cloudwatch.amazonaws.com`, alarm actions fail with "not authorized to perform SNS:Publish" (SNS Developer
    Guide, "Amazon SNS access control case examples"; CloudWatch User Guide, "Using Amazon CloudWatch alarms").
    The conditions hold the grant to this environment's alarms (confused-deputy prevention). The key's side,
    kms:GenerateDataKey*/kms:Decrypt for CloudWatch, is in PlatformKeys.
    """
    stack = Stack.of(scope)
    topic = sns.Topic(scope, construct_id, display_name=f"{prefix} alarms", master_key=key, enforce_ssl=True)
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarmsOfThisEnvironment",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {
                    "aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:{prefix}-*"
                },
            },
        )
    )
    for email in emails:
        topic.add_subscription(subscriptions.EmailSubscription(email))
    return topic
