"""A VPC whose inference subnets have no route to the internet unless NAT is configured."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from ml_constructs.encrypted_logs import LogPolicy, encrypted_log_group
from ml_constructs.gateway_prefix_lists import GatewayPrefixLists
from platform_config import EnvironmentSettings, NetworkSettings

# Gateway endpoints: their traffic goes to the service's public prefix list, not to an address in the VPC.
GATEWAY_ENDPOINTS = {
    "S3": ec2.GatewayVpcEndpointAwsService.S3,
    "DynamoDb": ec2.GatewayVpcEndpointAwsService.DYNAMODB,
}

# Every interface endpoint the platform knows, by construct id (kept: a changed id would replace the endpoint).
# An environment creates only those its compute calls (COMPUTE_CALLS, compute_kinds); each bills per AZ-hour.
INTERFACE_ENDPOINTS = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,
    "Events": ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,
}
# `com.amazonaws.<region>.<short name>` -> construct id.
ENDPOINT_IDS = {service.short_name: construct_id for construct_id, service in INTERFACE_ENDPOINTS.items()}

# Where the SageMaker rows' "logs and metrics through the VPC" comes from: with a VpcConfig, SageMaker's own
# processes on the instance download S3 data and send the logs and metrics to CloudWatch through that VPC
# (AWS re:Post Knowledge Center, "How does my SageMaker container access Amazon S3 data and push logs to
# CloudWatch when I turn on network isolation?", https://repost.aws/knowledge-center/sagemaker-access-network-isolation).
_SAGEMAKER_LOGS = "https://repost.aws/knowledge-center/sagemaker-access-network-isolation"
# The image: ECR's API and registry endpoints, its layers from S3 through the gateway endpoint (ECR User Guide,
# "Amazon ECR interface VPC endpoints (AWS PrivateLink)").
_ECR = "https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html"
# A VPC function's own calls to AWS go through its ENIs in the VPC; its logs and DLQ delivery are Lambda's, outside
# (Lambda Developer Guide, "Giving Lambda functions access to resources in an Amazon VPC"). Active tracing: the
# function sends its trace data to X-Ray (Lambda Developer Guide, "Using AWS Lambda with AWS X-Ray").
_LAMBDA_VPC = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html"
_LAMBDA_XRAY = "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html"
SAGEMAKER_JOB = ("ecr.api", "ecr.dkr", "logs", "monitoring")


@dataclass(frozen=True)
class ComputeCalls:
    """The interface endpoint services one kind of compute calls from inside the VPC (S3 and DynamoDB go through
    the gateway endpoints every environment has), and the AWS pages (and handler code) that say so."""

    services: tuple[str, ...]
    sources: tuple[str, ...]


# Compute kind -> what it calls from inside the VPC. tests/infra/reachability.py proves it from the synthesized
# roles and security groups (every call reachable) and tests/infra/test_endpoint_selection.py that it is minimal.
COMPUTE_CALLS: dict[str, ComputeCalls] = {
    # The model's container in the VPC (always: serverless, which has no VpcConfig, is refused by the settings).
    "sagemaker-hosting": ComputeCalls(
        SAGEMAKER_JOB,
        ("https://docs.aws.amazon.com/sagemaker/latest/dg/host-vpc.html", _ECR, _SAGEMAKER_LOGS),
    ),
    # batch.enabled: transform jobs run the same model, with its VpcConfig.
    "batch-transform": ComputeCalls(
        SAGEMAKER_JOB,
        ("https://docs.aws.amazon.com/sagemaker/latest/dg/batch-vpc.html", _ECR, _SAGEMAKER_LOGS),
    ),
    # monitoring.engine model_monitor: the baseline and scheduled processing jobs (Model Monitor's analyzer image).
    "model-monitor-jobs": ComputeCalls(
        SAGEMAKER_JOB,
        ("https://docs.aws.amazon.com/sagemaker/latest/dg/process-vpc.html", _ECR, _SAGEMAKER_LOGS),
    ),
    # pipeline.training.runner sagemaker, in the pipeline's production: training jobs in the inference subnets.
    "training-jobs": ComputeCalls(
        SAGEMAKER_JOB,
        ("https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html", _ECR, _SAGEMAKER_LOGS),
    ),
    # Release recorder and controller (always): DescribeEndpoint/UpdateEndpoint, Publish, alarm state and metrics
    # (lambda_src/releases/release_history/runtime.py clients), with active tracing.
    "release-functions": ComputeCalls(
        ("sagemaker.api", "sns", "monitoring", "xray"),
        (_LAMBDA_VPC, _LAMBDA_XRAY),
    ),
    # monitoring.engine builtin, runner lambda: PutMetricData and PutEvents (lambda_src/drift_monitor/drift_engine/
    # handler.py clients; S3 and DynamoDB through the gateways), with active tracing.
    "drift-function": ComputeCalls(("events", "monitoring", "xray"), (_LAMBDA_VPC, _LAMBDA_XRAY)),
    # monitoring.engine builtin, runner fargate: the same job's calls, and the task pulls its image and sends awslogs
    # through its ENI (ECS Developer Guide, "Amazon ECS interface VPC endpoints (AWS PrivateLink)").
    "drift-task": ComputeCalls(
        ("events", "monitoring", "ecr.api", "ecr.dkr", "logs"),
        ("https://docs.aws.amazon.com/AmazonECS/latest/developerguide/vpc-endpoints.html", _ECR),
    ),
}


def compute_kinds(settings: EnvironmentSettings, *, training_jobs: bool) -> tuple[str, ...]:
    """The kinds of compute the environment's settings put in its VPC (the inference stack builds them)."""
    kinds = ["sagemaker-hosting", "release-functions"]
    if settings.batch.enabled:
        kinds.append("batch-transform")
    if settings.monitoring.engine == "model_monitor":
        kinds.append("model-monitor-jobs")
    else:
        kinds.append("drift-task" if settings.monitoring.runner == "fargate" else "drift-function")
    if training_jobs:
        kinds.append("training-jobs")
    return tuple(kinds)


def interface_services(kinds: Iterable[str]) -> tuple[str, ...]:
    """The interface endpoint services the compute `kinds` call, sorted."""
    return tuple(sorted({service for kind in kinds for service in COMPUTE_CALLS[kind].services}))


class PrivateNetwork(Construct):
    """VPC, S3 and DynamoDB gateway endpoints, the interface endpoints in `interface_endpoints` (short service
    names, e.g. `interface_services(compute_kinds(settings, ...))`), HTTPS-only security group, encrypted flow logs.

    Exposes `vpc`, `inference_subnets`, `endpoint_security_group` and `interface_endpoints`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: NetworkSettings,
        logs_key: kms.IKey,
        removal_policy: RemovalPolicy,
        interface_endpoints: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        unknown = sorted(set(interface_endpoints) - set(ENDPOINT_IDS))
        if unknown:
            raise ValueError(f"no interface endpoint known for {unknown}: add it to INTERFACE_ENDPOINTS")
        self.interface_endpoints = tuple(sorted(set(interface_endpoints)))
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
        for short_name in self.interface_endpoints:
            construct_id = ENDPOINT_IDS[short_name]
            self.vpc.add_interface_endpoint(
                construct_id,
                service=INTERFACE_ENDPOINTS[construct_id],
                subnets=self.inference_subnets,
                security_groups=[self.endpoint_security_group],
                private_dns_enabled=True,
                open=False,  # the shared group already admits HTTPS from the VPC CIDR
            )
