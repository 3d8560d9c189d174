"""Public REST API: POST /v{api.version}/predict validated against the model card's contract, to SageMaker runtime."""

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
from platform_config import CONTEXT_KEY, ApiSettings
from platform_config.loader import ConfigError
from platform_config.settings import UsagePlanSettings

# Relative to the app's directory, as cdk reads it; generated from the model card (model_container/contract).
CONTRACT_DIR = Path("model_container/contract")
REQUEST_SCHEMA = "request.schema.json"
RESPONSE_SCHEMA = "response.schema.json"
OPENAPI = CONTRACT_DIR / "openapi.json"
REGENERATE = "make contracts (python -m model_container.contract.generate)"
# The one setting of the API version (ml-platform.defaults.api.version: one contract serves every environment).
API_VERSION_SETTING = f"{CONTEXT_KEY}.defaults.api.version"
# One stage whose name carries no version. "A stage is a logical reference to a lifecycle state of your API", "a
# named reference to a deployment", and the invoke URL is https://{restapi-id}.execute-api.{region}.amazonaws.com/
# {stageName} followed by the resource path (API Gateway Developer Guide, "Deploy REST APIs in API Gateway",
# https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-deploy-api.html). Each environment is its own
# API in its own account, so the lifecycle state is the environment and the stage is just "the deployed API". The
# version lives in the resource path only (/v{api.version}/predict, as the contract says), so the URL says it once
# (…/api/v1/predict, not …/v1/v1/predict), and a major bump changes a path of the same stage (its usage plans, WAF
# association, alarms and logs stay) instead of needing a second stage with a deployment of its own.
STAGE_NAME = "api"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
# Test traffic (README "Test traffic"): the pipeline's smoke and load tests use their own API key and usage plan,
# and only requests authenticated with that key reach the endpoint with an inference id starting with this prefix.
# InvokeEndpoint's InferenceId "is added to the captured data when you enable data capture on the endpoint"
# (SageMaker API reference, InvokeEndpoint; the capture record's eventMetadata.inferenceId), whereas
# CustomAttributes is only "forwarded verbatim" to the container and is not part of the capture record. The drift
# job leaves records with this prefix out of its statistics (drift_engine.capture_records).
TEST_INFERENCE_ID_PREFIX = "pipeline-test-"
PIPELINE_TEST_TIER = "pipeline-tests"
TEST_KEY_VARIABLE = "pipelineTestKeyId"


def resource_path(api_version: int) -> str:
    """The public path of API major `api_version` (model_container/contract/generate.py documents the same)."""
    return f"/v{api_version}/predict"


def public_url(*, api_id: str, region: str, api_version: int) -> str:
    """The invoke URL on the API's default endpoint: stage, then the versioned resource path."""
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{STAGE_NAME}{resource_path(api_version)}"


def contract_api_version(openapi_path: Path = OPENAPI) -> int:
    """The API major the committed contract was generated for: openapi.json's info.version major."""
    return int(str(json.loads(openapi_path.read_text())["info"]["version"]).split(".")[0])


def check_contract_version(api_version: int, openapi_path: Path = OPENAPI) -> None:
    """Refuse an api.version the contract was not generated for: the gateway would serve /v{N}/predict while the
    OpenAPI document (and the model gate, which compares it with the live one) says another version."""
    generated = contract_api_version(openapi_path)
    documented = json.loads(openapi_path.read_text())["paths"]
    if generated != api_version or resource_path(api_version) not in documented:
        raise ConfigError(
            API_VERSION_SETTING,
            f"is {api_version} but {openapi_path} was generated for API version {generated} "
            f"(paths {', '.join(documented)}); run {REGENERATE} and commit it, or set {API_VERSION_SETTING} "
            f"back to {generated}",
        )


def request_template(*, marks_test_traffic: bool) -> str:
    """The integration request template: the body unchanged; for the pipeline's test key only (its id is the stage
    variable TEST_KEY_VARIABLE), the inference id becomes TEST_INFERENCE_ID_PREFIX + the request id.

    The marker is set by the gateway from $context.identity.apiKeyId, "the API key ID associated with an API request
    that requires an API key" (API Gateway mapping template and access logging variable reference), never from
    anything the client sends: SageMaker only sees the headers the integration maps. A mapping template override
    ($context.requestOverride.header) replaces the standard mapping of the header ("Override your API's request and
    response parameters and status codes for REST APIs in API Gateway": overrides apply "after standard API Gateway
    mappings have been applied", once per parameter). It is written as the Map put that Velocity's
    #set($context.requestOverride.header.Name = ...) performs for a name that cannot be a bean property (one with
    hyphens), so that the renderers of this repository's tests parse it too. The key id comes from a stage variable
    so that the template stays a plain string (the id is only known at deploy time)."""
    if not marks_test_traffic:
        return "$input.body"
    key = "$context.identity.apiKeyId"
    marked = f'"{TEST_INFERENCE_ID_PREFIX}$context.requestId"'
    return "\n".join(
        (
            f"#if({key} && {key} == $stageVariables.{TEST_KEY_VARIABLE})",
            f'#set($previous = $context.requestOverride.header.put("{INFERENCE_ID_HEADER}", {marked}))',
            "#end",
            "$input.body",
        )
    )


