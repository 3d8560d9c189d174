"""API Gateway's account-level CloudWatch Logs role, one per account and region."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from constructs import Construct

from ml_constructs.nag import acknowledge

PUSH_TO_LOGS = "service-role/AmazonAPIGatewayPushToCloudWatchLogs"


class ApiGatewayLogging(Construct):
    """The role API Gateway writes access and execution logs with, set as the account's CloudWatch role.

    `AWS::ApiGateway::Account` is one setting per account and region, used by every API there: it lives in a
    stack of its own (named once per project) instead of in each environment, and is retained, so deleting
    one environment never takes logging away from the others. Exposes `role`.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(PUSH_TO_LOGS)],
            description="API Gateway writes access and execution logs of every API in this account and region",
        )
        self.role.apply_removal_policy(RemovalPolicy.RETAIN)
        account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=self.role.role_arn)
        account.apply_removal_policy(RemovalPolicy.RETAIN)
        acknowledge(
            self.role,
            (f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{PUSH_TO_LOGS}]",),
            "Account-level role API Gateway needs for access and execution logs (API Gateway Developer Guide, "
            "'Set up CloudWatch logging for REST APIs'); AWS's managed policy is the documented one and tracks "
            "new log actions.",
        )
