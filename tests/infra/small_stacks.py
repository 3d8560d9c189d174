"""Pieces of the small single-stack synths that construct tests build instead of the whole app."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms

from ml_constructs.platform_function import FunctionPlacement

SUBNET_IDS = ("subnet-0123456789abcdef0", "subnet-0123456789abcdef1")


def imported_vpc(stack: Stack, zones: int = 2) -> ec2.IVpc:
    """A VPC with `zones` isolated `inference` subnets, as the network stack hands it to the inference stack."""
    return ec2.Vpc.from_vpc_attributes(
        stack,
        "Vpc",
        vpc_id="vpc-0123456789abcdef0",
        availability_zones=[f"eu-west-1{zone}" for zone in "ab"[:zones]],
        isolated_subnet_ids=list(SUBNET_IDS[:zones]),
        isolated_subnet_names=["inference"],
    )


def outside_vpc(key: kms.IKey) -> FunctionPlacement:
    """Functions outside any VPC, data and logs under `key`, a year of logs, destroyed with the test stack."""
    return FunctionPlacement(
        vpc=None,
        subnets=None,
        security_group=None,
        data_key=key,
        logs_key=key,
        log_retention_days=365,
        removal_policy=RemovalPolicy.DESTROY,
    )