# Error bodies: {"error": {"code", "message", "request_id"}} for every failure a consumer can see (openapi.json).
# Two template languages build them (API Gateway Developer Guide):
# - Gateway responses are "generated by a non-VTL mapping template" "supporting only simple variable substitution"
#   ("Gateway responses in API Gateway", "x-amazon-apigateway-gateway-responses.responseTemplates object"): no $util,
#   no #set/#if, so nothing can be escaped there. $context.error.messageString is "the quoted value of
#   $context.error.message" - already a JSON string (AWS's default body is {"message":$context.error.messageString}),
#   so it is inserted bare, never inside quotes. $context.error.validationErrorString is raw text full of double
#   quotes ([object has missing required properties (["instances"])]) and is therefore not used in a body.
# - Integration responses are VTL: $util.escapeJavaScript escapes ' as \', which JSON rejects; the $util reference
#   ("API Gateway mapping template and access logging variable reference") undoes it with .replaceAll("\\'","'").
# tests/infra/test_mapping_templates.py renders every one of them with such messages and parses the result.
MESSAGE_STRING = "$context.error.messageString"


def _error_envelope(code: str, message_json: str) -> str:
    # message_json is a JSON value already: a json.dumps'd literal, or a reference that renders to a JSON string.
    return (
        '{"error": {"code": '
        + json.dumps(code)
        + ', "message": '
        + message_json
        + ', "request_id": "$context.requestId"}}'
    )


def _error_body(code: str, message: str) -> str:
    return _error_envelope(code, json.dumps(message))


# $util.escapeJavaScript(...) made JSON-safe, for a VTL string value between double quotes.
_ESCAPED_ORIGINAL = r"""$util.escapeJavaScript($original).replaceAll("\\'","'")"""

# SageMaker answers a container's non-2xx with 424 ModelError carrying OriginalStatusCode/OriginalMessage
# (InvokeEndpoint, ModelError). The container's own 4xx JSON envelope is passed through unchanged (it is valid JSON:
# the container serializes it); any other 4xx text is escaped into an envelope; anything else becomes 502 without
# AWS's or the container's wording.
MODEL_ERROR_TEMPLATE = "\n".join(
    (
        "#set($body = $util.parseJson($input.body))",
        "#set($status = $body.OriginalStatusCode)",
        '#set($original = "$!body.OriginalMessage")',
        "#if($status >= 400 && $status < 500)",
        "#set($context.responseOverride.status = $status)",
        "#if($original.startsWith('{\"error\":'))",
        "$original",
        "#else",
        _error_envelope("client_error", f'"{_ESCAPED_ORIGINAL}"'),
        "#end",
        "#else",
        "#set($context.responseOverride.status = 502)",
        _error_body("model_error", "The model could not answer this request"),
        "#end",
    )
)

# (status, code, message): message None means API Gateway's own message ($context.error.messageString).
GATEWAY_RESPONSES = {
    apigw.ResponseType.BAD_REQUEST_BODY: (
        "400",
        "invalid_request",
        "The request body does not match the request schema of the API contract",
    ),
    apigw.ResponseType.BAD_REQUEST_PARAMETERS: ("400", "invalid_request", None),
    apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE: ("415", "unsupported_media_type", "Send application/json"),
    apigw.ResponseType.REQUEST_TOO_LARGE: ("413", "payload_too_large", None),
    apigw.ResponseType.INVALID_API_KEY: ("403", "forbidden", "Missing or invalid API key"),
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: ("403", "forbidden", "Missing or invalid credentials"),
    apigw.ResponseType.ACCESS_DENIED: ("403", "forbidden", None),
    apigw.ResponseType.WAF_FILTERED: ("403", "forbidden", "Request blocked by the firewall"),
    apigw.ResponseType.THROTTLED: ("429", "throttled", "Too many requests, retry with backoff"),
    apigw.ResponseType.QUOTA_EXCEEDED: ("429", "quota_exceeded", "Daily quota of this API key is used up"),
    apigw.ResponseType.INTEGRATION_TIMEOUT: ("504", "model_timeout", "The model did not answer in time"),
    apigw.ResponseType.INTEGRATION_FAILURE: ("502", "model_error", "The model could not answer this request"),
    apigw.ResponseType.DEFAULT_4_XX: (None, "client_error", None),
    apigw.ResponseType.DEFAULT_5_XX: (None, "server_error", "Internal error"),
}


def gateway_response_body(code: str, message: str | None) -> str:
    return _error_envelope(code, MESSAGE_STRING if message is None else json.dumps(message))


