"""A VPC whose inference subnets have no route to the internet unless NAT is configured."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from ml_constructs.encrypted_logs import LogPolicy, encrypted_log_group
from ml_constructs.gateway_prefix_lists import GatewayPrefixLists
from platform_config import NetworkSettings

# Gateway endpoints: their traffic goes to the service's public prefix list, not to an address in the VPC.
GATEWAY_ENDPOINTS = {
    "S3": ec2.GatewayVpcEndpointAwsService.S3,
    "DynamoDb": ec2.GatewayVpcEndpointAwsService.DYNAMODB,
}

# Interfaces that SageMaker hosting, the container's logs/metrics and the platform's Lambdas call.
INTERFACE_ENDPOINTS = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    # For the platform's Lambdas in the same subnets (release history, rollback, drift).
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,
    "Events": ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,
}


class PrivateNetwork(Construct):
    """VPC, S3 gateway and interface endpoints, HTTPS-only security group and encrypted flow logs.

    Exposes `vpc`, `inference_subnets` and `endpoint_security_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: NetworkSettings,
        logs_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        with_nat = settings.nat_gateways > 0
        subnets = [
            ec2.SubnetConfiguration(
                name="inference",
                subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS if with_nat else ec2.SubnetType.PRIVATE_ISOLATED,
                cidr_mask=22,
            )
        ]
        if with_nat:
            subnets.insert(
                0,
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=26,
                    map_public_ip_on_launch=False,
                ),
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.cidr),
            availability_zones=list(settings.availability_zones),
            nat_gateways=settings.nat_gateways,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
        )
        self.inference_subnets = ec2.SubnetSelection(subnet_group_name="inference")

        flow_log_group = encrypted_log_group(
            self,
            "FlowLogs",
            key=logs_key,
            retention_days=settings.flow_log_retention_days,
            removal_policy=removal_policy,
        )
        # A customer-managed policy instead of the L2's inline default policy (IAMNoInlinePolicy);
        # the immutable role view stops the L2 from adding that inline policy anyway.
        flow_log_role = iam.Role(self, "FlowLogRole", assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"))
        flow_log_role.add_managed_policy(
            iam.ManagedPolicy(
                self,
                "FlowLogDelivery",
                statements=[
                    iam.PolicyStatement(
                        actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        resources=[flow_log_group.log_group_arn],
                    ),
                ],
            )
        )
        self.vpc.add_flow_log(
            "AllTraffic",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                flow_log_group, flow_log_role.without_policy_updates()
            ),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "HttpsFromVpc",
            vpc=self.vpc,
            description="HTTPS from inside the VPC only",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(settings.cidr), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        self.endpoint_security_group.add_egress_rule(
            ec2.Peer.ipv4(settings.cidr), ec2.Port.tcp(443), "HTTPS to the interface endpoints"
        )
        for name, gateway_service in GATEWAY_ENDPOINTS.items():
            self.vpc.add_gateway_endpoint(name, service=gateway_service, subnets=[self.inference_subnets])
        # VPC User Guide, "Gateway endpoints" / "Control access using security groups": traffic through a
        # gateway endpoint goes to the service's prefix list, so a group limited to the VPC CIDR blocks it
        # (SageMaker could not pull its model or its ECR layers, which ECR serves from S3).
        self.gateway_prefix_lists = GatewayPrefixLists(
            self,
            "GatewayPrefixLists",
            services=list(GATEWAY_ENDPOINTS.values()),
            logs=LogPolicy(logs_key, settings.flow_log_retention_days, removal_policy),
        )
        for short_name, prefix_list_id in self.gateway_prefix_lists.ids.items():
            self.endpoint_security_group.add_egress_rule(
                ec2.Peer.prefix_list(prefix_list_id), ec2.Port.tcp(443), f"HTTPS to {short_name} (gateway endpoint)"
            )
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.inference_subnets,
                security_groups=[self.endpoint_security_group],
                private_dns_enabled=True,
                open=False,  # the shared group already admits HTTPS from the VPC CIDR
            )
