"""Settings that exist once per account and region, shared by every environment deployed there."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from ml_constructs.api_gateway_logging import ApiGatewayLogging


class AccountStack(Stack):
    """API Gateway's CloudWatch role. Every stage declares this stack under the same name and with the same
    template, so in an account shared by several environments the first deploy creates it and the others
    find nothing to change."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.api_gateway_logging = ApiGatewayLogging(self, "ApiGatewayLogging")
