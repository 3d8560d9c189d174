"""The AWS-managed prefix lists of gateway endpoint services, read at deploy time."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.nag import acknowledge

# CDK's singleton provider of AwsCustomResource, one per stack.
PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"


class GatewayPrefixLists(Construct):
    """Looks up `com.amazonaws.<region>.<service>` with ec2:DescribePrefixLists; exposes `ids` by service.

    The ids differ per region and no CloudFormation attribute returns them; a context lookup would need AWS
    credentials at synth. The EC2 API reference (DescribePrefixLists) says the id "is required for creating
    an outbound security group rule that allows traffic from a VPC to access an AWS service through a
    gateway VPC endpoint".
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        services: Sequence[ec2.GatewayVpcEndpointAwsService],
        logs: LogPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "LookupRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Reads the gateway services' prefix list ids at deploy time",
        )
        log_group = logs.group(self, "LookupLogs")
        policy = iam.ManagedPolicy(
            self,
            "LookupPolicy",
            roles=[role],
            statements=[
                # DescribePrefixLists supports no resource-level permissions.
                iam.PolicyStatement(actions=["ec2:DescribePrefixLists"], resources=["*"]),
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
                ),
            ],
        )
        self.ids: dict[str, str] = {}
        for service in services:
            short_name = service.name.rsplit(".", 1)[-1]
            call = cr.AwsSdkCall(
                service="EC2",
                action="describePrefixLists",
                parameters={
                    "Filters": [{"Name": "prefix-list-name", "Values": [f"com.amazonaws.{stack.region}.{short_name}"]}]
                },
                physical_resource_id=cr.PhysicalResourceId.of(f"prefix-list-{short_name}"),
                output_paths=["PrefixLists.0.PrefixListId"],
            )
            lookup = cr.AwsCustomResource(
                self,
                short_name.title(),
                on_create=call,
                on_update=call,
                role=role.without_policy_updates(),
                install_latest_aws_sdk=False,
                memory_size=256,
                log_group=log_group,
            )
            lookup.node.add_dependency(policy)
            self.ids[short_name] = lookup.get_response_field("PrefixLists.0.PrefixListId")
        acknowledge(
            policy,
            ("AwsSolutions-IAM5[Resource::*]",),
            "ec2:DescribePrefixLists (read-only) supports no resource-level permissions.",
        )
        provider = stack.node.find_child(PROVIDER_ID)
        acknowledge(
            provider,
            (
                "HIPAA.Security-LambdaConcurrency",
                "NIST.800.53.R5-LambdaConcurrency",
                "HIPAA.Security-LambdaDLQ",
                "NIST.800.53.R5-LambdaDLQ",
                "Serverless-LambdaDLQ",
                "HIPAA.Security-LambdaInsideVPC",
                "NIST.800.53.R5-LambdaInsideVPC",
                "PCI.DSS.321-LambdaInsideVPC",
                "Serverless-LambdaTracing",
            ),
            "CDK's AwsCustomResource provider, invoked by CloudFormation only during a deployment to make one "
            "read-only EC2 call: a failure fails the deployment visibly (no event to dead-letter), it runs "
            "outside the VPC because the VPC has no EC2 endpoint, and reserved concurrency would only take from "
            "the account's unreserved pool.",
        )
