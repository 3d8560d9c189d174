"""Inference subnets have no route to the internet; endpoints, security group and flow logs as configured."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from ml_constructs.private_network import compute_kinds, interface_services
from platform_config import load_environments

ENVS = ("dev", "staging", "prod")


@pytest.mark.parametrize("env", ENVS)
def test_no_internet_route_from_any_subnet(synthesized, env: str) -> None:
    assert not synthesized.resources(env, "network", "AWS::EC2::InternetGateway")
    assert not synthesized.resources(env, "network", "AWS::EC2::NatGateway")
    for route in synthesized.resources(env, "network", "AWS::EC2::Route").values():
        props = route["Properties"]
        assert "GatewayId" not in props and "NatGatewayId" not in props, route
    for subnet in synthesized.resources(env, "network", "AWS::EC2::Subnet").values():
        assert subnet["Properties"].get("MapPublicIpOnLaunch") is not True


@pytest.mark.parametrize("env", ENVS)
def test_subnets_span_the_configured_azs(synthesized, cdk_context, env: str) -> None:
    zones = cdk_context["ml-platform"]["environments"][env]["network"]["availability_zones"]
    subnets = synthesized.resources(env, "network", "AWS::EC2::Subnet").values()
    assert sorted(s["Properties"]["AvailabilityZone"] for s in subnets) == sorted(zones)


@pytest.mark.parametrize("env", ENVS)
def test_vpc_endpoints_for_sagemaker_hosting(synthesized, cdk_context, env: str) -> None:
    # Each environment creates only the interface endpoints its compute calls (private_network.py COMPUTE_CALLS,
    # compute_kinds); the shipped pipeline retrains in CodeBuild, so no training jobs are in any VPC.
    [settings] = [s for s in load_environments(cdk_context["ml-platform"]) if s.name == env]
    kinds = compute_kinds(settings, training_jobs=False)
    expected = {f"com.amazonaws.eu-west-1.{s}" for s in interface_services(kinds)}
    # Every environment hosts the model: its image from ECR, its logs and metrics to CloudWatch (host-vpc).
    assert {f"com.amazonaws.eu-west-1.{s}" for s in ("ecr.api", "ecr.dkr", "logs", "monitoring")} <= expected
    endpoints = synthesized.resources(env, "network", "AWS::EC2::VPCEndpoint").values()
    gateway = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
    assert len(gateway) == 2  # S3 and DynamoDB
    interfaces = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
    assert {e["Properties"]["ServiceName"] for e in interfaces} == expected
    assert len(interfaces) == len(expected)
    assert all(e["Properties"]["PrivateDnsEnabled"] for e in interfaces)


@pytest.mark.parametrize("env", ENVS)
def test_security_group_admits_only_https_from_the_vpc(synthesized, cdk_context, env: str) -> None:
    cidr = cdk_context["ml-platform"]["environments"][env]["network"]["cidr"]
    groups = synthesized.resources(env, "network", "AWS::EC2::SecurityGroup").values()
    [group] = [g for g in groups if "HTTPS from inside the VPC" in g["Properties"]["GroupDescription"]]
    assert group["Properties"]["SecurityGroupIngress"] == [
        {"CidrIp": cidr, "Description": "HTTPS from the VPC", "FromPort": 443, "IpProtocol": "tcp", "ToPort": 443}
    ]
    assert all(rule["FromPort"] == 443 for rule in group["Properties"]["SecurityGroupEgress"])


@pytest.mark.parametrize("env", ENVS)
def test_default_security_group_is_closed(synthesized, env: str) -> None:
    synthesized.template(env, "network").resource_count_is("Custom::VpcRestrictDefaultSG", 1)


@pytest.mark.parametrize(("env", "days"), [("dev", 30), ("staging", 90), ("prod", 365)])
def test_flow_logs_are_encrypted_and_retained_per_config(synthesized, env: str, days: int) -> None:
    template = synthesized.template(env, "network")
    template.has_resource_properties(
        "AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": days, "KmsKeyId": Match.any_value()})
    # The flow log role's permissions are one managed policy scoped to the flow log group.
    template.resource_count_is("AWS::IAM::Policy", 0)
    template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "PolicyDocument": {
                "Statement": [Match.object_like({"Resource": {"Fn::GetAtt": [Match.any_value(), "Arn"]}})]
            }
        },
    )
