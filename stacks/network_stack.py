"""The environment's VPC, endpoints and flow logs."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from ml_constructs.nag import acknowledge
from ml_constructs.private_network import PrivateNetwork, compute_kinds, interface_services
from ml_constructs.training_runner import pipeline_training
from platform_config import EnvironmentSettings


class NetworkStack(Stack):
    """Private network for inference; flow logs encrypted with the data stack's logs key. Its interface endpoints
    are those the environment's compute calls (`compute_kinds`, from the settings the inference stack builds from,
    and the pipeline's `training.runner` for its production): exposed as `compute_kinds`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        logs_key: kms.IKey,
        removal_policy: RemovalPolicy,
        **kwargs: Any,
    ) -> None:
        self._zones = list(settings.network.availability_zones)
        super().__init__(scope, construct_id, **kwargs)
        self.compute_kinds = compute_kinds(settings, training_jobs=pipeline_training(self, settings.name) is not None)
        self.network = PrivateNetwork(
            self,
            "Network",
            settings=settings.network,
            logs_key=logs_key,
            removal_policy=removal_policy,
            interface_endpoints=interface_services(self.compute_kinds),
        )
        # CDK acknowledges this itself when it supplies the AZs; here the config does (network.availability_zones).
        acknowledge(
            self,
            ("CloudFormation-Validate::W3010",),
            "The subnets' AZs are the ones configured in network.availability_zones, written literally so that "
            "synth needs no AWS lookup.",
        )

    @property
    def availability_zones(self) -> list[str]:
        """The configured AZs: with an explicit account CDK would otherwise look them up (an AWS call at synth)."""
        return self._zones
