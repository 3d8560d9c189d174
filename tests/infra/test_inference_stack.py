"""The endpoint is private and guarded; the API is validated, throttled, firewalled and its errors are JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVS = ("dev", "staging", "prod")


def one(synthesized, env: str, resource_type: str) -> dict:
    [resource] = synthesized.resources(env, "inference", resource_type).values()
    return resource["Properties"]


def config(cdk_context, env: str, section: str) -> dict:
    ml = cdk_context["ml-platform"]
    return {**ml["defaults"].get(section, {}), **ml["environments"][env].get(section, {})}


@pytest.mark.parametrize("env", ENVS)
def test_model_runs_in_private_subnets_isolated_with_kms_and_capture(synthesized, cdk_context, env: str) -> None:
    model = one(synthesized, env, "AWS::SageMaker::Model")
    assert model["EnableNetworkIsolation"] is True
    assert len(model["VpcConfig"]["Subnets"]) == len(config(cdk_context, env, "network")["availability_zones"])
    endpoint_config = one(synthesized, env, "AWS::SageMaker::EndpointConfig")
    assert "KmsKeyId" in endpoint_config
    capture = endpoint_config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == config(cdk_context, env, "endpoint").get("data_capture_percent", 100)
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert capture["CaptureContentTypeHeader"]["JsonContentTypes"] == ["application/json"]
    [variant] = endpoint_config["ProductionVariants"]
    assert variant["InstanceType"] == config(cdk_context, env, "endpoint").get("instance_type", "ml.c6i.large")


@pytest.mark.parametrize("env", ENVS)
def test_names_carry_model_version_and_a_digest_and_resources_are_tagged(synthesized, env: str) -> None:
    # The digest part is checked in test_replacement_safety.py.
    metadata = json.loads((ROOT / "model_container/dist/metadata.json").read_text())
    base = f"mlapi-{env}-endpoint-{metadata['model_version'].replace('.', '-')}-"
    assert one(synthesized, env, "AWS::SageMaker::Model")["ModelName"].startswith(base)
    config_props = one(synthesized, env, "AWS::SageMaker::EndpointConfig")
    assert config_props["EndpointConfigName"].startswith(base)
    tags = {t["Key"]: t["Value"] for t in one(synthesized, env, "AWS::SageMaker::Endpoint")["Tags"]}
    assert tags["model-version"] == metadata["model_version"]
    assert tags["environment"] == env and tags["project"] == "mlapi" and "commit" in tags


@pytest.mark.parametrize("env", ENVS)
def test_no_data_plane_action_on_a_wildcard_resource(synthesized, env: str) -> None:
    # Only actions AWS cannot scope may use "*": ENI describes, ECR auth tokens, metrics (namespace-bound).
    unscopable = {
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeVpcs",
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
    template = synthesized.templates[(env, "inference")]
    policies = [
        r for r in template["Resources"].values() if r["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy")
    ]
    assert policies
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Resource"] == "*":
                assert set(actions) <= unscopable, statement
            assert not any(a.endswith(":*") for a in actions), statement


@pytest.mark.parametrize("env", ENVS)
def test_api_gateway_may_invoke_only_this_endpoint(synthesized, env: str) -> None:
    policies = synthesized.resources(env, "inference", "AWS::IAM::ManagedPolicy").values()
    statements = [
        s
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "sagemaker:InvokeEndpoint"
    ]
    assert len(statements) == 1
    assert statements[0]["Resource"] == f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/mlapi-{env}-endpoint"


@pytest.mark.parametrize("env", ENVS)
def test_request_model_is_the_generated_schema(synthesized, env: str) -> None:
    generated = json.loads((ROOT / "model_container/contract/request.schema.json").read_text())
    assert one(synthesized, env, "AWS::ApiGateway::Model")["Schema"] == generated
    validator = one(synthesized, env, "AWS::ApiGateway::RequestValidator")
    assert validator["ValidateRequestBody"] is True


@pytest.mark.parametrize("env", ENVS)
def test_deployed_api_shape_matches_the_openapi_document(synthesized, env: str) -> None:
    openapi = json.loads((ROOT / "model_container/contract/openapi.json").read_text())
    resources = synthesized.resources(env, "inference", "AWS::ApiGateway::Resource").values()
    paths = {r["Properties"]["PathPart"] for r in resources}
    assert {"/v1/predict"} == set(openapi["paths"]) and paths == {"v1", "predict"}
    methods = [
        m["Properties"]
        for m in synthesized.resources(env, "inference", "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] != "OPTIONS"
    ]
    assert [m["HttpMethod"] for m in methods] == ["POST"]
    assert methods[0]["ApiKeyRequired"] is True
    documented = set(openapi["paths"]["/v1/predict"]["post"]["responses"])
    gateway = {
        r["Properties"]["StatusCode"]
        for r in synthesized.resources(env, "inference", "AWS::ApiGateway::GatewayResponse").values()
        if "StatusCode" in r["Properties"]
    }
    integration = {r["StatusCode"] for r in methods[0]["Integration"]["IntegrationResponses"]}
    assert gateway | integration <= documented


@pytest.mark.parametrize("env", ENVS)
def test_integration_goes_straight_to_sagemaker_runtime(synthesized, env: str) -> None:
    [method] = [m["Properties"] for m in synthesized.resources(env, "inference", "AWS::ApiGateway::Method").values()]
    integration = method["Integration"]
    assert integration["Type"] == "AWS"
    assert f"runtime.sagemaker:path/endpoints/mlapi-{env}-endpoint/invocations" in json.dumps(integration["Uri"])
    assert integration["PassthroughBehavior"] == "NEVER"
    error_templates = [
        r.get("ResponseTemplates", {}).get("application/json", "")
        for r in integration["IntegrationResponses"]
        if r["StatusCode"] != "200"
    ]
    assert all('"error"' in t for t in error_templates)


@pytest.mark.parametrize("env", ENVS)
def test_every_gateway_error_is_json_with_a_request_id(synthesized, env: str) -> None:
    responses = synthesized.resources(env, "inference", "AWS::ApiGateway::GatewayResponse").values()
    types = {r["Properties"]["ResponseType"] for r in responses}
    assert {
        "BAD_REQUEST_BODY",
        "THROTTLED",
        "QUOTA_EXCEEDED",
        "INVALID_API_KEY",
        "INTEGRATION_TIMEOUT",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "WAF_FILTERED",
    } <= types
    for response in responses:
        body = json.loads(response["Properties"]["ResponseTemplates"]["application/json"])
        assert body["error"]["request_id"] == "$context.requestId"


@pytest.mark.parametrize("env", ENVS)
def test_stage_throttles_logs_traces_and_does_not_cache(synthesized, cdk_context, env: str) -> None:
    stage = one(synthesized, env, "AWS::ApiGateway::Stage")
    api = config(cdk_context, env, "api")
    [settings] = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == api.get("throttle_rate_limit", 1000)
    assert settings["ThrottlingBurstLimit"] == api.get("throttle_burst_limit", 2000)
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    assert json.loads(stage["AccessLogSetting"]["Format"])["requestId"] == "$context.requestId"
    assert stage.get("CacheClusterEnabled") is False


@pytest.mark.parametrize("env", ENVS)
def test_usage_plans_per_tier_with_quota(synthesized, cdk_context, env: str) -> None:
    plans = synthesized.resources(env, "inference", "AWS::ApiGateway::UsagePlan").values()
    tiers = config(cdk_context, env, "api").get(
        "usage_plans", {"standard": {"rate_limit": 50, "burst_limit": 100, "quota_per_day": 100000}}
    )
    by_name = {p["Properties"]["UsagePlanName"].rsplit("-", 1)[1]: p["Properties"] for p in plans}
    assert set(by_name) == set(tiers)
    for tier, expected in tiers.items():
        assert by_name[tier]["Throttle"] == {"RateLimit": expected["rate_limit"], "BurstLimit": expected["burst_limit"]}
        assert by_name[tier]["Quota"] == {"Limit": expected["quota_per_day"], "Period": "DAY"}


@pytest.mark.parametrize("env", ENVS)
def test_waf_is_associated_with_the_stage_and_has_every_rule(synthesized, cdk_context, env: str) -> None:
    acl = one(synthesized, env, "AWS::WAFv2::WebACL")
    rules = {r["Name"]: r for r in acl["Rules"]}
    assert {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
        "rate-per-ip",
        "body-size",
    } <= set(rules)
    api = config(cdk_context, env, "api")
    assert rules["rate-per-ip"]["Statement"]["RateBasedStatement"]["Limit"] == api.get(
        "waf_rate_limit_per_5_minutes", 3000
    )
    size = rules["body-size"]["Statement"]["SizeConstraintStatement"]
    assert (
        size["Size"] == api.get("max_body_kb", 64) * 1024
        and size["FieldToMatch"]["Body"]["OversizeHandling"] == "MATCH"
    )
    association = one(synthesized, env, "AWS::WAFv2::WebACLAssociation")
    assert "Stage" in json.dumps(association["ResourceArn"])
    logging = one(synthesized, env, "AWS::WAFv2::LoggingConfiguration")
    assert {f["SingleHeader"]["Name"] for f in logging["RedactedFields"]} == {"x-api-key", "authorization"}


@pytest.mark.parametrize("env", ENVS)
def test_alarms_use_configured_thresholds_and_notify_the_topic(synthesized, cdk_context, env: str) -> None:
    alarms = {
        a["Properties"]["AlarmName"].removeprefix(f"mlapi-{env}-"): a["Properties"]
        for a in synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()
        if not a["Properties"]["AlarmName"].startswith(f"mlapi-{env}-drift-")  # see test_drift_monitor
    }
    expected = {
        "api-5xx-rate",
        "api-4xx-rate",
        "api-latency-p99",
        "endpoint-5xx",
        "model-latency-p99",
        "overhead-latency-p99",
        "container-error-rate",
        "cpu",
        "memory",
        "disk",
        "instances-at-max",
    }
    assert set(alarms) == expected
    thresholds = {
        "api-5xx-rate": 1.0,
        "api-p99": 500.0,
        "endpoint-5xx": 5,
        "model-latency-p99": 50.0,
        "cpu": 80.0,
        **config(cdk_context, env, "alarms"),
    }
    assert alarms["api-5xx-rate"]["Threshold"] == thresholds.get("api_5xx_rate_percent", 1.0)
    assert alarms["model-latency-p99"]["Threshold"] == thresholds.get("model_latency_p99_ms", 50.0) * 1000
    assert alarms["endpoint-5xx"]["Threshold"] == thresholds.get("endpoint_5xx_errors", 5)
    [topic] = synthesized.resources(env, "inference", "AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]
    assert "KmsMasterKeyId" in one(synthesized, env, "AWS::SNS::Topic")


@pytest.mark.parametrize("env", ENVS)
def test_autoscaling_limits_and_policies_as_configured(synthesized, cdk_context, env: str) -> None:
    endpoint = config(cdk_context, env, "endpoint")
    target = one(synthesized, env, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["MinCapacity"] == endpoint.get("min_capacity", 1)
    assert target["MaxCapacity"] == endpoint.get("max_capacity", 2)
    assert target["ResourceId"] == f"endpoint/mlapi-{env}-endpoint/variant/primary"
    policies = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in synthesized.resources(env, "inference", "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    assert len(policies) == 2
    [invocations] = [p for p in policies if "PredefinedMetricSpecification" in p]
    assert (
        invocations["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    )
    assert invocations["TargetValue"] == endpoint.get("invocations_per_instance_target", 60000)
    for policy in policies:
        assert policy["ScaleInCooldown"] > policy["ScaleOutCooldown"]


@pytest.mark.parametrize("env", ENVS)
def test_blue_green_canary_rolls_back_on_the_guard_alarms(synthesized, env: str) -> None:
    endpoint = one(synthesized, env, "AWS::SageMaker::Endpoint")
    deployment = endpoint["DeploymentConfig"]
    routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY" and routing["CanarySize"]["Type"] == "CAPACITY_PERCENT"
    alarms = synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm")
    alarm_names = {
        alarms[a["AlarmName"]["Ref"]]["Properties"]["AlarmName"]
        for a in deployment["AutoRollbackConfiguration"]["Alarms"]
    }
    assert alarm_names == {
        f"mlapi-{env}-endpoint-5xx",
        f"mlapi-{env}-model-latency-p99",
        f"mlapi-{env}-container-error-rate",
    }


def test_gateway_error_bodies_match_the_documented_schema(synthesized) -> None:
    import jsonschema

    openapi = json.loads((ROOT / "model_container/contract/openapi.json").read_text())
    schema = openapi["components"]["schemas"]["GatewayError"]
    for response in synthesized.resources("dev", "inference", "AWS::ApiGateway::GatewayResponse").values():
        jsonschema.validate(json.loads(response["Properties"]["ResponseTemplates"]["application/json"]), schema)
