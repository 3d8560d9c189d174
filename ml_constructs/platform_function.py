"""A Lambda function that every nag pack accepts: private, traced, with its own encrypted logs and a DLQ."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ml_constructs.encrypted_logs import encrypted_log_group
from ml_constructs.nag import acknowledge, wildcard_finding

RUNTIME = lambda_.Runtime.PYTHON_3_13


@dataclass(frozen=True)
class FunctionPlacement:
    """Where a stack's platform Lambdas run and how their logs, queues and data are protected."""

    vpc: ec2.IVpc | None
    subnets: ec2.SubnetSelection | None
    security_group: ec2.ISecurityGroup | None
    data_key: kms.IKey
    logs_key: kms.IKey
    log_retention_days: int
    removal_policy: RemovalPolicy


class PlatformFunction(Construct):
    """Lambda in the private subnets with X-Ray, JSON logs and a KMS-encrypted DLQ.

    `reserved_concurrency` defaults to None (draws from the unreserved pool): reserving even 1 fails stack
    creation in accounts whose concurrency quota is low, because Lambda keeps 100 units unreserved
    (issue 13 item 9). Use ml_constructs.decision_lock for "one decision at a time" instead.

    Its permissions live in one managed policy, `policy` (add scoped statements there), so nothing is
    granted implicitly. Exposes `function`, `policy`, `dead_letter_queue`, and the plain `function_name`,
    `timeout_seconds` and `retry_attempts` it was built with (a decision lock derives its lease from them).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_name: str,
        code: lambda_.Code,
        handler: str,
        runtime: lambda_.Runtime = RUNTIME,
        environment: Mapping[str, str],
        placement: FunctionPlacement,
        reserved_concurrency: int | None = None,
        timeout_seconds: int = 60,
        memory_size: int = 256,
        layers: Sequence[lambda_.ILayerVersion] = (),
        retry_attempts: int = 2,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function_name, self.timeout_seconds, self.retry_attempts = function_name, timeout_seconds, retry_attempts
        stack = Stack.of(self)
        data_key, logs_key, removal_policy = placement.data_key, placement.logs_key, placement.removal_policy
        log_group = encrypted_log_group(
            self,
            "Logs",
            key=logs_key,
            retention_days=placement.log_retention_days,
            removal_policy=removal_policy,
            log_group_name=f"/aws/lambda/{function_name}",
        )
        self.dead_letter_queue = terminal_dead_letter_queue(
            self, "DeadLetters", key=data_key, removal_policy=removal_policy
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {function_name}",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
                ),
                # ENIs for the VPC and X-Ray segments: neither API supports resource-level permissions.
                iam.PolicyStatement(
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                        "xray:PutTraceSegments",
                        "xray:PutTelemetryRecords",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.dead_letter_queue.queue_arn]),
                iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[data_key.key_arn]),
            ],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            runtime=runtime,
            architecture=lambda_.Architecture.X86_64,
            code=code,
            handler=handler,
            environment=dict(environment),
            environment_encryption=data_key,
            # An immutable view: the L2 must not add an inline policy; `policy` holds every permission.
            role=role.without_policy_updates(),
            vpc=placement.vpc,
            vpc_subnets=placement.subnets,
            security_groups=[placement.security_group] if placement.security_group else None,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            reserved_concurrent_executions=reserved_concurrency,
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_size,
            layers=list(layers) or None,
            dead_letter_queue=self.dead_letter_queue,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
            retry_attempts=retry_attempts,
        )
        self.function.node.add_dependency(self.policy)
        log_streams = (
            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/lambda/{function_name}:*"
        )
        acknowledge(
            self.policy,
            ("AwsSolutions-IAM5[Resource::*]", wildcard_finding(stack, log_streams)),
            "ENI management for VPC Lambdas and X-Ray PutTraceSegments support no resource scoping; log "
            "streams are created by Lambda under this function's own log group.",
        )
        if placement.vpc is None:
            acknowledge(
                self.function,
                ("HIPAA.Security-LambdaInsideVPC", "NIST.800.53.R5-LambdaInsideVPC", "PCI.DSS.321-LambdaInsideVPC"),
                "Runs in the tooling account, which has no VPC, and calls only public AWS APIs "
                "(CodePipeline, CloudFormation, S3, DynamoDB) over TLS with SigV4.",
            )
        if reserved_concurrency is None:
            acknowledge(
                self.function,
                ("HIPAA.Security-LambdaConcurrency", "NIST.800.53.R5-LambdaConcurrency"),
                "No reserved concurrency: reserving fails stack creation where the account's quota leaves fewer "
                "than 100 unreserved units (Lambda Developer Guide, 'Configuring reserved concurrency for a "
                "function'; new accounts have reduced quotas). Its invokers bound its concurrency (a pipeline job, "
                "EventBridge rules, a schedule); decisions that must not overlap hold a DynamoDB decision lock "
                "(ml_constructs/decision_lock.py) instead.",
            )
        acknowledge(
            self.function,
            ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"),
            "Pinned to Python 3.13 because the Powertools layer is published per Python minor version "
            "and the code is tested on it; raise together with powertools_layer_version.",
        )


def terminal_dead_letter_queue(
    scope: Construct, construct_id: str, *, key: kms.IKey, removal_policy: RemovalPolicy
) -> sqs.Queue:
    """An encrypted queue that keeps failed deliveries 14 days; it is the last stop, so it has no DLQ itself."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        removal_policy=removal_policy,
    )
    acknowledge(
        queue,
        ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"),
        "This queue is itself the terminal dead-letter queue of failed function invocations and EventBridge "
        "target deliveries.",
    )
    return queue
