"""Public REST API: POST /v1/predict validated against the feature schema, straight to SageMaker runtime."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from ml_constructs.encrypted_logs import encrypted_log_group
from ml_constructs.nag import acknowledge
from platform_config import ApiSettings

REQUEST_SCHEMA = Path("model_container/contract/request.schema.json")
STAGE_NAME = "v1"


def _error_body(code: str, message: str) -> str:
    # One error shape for every failure a consumer can see, gateway or model (see openapi.json).
    return json.dumps({"error": {"code": code, "message": message, "request_id": "$context.requestId"}})


# SageMaker answers a container's non-2xx with 424 ModelError carrying OriginalStatusCode/OriginalMessage:
# pass the container's own 4xx JSON through, turn anything else into 502 without AWS's wording.
MODEL_ERROR_TEMPLATE = (
    """#set($body = $util.parseJson($input.body))
#set($status = $body.OriginalStatusCode)
#if($status >= 400 && $status < 500)
#set($context.responseOverride.status = $status)
$body.OriginalMessage
#else
#set($context.responseOverride.status = 502)
"""
    + _error_body("model_error", "The model could not answer this request")
    + "\n#end"
)

GATEWAY_RESPONSES = {
    apigw.ResponseType.BAD_REQUEST_BODY: ("400", "invalid_request", "$context.error.validationErrorString"),
    apigw.ResponseType.BAD_REQUEST_PARAMETERS: ("400", "invalid_request", "$context.error.messageString"),
    apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE: ("415", "unsupported_media_type", "Send application/json"),
    apigw.ResponseType.REQUEST_TOO_LARGE: ("413", "payload_too_large", "$context.error.messageString"),
    apigw.ResponseType.INVALID_API_KEY: ("403", "forbidden", "Missing or invalid API key"),
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: ("403", "forbidden", "Missing or invalid credentials"),
    apigw.ResponseType.ACCESS_DENIED: ("403", "forbidden", "$context.error.messageString"),
    apigw.ResponseType.WAF_FILTERED: ("403", "forbidden", "Request blocked by the firewall"),
    apigw.ResponseType.THROTTLED: ("429", "throttled", "Too many requests, retry with backoff"),
    apigw.ResponseType.QUOTA_EXCEEDED: ("429", "quota_exceeded", "Daily quota of this API key is used up"),
    apigw.ResponseType.INTEGRATION_TIMEOUT: ("504", "model_timeout", "The model did not answer in time"),
    apigw.ResponseType.INTEGRATION_FAILURE: ("502", "model_error", "The model could not answer this request"),
    apigw.ResponseType.DEFAULT_4_XX: (None, "client_error", "$context.error.messageString"),
    apigw.ResponseType.DEFAULT_5_XX: (None, "server_error", "Internal error"),
}


class PredictionApi(Construct):
    """REST API with request validation, API-key usage plans (or IAM auth), JSON errors and JSON access logs.

    Exposes `api`, `stage` and `api_name`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        endpoint_name: str,
        settings: ApiSettings,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.api_name = api_name
        access_logs = encrypted_log_group(
            self, "AccessLogs", key=logs_key, retention_days=log_retention_days, removal_policy=removal_policy
        )
        caching = settings.cache_size_gb is not None
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=api_name,
            description="Model predictions; contract: model_container/contract/openapi.json",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=removal_policy,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=settings.throttle_rate_limit,
                throttling_burst_limit=settings.throttle_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                cache_cluster_enabled=caching,
                cache_cluster_size=str(settings.cache_size_gb) if caching else None,
                caching_enabled=caching,
                cache_data_encrypted=caching,
            ),
            disable_execute_api_endpoint=False,
        )
        self.stage = self.api.deployment_stage
        # API Gateway's execution log group, declared so that it is encrypted and expires.
        encrypted_log_group(
            self,
            "ExecutionLogs",
            key=logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{STAGE_NAME}",
        )
        for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{code}-{response_type.response_type}",
                type=response_type,
                status_code=status,
                templates={"application/json": _error_body(code, message)},
            )

        invoke_role = iam.Role(
            self,
            "InvokeEndpointRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description=f"API Gateway calls InvokeEndpoint on {endpoint_name} only",
        )
        invoke_role.add_managed_policy(
            iam.ManagedPolicy(
                self,
                "InvokeEndpointPolicy",
                statements=[
                    iam.PolicyStatement(
                        actions=["sagemaker:InvokeEndpoint"],
                        resources=[
                            stack.format_arn(service="sagemaker", resource="endpoint", resource_name=endpoint_name)
                        ],
                    ),
                ],
            )
        )
        integration = apigw.AwsIntegration(
            service="runtime.sagemaker",
            path=f"endpoints/{endpoint_name}/invocations",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=invoke_role,
                passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                timeout=Duration.seconds(settings.integration_timeout_seconds),
                request_parameters={
                    "integration.request.header.Content-Type": "'application/json'",
                    "integration.request.header.Accept": "'application/json'",
                    # Lets data capture and ground-truth labels be joined on the API's request id.
                    "integration.request.header.X-Amzn-SageMaker-Inference-Id": "context.requestId",
                },
                request_templates={"application/json": "$input.body"},
                integration_responses=[
                    apigw.IntegrationResponse(status_code="200"),
                    apigw.IntegrationResponse(
                        status_code="502",
                        selection_pattern="424",
                        response_templates={"application/json": MODEL_ERROR_TEMPLATE},
                    ),
                    apigw.IntegrationResponse(
                        status_code="429",
                        selection_pattern="429",
                        response_templates={
                            "application/json": _error_body("throttled", "The model is busy, retry with backoff")
                        },
                    ),
                    apigw.IntegrationResponse(
                        status_code="502",
                        selection_pattern="(4|5)\\d\\d",
                        response_templates={
                            "application/json": _error_body("model_error", "The model could not answer this request")
                        },
                    ),
                ],
            ),
        )
        schema = json.loads(REQUEST_SCHEMA.read_text())
        request_model = apigw.CfnModel(
            self,
            "PredictRequestModel",
            rest_api_id=self.api.rest_api_id,
            content_type="application/json",
            name="PredictRequest",
            schema=schema,
            description="Generated from the feature schema",
        )
        validator = self.api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        predict = self.api.root.add_resource("v1").add_resource("predict")
        self.method = predict.add_method(
            "POST",
            integration,
            api_key_required=settings.auth == "api_key",
            authorization_type=apigw.AuthorizationType.IAM if settings.auth == "iam" else apigw.AuthorizationType.NONE,
            request_validator=validator,
            request_models={"application/json": apigw.Model.from_model_name(self, "RequestModel", request_model.ref)},
            method_responses=[apigw.MethodResponse(status_code=code) for code in ("200", "400", "429", "502")],
        )
        self.method.node.add_dependency(request_model)

        if settings.auth == "api_key":
            for tier, plan in settings.usage_plans.items():
                usage_plan = self.api.add_usage_plan(
                    f"Plan-{tier}",
                    name=f"{api_name}-{tier}",
                    throttle=apigw.ThrottleSettings(rate_limit=plan.rate_limit, burst_limit=plan.burst_limit),
                    quota=apigw.QuotaSettings(limit=plan.quota_per_day, period=apigw.Period.DAY),
                    api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.stage)],
                )
                usage_plan.add_api_key(self.api.add_api_key(f"Key-{tier}", api_key_name=f"{api_name}-{tier}"))

        self._acknowledge(settings, caching)

    def _acknowledge(self, settings: ApiSettings, caching: bool) -> None:
        if settings.auth == "api_key":
            acknowledge(
                self.method,
                ("AwsSolutions-APIG4", "AwsSolutions-COG4"),
                "Machine-to-machine API authenticated by API keys bound to usage plans (quota and "
                "throttling per consumer) behind WAF; IAM auth is one config switch (api.auth: iam).",
            )
        if not caching:
            acknowledge(
                self.stage,
                (
                    "HIPAA.Security-APIGWCacheEnabledAndEncrypted",
                    "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
                    "PCI.DSS.321-APIGWCacheEnabledAndEncrypted",
                ),
                "Predictions are computed per request and must not be served from a cache; when "
                "api.cache_size_gb is set the cache is enabled and encrypted.",
            )
        acknowledge(
            self.stage,
            ("HIPAA.Security-APIGWSSLEnabled", "NIST.800.53.R5-APIGWSSLEnabled", "PCI.DSS.321-APIGWSSLEnabled"),
            "Client certificates authenticate API Gateway to HTTP backends; the only backend is the "
            "SageMaker runtime AWS service integration, signed with SigV4 over TLS.",
        )
        cloudwatch_role = self.api.node.try_find_child("CloudWatchRole")
        if cloudwatch_role is not None:
            acknowledge(
                cloudwatch_role,
                (
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
                ),
                "Account-level role API Gateway needs for execution logs; AWS's managed policy is the "
                "documented one and tracks new log actions.",
            )
