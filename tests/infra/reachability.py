"""Can every compute in the VPC reach the AWS services it calls? Endpoints, routes and security groups.

Rules followed (each from AWS's documentation):
- A VPC without a route to the internet reaches a service only through a VPC endpoint (VPC User Guide,
  "AWS PrivateLink" / "Gateway endpoints").
- Interface endpoints: an ENI in the compute's subnets whose security group admits HTTPS from the compute;
  the compute's group must let HTTPS out to it (VPC User Guide, "Control access to VPC endpoints using
  security groups").
- Gateway endpoints (S3, DynamoDB): a route in the compute's subnets' route tables, and the compute's group
  must let HTTPS out to the service's prefix list, not to the VPC CIDR (VPC User Guide, "Gateway endpoints").
- SageMaker hosting in a VPC downloads the model from S3 and pulls the image from ECR through the VPC; ECR
  serves layers from S3 (SageMaker Developer Guide, "Give SageMaker AI hosted endpoints access to resources
  in your Amazon VPC"; ECR User Guide, "Amazon ECR interface VPC endpoints").
- SageMaker processing jobs (Model Monitor's schedules) in a VPC: SageMaker pulls the container from ECR, and with
  a VpcConfig its own processes on the instance move S3 data and send logs and metrics through that VPC, network
  isolation or not (SageMaker Developer Guide, "Give SageMaker AI Processing Jobs Access to Resources in Your
  Amazon VPC"; AWS re:Post Knowledge Center, "How does my SageMaker container access Amazon S3 data and push logs
  to CloudWatch when I turn on network isolation?"). The same holds for the hosted model above.
- Fargate tasks pull their image (ECR API, Docker registry, S3) and send awslogs through the task's ENI
  (ECS Developer Guide, "Amazon ECS interface VPC endpoints").
- Lambda writes its logs, manages its ENIs and delivers to its dead-letter queue itself, outside the VPC;
  calls the function code makes go through the VPC (Lambda Developer Guide, "Giving Lambda functions access
  to resources in an Amazon VPC").
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from tests.infra.app_model import Ref, StageModel, as_list

# IAM service prefix (or prefix:action) -> the VPC endpoint services it is called through.
ENDPOINT_SERVICES = {
    "s3": ("s3",),
    "dynamodb": ("dynamodb",),
    "sagemaker": ("sagemaker.api",),
    "sagemaker:InvokeEndpoint": ("sagemaker.runtime",),
    "sns": ("sns",),
    "cloudwatch": ("monitoring",),
    "logs": ("logs",),
    "events": ("events",),
    "xray": ("xray",),
    "sts": ("sts",),
    "ecr": ("ecr.api", "ecr.dkr"),
}
# Called by the service on the compute's behalf (KMS through S3/DynamoDB/SNS/SQS, ENIs by the service).
NOT_CALLED_FROM_THE_VPC = {"kms", "ec2", "iam"}
TRAINING_ARGUMENTS = "/training/job-arguments"  # training_runner.job_arguments_parameter
LAMBDA_ITSELF = {"logs", "sqs"}  # logs and the DLQ: the Lambda service, not the function code
HTTPS = 443


@dataclass(frozen=True)
class Compute:
    kind: str
    where: Ref
    subnets: tuple[Ref, ...]
    security_groups: tuple[Ref, ...]
    roles: tuple[Ref, ...]
    implicit: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()


def computes(stage: StageModel) -> list[Compute]:
    found = []
    # (kind, resource type, subnets key, role key, implicit services, services the platform calls itself)
    vpc_resources = (
        (
            "SageMaker model",
            "AWS::SageMaker::Model",
            "Subnets",
            "ExecutionRoleArn",
            {"s3", "ecr", "logs", "cloudwatch"},
            set(),
        ),
        ("Lambda function", "AWS::Lambda::Function", "SubnetIds", "Role", set(), LAMBDA_ITSELF),
    )
    for kind, resource_type, subnets, role, implicit, excluded in vpc_resources:
        for ref, resource in stage.resources(resource_type):
            vpc = resource["Properties"].get("VpcConfig")
            if vpc:
                found.append(
                    Compute(
                        kind,
                        ref,
                        tuple(stage.targets(ref.stack, vpc[subnets])),
                        tuple(stage.targets(ref.stack, vpc["SecurityGroupIds"])),
                        tuple(stage.targets(ref.stack, resource["Properties"][role])),
                        implicit=frozenset(implicit),
                        excluded=frozenset(excluded),
                    )
                )
    # Model Monitor's scheduled processing jobs: the job definition holds the network and the role.
    for resource_type in ("AWS::SageMaker::DataQualityJobDefinition", "AWS::SageMaker::ModelQualityJobDefinition"):
        for ref, resource in stage.resources(resource_type):
            vpc = resource["Properties"].get("NetworkConfig", {}).get("VpcConfig")
            if vpc:
                found.append(
                    Compute(
                        "SageMaker monitoring job",
                        ref,
                        tuple(stage.targets(ref.stack, vpc["Subnets"])),
                        tuple(stage.targets(ref.stack, vpc["SecurityGroupIds"])),
                        tuple(stage.targets(ref.stack, resource["Properties"]["RoleArn"])),
                        implicit=frozenset({"s3", "ecr", "logs", "cloudwatch"}),
                    )
                )
    # `training.runner: sagemaker`: scripts/training_job.py starts the jobs with the role, subnets and security
    # group its SSM parameter names (ml_constructs/training_runner.py job_arguments).
    for ref, parameter in stage.resources("AWS::SSM::Parameter"):
        if not str(parameter["Properties"].get("Name", "")).endswith(TRAINING_ARGUMENTS):
            continue
        named = stage.targets(ref.stack, parameter["Properties"]["Value"])
        of_type = {kind: tuple(r for r in named if stage.resource(r)["Type"] == kind)
                   for kind in ("AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::IAM::Role")}  # fmt: skip
        found.append(
            Compute(
                "SageMaker training job",
                ref,
                of_type["AWS::EC2::Subnet"],
                of_type["AWS::EC2::SecurityGroup"],
                of_type["AWS::IAM::Role"],
                implicit=frozenset({"s3", "ecr", "logs", "cloudwatch"}),
            )
        )
    for ref, rule in stage.resources("AWS::Events::Rule"):
        for target in rule["Properties"].get("Targets", []):
            ecs = target.get("EcsParameters")
            if not ecs:
                continue
            network = ecs["NetworkConfiguration"]["AwsVpcConfiguration"]
            definition = stage.resource(stage.target(ref.stack, ecs["TaskDefinitionArn"]))
            roles = stage.targets(ref.stack, definition["Properties"]["TaskRoleArn"])
            roles += stage.targets(ref.stack, definition["Properties"]["ExecutionRoleArn"])
            found.append(
                Compute(
                    "ECS task",
                    ref,
                    tuple(stage.targets(ref.stack, network["Subnets"])),
                    tuple(stage.targets(ref.stack, network["SecurityGroups"])),
                    tuple(roles),
                    implicit=frozenset({"s3", "ecr", "logs"}),
                )
            )
    return found


def services_called(stage: StageModel, compute: Compute) -> set[str]:
    """The endpoint services the compute needs: its roles' actions and what its kind always calls."""
    needed: set[str] = set()
    keys = set(compute.implicit)
    for role in compute.roles:
        for statement in stage.statements_of_role(role):
            if statement.get("Effect") != "Allow":
                continue
            for action in as_list(statement.get("Action", [])):
                prefix = action.split(":")[0]
                keys.add(action if action in ENDPOINT_SERVICES else prefix)
    for key in keys:
        prefix = key.split(":")[0]
        if prefix in NOT_CALLED_FROM_THE_VPC or key in compute.excluded:
            continue
        if key not in ENDPOINT_SERVICES:
            raise KeyError(f"{compute.kind} {compute.where} calls {key}: add it to ENDPOINT_SERVICES")
        needed.update(ENDPOINT_SERVICES[key])
    return needed