class PredictionApi(Construct):
    """REST API with request validation, API-key usage plans (or IAM auth), JSON errors and JSON access logs.

    Its request and response models are the contract generated from the model card, read from `contract_dir`.
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
        contract_dir: Path = CONTRACT_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        check_contract_version(settings.version, contract_dir / OPENAPI.name)
        stack = Stack.of(self)
        self.api_name = api_name
        access_logs = encrypted_log_group(
            self, "AccessLogs", key=logs_key, retention_days=log_retention_days, removal_policy=removal_policy
        )
        caching = settings.cache_size_gb is not None
        # The pipeline's test key, whose id the stage holds in a variable for the request template to compare with.
        self.test_key: apigw.IApiKey | None = None
        if settings.auth == "api_key":
            self.test_key = apigw.ApiKey(
                self,
                f"Key-{PIPELINE_TEST_TIER}",
                api_key_name=f"{api_name}-{PIPELINE_TEST_TIER}",
                description="The delivery pipeline's smoke and load tests: marked as test traffic, left out of drift",
            )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=api_name,
            description="Model predictions; contract: model_container/contract/openapi.json",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account's CloudWatch role is set once per account and region (AccountStack).
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                variables={TEST_KEY_VARIABLE: self.test_key.key_id} if self.test_key else None,
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
        # API Gateway's execution log group, declared so that it is encrypted and expires. "The log group is named
        # API-Gateway-Execution-Logs_{rest-api-id}/{stage_name}" (API Gateway Developer Guide, "Execution logging for
        # REST APIs", rest-api-execution-logging.html): the stage, not the API version.
        # The stage waits for its group: the same page says API Gateway creates the group on the first logged
        # request if it is missing, and CloudFormation's create would then fail with "already exists".
        execution_logs = encrypted_log_group(
            self,
            "ExecutionLogs",
            key=logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{STAGE_NAME}",
        )
        self.stage.node.add_dependency(execution_logs)
        for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{code}-{response_type.response_type}",
                type=response_type,
                status_code=status,
                templates={"application/json": gateway_response_body(code, message)},
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
                    f"integration.request.header.{INFERENCE_ID_HEADER}": "context.requestId",
                },
                request_templates={"application/json": request_template(marks_test_traffic=self.test_key is not None)},
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
                        # Every other 4xx/5xx, disjoint from 424 and 429: AWS documents no precedence between
                        # selection patterns that match the same status code.
                        selection_pattern="4[013-9]\\d|42[0-35-8]|5\\d\\d",
                        response_templates={
                            "application/json": _error_body("model_error", "The model could not answer this request")
                        },
                    ),
                ],
            ),
        )
        request_model, response_model = (
            apigw.CfnModel(
                self,
                f"{name}Model",
                rest_api_id=self.api.rest_api_id,
                content_type="application/json",
                name=name,
                schema=json.loads((contract_dir / file).read_text()),
                description=f"Generated from the model card ({file})",
            )
            for name, file in (("PredictRequest", REQUEST_SCHEMA), ("PredictResponse", RESPONSE_SCHEMA))
        )
        validator = self.api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        predict = self.api.root.resource_for_path(resource_path(settings.version))
        self.method = predict.add_method(
            "POST",
            integration,
            api_key_required=settings.auth == "api_key",
            authorization_type=apigw.AuthorizationType.IAM if settings.auth == "iam" else apigw.AuthorizationType.NONE,
            request_validator=validator,
            request_models={"application/json": apigw.Model.from_model_name(self, "RequestModel", request_model.ref)},
            # The 200 answer's model documents the task's prediction fields. A model allows "basic request
            # validation", mapping templates and "a user-defined data type (UDT) when you generate an SDK" (API
            # Gateway Developer Guide, "Data models for REST APIs", models-mappings-models.html): the response model
            # types the SDK's answer; API Gateway does not validate responses.
            method_responses=[
                apigw.MethodResponse(
                    status_code="200",
                    response_models={
                        "application/json": apigw.Model.from_model_name(self, "ResponseModel", response_model.ref)
                    },
                ),
                *(apigw.MethodResponse(status_code=code) for code in ("400", "429", "502")),
            ],
        )
        self.method.node.add_dependency(request_model, response_model)

        if settings.auth == "api_key":
            for tier, plan in settings.usage_plans.items():
                usage_plan = self._usage_plan(tier, plan)
                usage_plan.add_api_key(self.api.add_api_key(f"Key-{tier}", api_key_name=f"{api_name}-{tier}"))
            if self.test_key is not None:
                self._usage_plan(PIPELINE_TEST_TIER, settings.pipeline_test_plan).add_api_key(self.test_key)

        self._acknowledge(settings, caching)

    def _usage_plan(self, tier: str, plan: UsagePlanSettings) -> apigw.UsagePlan:
        return self.api.add_usage_plan(
            f"Plan-{tier}",
            name=f"{self.api_name}-{tier}",
            throttle=apigw.ThrottleSettings(rate_limit=plan.rate_limit, burst_limit=plan.burst_limit),
            quota=apigw.QuotaSettings(limit=plan.quota_per_day, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.stage)],
        )

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