def service_name(stage: StageModel, stack: str, value: Any) -> str:
    """`com.amazonaws.<region>.sagemaker.api` as CDK writes it, reduced to `sagemaker.api`."""
    value = stage.literal(stack, value)
    if isinstance(value, dict) and "Fn::Join" in value:
        value = "".join(part if isinstance(part, str) else "{}" for part in value["Fn::Join"][1])
    return str(value).split("{}.", 1)[-1] if "{}" in str(value) else str(value).split(".", 3)[-1]


def egress_rules(stage: StageModel, group: Ref) -> list[dict[str, Any]]:
    rules = list(stage.resource(group)["Properties"].get("SecurityGroupEgress", []))
    for ref, rule in stage.resources("AWS::EC2::SecurityGroupEgress"):
        if stage.target(ref.stack, rule["Properties"]["GroupId"]) == group:
            rules.append({**rule["Properties"], "_stack": ref.stack})
    return rules


def ingress_rules(stage: StageModel, group: Ref) -> list[dict[str, Any]]:
    rules = list(stage.resource(group)["Properties"].get("SecurityGroupIngress", []))
    for ref, rule in stage.resources("AWS::EC2::SecurityGroupIngress"):
        if stage.target(ref.stack, rule["Properties"]["GroupId"]) == group:
            rules.append({**rule["Properties"], "_stack": ref.stack})
    return rules


def admits_https(rule: dict[str, Any]) -> bool:
    protocol = str(rule.get("IpProtocol"))
    if protocol == "-1":
        return True
    return protocol == "tcp" and int(rule.get("FromPort", 0)) <= HTTPS <= int(rule.get("ToPort", 0))


def cidr_of(stage: StageModel, subnet: Ref) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(stage.resource(subnet)["Properties"]["CidrBlock"])


def prefix_list_service(stage: StageModel, stack: str, value: Any) -> str | None:
    """The service whose prefix list a DestinationPrefixListId names (our deploy-time lookup)."""
    lookup = stage.target(stack, value)
    if lookup is None:
        return None
    create = stage.resource(lookup)["Properties"].get("Create")
    if not isinstance(create, str):
        return None
    call = json.loads(create)
    [name_filter] = [f for f in call["parameters"]["Filters"] if f["Name"] == "prefix-list-name"]
    return str(name_filter["Values"][0]).rsplit(".", 1)[-1]


def covers(cidr: str, subnets: list[ipaddress.IPv4Network]) -> bool:
    network = ipaddress.ip_network(cidr)
    return all(subnet.subnet_of(network) for subnet in subnets)  # type: ignore[arg-type]


def interface_endpoints(stage: StageModel) -> dict[str, Ref]:
    """The stage's interface endpoints by service (`sagemaker.api`)."""
    return {
        service_name(stage, ref.stack, endpoint["Properties"]["ServiceName"]): ref
        for ref, endpoint in stage.resources("AWS::EC2::VPCEndpoint")
        if endpoint["Properties"].get("VpcEndpointType") == "Interface"
    }


def without(stage: StageModel, refs: list[Ref]) -> StageModel:
    """A copy of `stage` without the resources `refs` (what the app would be had it not created them)."""
    templates = {stack: {**template, "Resources": dict(template.get("Resources", {}))}
                 for stack, template in stage.templates.items()}  # fmt: skip
    for ref in refs:
        del templates[ref.stack]["Resources"][ref.logical_id]
    return StageModel(stage.name, templates)


def unreachable(stage: StageModel) -> list[str]:
    """Every (compute, service) pair the network does not carry, with the reason."""
    endpoints = {}
    for ref, endpoint in stage.resources("AWS::EC2::VPCEndpoint"):
        endpoints[service_name(stage, ref.stack, endpoint["Properties"]["ServiceName"])] = (ref, endpoint)
    route_tables: dict[Ref, Ref] = {}
    for ref, association in stage.resources("AWS::EC2::SubnetRouteTableAssociation"):
        subnet = stage.target(ref.stack, association["Properties"]["SubnetId"])
        route_tables[subnet] = stage.target(ref.stack, association["Properties"]["RouteTableId"])
    problems = []
    for compute in computes(stage):
        label = f"{stage.name}: {compute.kind} {compute.where.logical_id}"
        egress = [(group, rule) for group in compute.security_groups for rule in egress_rules(stage, group)]
        for service in sorted(services_called(stage, compute)):
            if service not in endpoints:
                problems.append(f"{label} calls {service}, which has no VPC endpoint")
                continue
            ref, endpoint = endpoints[service]
            props = endpoint["Properties"]
            if props.get("VpcEndpointType") == "Gateway":
                tables = set(stage.targets(ref.stack, props.get("RouteTableIds", [])))
                missing = [s.logical_id for s in compute.subnets if route_tables.get(s) not in tables]
                if missing:
                    problems.append(f"{label}: no route to the {service} gateway endpoint from {missing}")
                allowed = any(
                    admits_https(rule)
                    and prefix_list_service(stage, rule.get("_stack", group.stack), rule.get("DestinationPrefixListId"))
                    == service
                    for group, rule in egress
                )
                if not allowed:
                    problems.append(f"{label}: its security groups do not let HTTPS out to the {service} prefix list")
                continue
            endpoint_subnets = set(stage.targets(ref.stack, props.get("SubnetIds", [])))
            if not set(compute.subnets) <= endpoint_subnets:
                problems.append(f"{label}: the {service} endpoint has no interface in all of its subnets")
            subnet_cidrs = [cidr_of(stage, s) for s in compute.subnets]

            endpoint_groups = stage.targets(ref.stack, props.get("SecurityGroupIds", []))
            out_ok = any(
                admits_https(rule)
                and (
                    ("CidrIp" in rule and covers(rule["CidrIp"], subnet_cidrs))
                    or stage.target(rule.get("_stack", group.stack), rule.get("DestinationSecurityGroupId"))
                    in endpoint_groups
                )
                for group, rule in egress
            )
            in_ok = any(
                admits_https(rule)
                and (
                    ("CidrIp" in rule and covers(rule["CidrIp"], subnet_cidrs))
                    or stage.target(rule.get("_stack", group.stack), rule.get("SourceSecurityGroupId"))
                    in compute.security_groups
                )
                for group in endpoint_groups
                for rule in ingress_rules(stage, group)
            )
            if not out_ok:
                problems.append(f"{label}: its security groups do not let HTTPS out to the {service} endpoint")
            if not in_ok:
                problems.append(f"{label}: the {service} endpoint's security groups do not admit HTTPS from it")
    return problems
