"""The endpoint is private and guarded; the API is validated, throttled, firewalled and its errors are JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ml_constructs.prediction_api import contract_api_version, resource_path
from model_container.card import MULTICLASS, TASKS, ModelCard
from platform_config import EndpointSettings

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "model_container" / "dist"
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
    # The digest part is checked in test_replacement_safety.py; the card is the build's (make model).
    card = ModelCard.load(DIST)
    base = f"mlapi-{env}-endpoint-{card.version.replace('.', '-')}-"
    assert one(synthesized, env, "AWS::SageMaker::Model")["ModelName"].startswith(base)
    config_props = one(synthesized, env, "AWS::SageMaker::EndpointConfig")
    assert config_props["EndpointConfigName"].startswith(base)
    expected = {
        "model-name": card.name,
        "model-version": card.version,
        "model-task": card.task,
        "model-hash": card.content_sha256[:16],
    }
    for resource_type in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"):
        tags = {t["Key"]: t["Value"] for t in one(synthesized, env, resource_type)["Tags"]}
        assert expected.items() <= tags.items(), resource_type
        assert tags["environment"] == env and tags["project"] == "mlapi" and "commit" in tags
    environment = one(synthesized, env, "AWS::SageMaker::Model")["PrimaryContainer"]["Environment"]
    assert environment["MODEL_VERSION"] == card.version


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
        # Step Functions logging and X-Ray (batch state machine): no resource types (Step Functions Developer
        # Guide, "Using CloudWatch Logs to log execution history"; "AWS X-Ray and Step Functions").
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
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
    models = {
        m["Properties"]["Name"]: m["Properties"]
        for m in synthesized.resources(env, "inference", "AWS::ApiGateway::Model").values()
    }
    assert models["PredictRequest"]["Schema"] == generated
    response = json.loads((ROOT / "model_container/contract/response.schema.json").read_text())
    assert models["PredictResponse"]["Schema"] == response  # the 200 answer of the card's task
    validator = one(synthesized, env, "AWS::ApiGateway::RequestValidator")
    assert validator["ValidateRequestBody"] is True


@pytest.mark.parametrize("env", ENVS)
def test_deployed_api_shape_matches_the_openapi_document(synthesized, env: str) -> None:
    openapi = json.loads((ROOT / "model_container/contract/openapi.json").read_text())
    path = resource_path(contract_api_version())  # /v<api.version>/predict
    resources = synthesized.resources(env, "inference", "AWS::ApiGateway::Resource").values()
    paths = {r["Properties"]["PathPart"] for r in resources}
    assert {path} == set(openapi["paths"]) and paths == set(path.strip("/").split("/"))
    methods = [
        m["Properties"]
        for m in synthesized.resources(env, "inference", "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] != "OPTIONS"
    ]
    assert [m["HttpMethod"] for m in methods] == ["POST"]
    assert methods[0]["ApiKeyRequired"] is True
    documented = set(openapi["paths"][path]["post"]["responses"])
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


def gateway_template_as_json(template: str) -> str:
    # $context.error.messageString renders to a JSON string and is inserted unquoted; stand one in. Rendering with
    # hostile messages: tests/infra/test_mapping_templates.py.
    return template.replace("$context.error.messageString", '"Forbidden"')


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
        body = json.loads(gateway_template_as_json(response["Properties"]["ResponseTemplates"]["application/json"]))
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
def test_the_stage_is_created_after_its_execution_log_group(synthesized, env: str) -> None:
    # API Gateway Developer Guide, "Execution logging for REST APIs": API Gateway creates
    # API-Gateway-Execution-Logs_{rest-api-id}/{stage} itself on the first logged request if it does not exist, so
    # a stage serving before CloudFormation creates the declared group makes that create fail ("already exists").
    resources = synthesized.resources(env, "inference", "AWS::Logs::LogGroup")
    [group_id] = [
        logical for logical, group in resources.items()
        if "API-Gateway-Execution-Logs_" in json.dumps(group["Properties"].get("LogGroupName"))
    ]  # fmt: skip
    [stage] = synthesized.resources(env, "inference", "AWS::ApiGateway::Stage").values()
    assert group_id in stage.get("DependsOn", [])


@pytest.mark.parametrize("env", ENVS)
def test_usage_plans_per_tier_with_quota(synthesized, cdk_context, env: str) -> None:
    plans = synthesized.resources(env, "inference", "AWS::ApiGateway::UsagePlan").values()
    tiers = config(cdk_context, env, "api").get(
        "usage_plans", {"standard": {"rate_limit": 50, "burst_limit": 100, "quota_per_day": 100000}}
    )
    prefix = f"mlapi-{env}-api-"
    by_name = {p["Properties"]["UsagePlanName"].removeprefix(prefix): p["Properties"] for p in plans}
    # The consumer tiers, plus the pipeline's own plan for its smoke and load tests (marked as test traffic).
    tests = {"rate_limit": 50, "burst_limit": 100, "quota_per_day": 20000, **config(cdk_context, env, "api").get(
        "pipeline_test_plan", {})}  # fmt: skip
    assert set(by_name) == {*tiers, "pipeline-tests"}
    for tier, expected in {**tiers, "pipeline-tests": tests}.items():
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
        "rate-per-api-key",
        "rate-per-ip",
        "body-size",
    } <= set(rules)
    api = config(cdk_context, env, "api")
    per_ip = rules["rate-per-ip"]["Statement"]["RateBasedStatement"]
    assert per_ip["Limit"] == api.get("waf_rate_limit_per_5_minutes", 40000) and per_ip["AggregateKeyType"] == "IP"
    # AWS::WAFv2::WebACL RateBasedStatement: AggregateKeyType CUSTOM_KEYS with CustomKeys [{Header: {Name, ...}}].
    per_key = rules["rate-per-api-key"]["Statement"]["RateBasedStatement"]
    assert per_key["AggregateKeyType"] == "CUSTOM_KEYS"
    none = [{"Priority": 0, "Type": "NONE"}]
    assert per_key["CustomKeys"] == [{"Header": {"Name": "x-api-key", "TextTransformations": none}}]
    # Until the inference stack passes api.waf_key_rate_limit_per_5_minutes, the key rule takes the per-IP limit.
    assert per_key["Limit"] in (api.get("waf_key_rate_limit_per_5_minutes", 20000), per_ip["Limit"])
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
        # drift alarms: see test_drift_monitor; the batch alarm: test_batch_inference; the release Lambdas': releases
        if not a["Properties"]["AlarmName"].startswith(
            (f"mlapi-{env}-drift-", f"mlapi-{env}-batch-", f"mlapi-{env}-release-")
        )
    }
    expected = {
        "api-5xx-rate",
        "api-4xx-rate",
        "api-latency-p99",
        "endpoint-5xx",
        "model-latency-p99",
        "overhead-latency-p99",
        "container-error-rate",
        "container-latency-p99",
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
    # The container's p99 (ms) is part of ModelLatency (µs): held to the same budget.
    assert alarms["container-latency-p99"]["Threshold"] == thresholds.get("model_latency_p99_ms", 50.0)
    assert alarms["endpoint-5xx"]["Threshold"] == thresholds.get("endpoint_5xx_errors", 5)
    [topic] = synthesized.resources(env, "inference", "AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]
    assert "KmsMasterKeyId" in one(synthesized, env, "AWS::SNS::Topic")


@pytest.mark.parametrize("env", ENVS)
def test_autoscaling_limits_and_policies_as_configured(synthesized, cdk_context, env: str) -> None:
    endpoint = config(cdk_context, env, "endpoint")
    target = one(synthesized, env, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["MinCapacity"] == endpoint.get("min_capacity", EndpointSettings().min_capacity)
    assert target["MaxCapacity"] == endpoint.get("max_capacity", EndpointSettings().max_capacity)
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
def test_blue_green_canary_rolls_back_on_the_guard_alarms(synthesized, cdk_context, env: str) -> None:
    endpoint = one(synthesized, env, "AWS::SageMaker::Endpoint")
    deployment = endpoint["DeploymentConfig"]
    routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == config(cdk_context, env, "deployment").get("traffic_routing", "CANARY")
    if routing["Type"] == "CANARY":
        assert routing["CanarySize"]["Type"] == "CAPACITY_PERCENT"
    alarms = synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm")
    alarm_names = {
        alarms[a["AlarmName"]["Ref"]]["Properties"]["AlarmName"]
        for a in deployment["AutoRollbackConfiguration"]["Alarms"]
    }
    assert alarm_names == {
        f"mlapi-{env}-endpoint-5xx",
        f"mlapi-{env}-model-latency-p99",
        f"mlapi-{env}-container-error-rate",
        f"mlapi-{env}-container-latency-p99",
    }


def test_gateway_error_bodies_match_the_documented_schema(synthesized) -> None:
    import jsonschema

    openapi = json.loads((ROOT / "model_container/contract/openapi.json").read_text())
    schema = openapi["components"]["schemas"]["GatewayError"]
    for response in synthesized.resources("dev", "inference", "AWS::ApiGateway::GatewayResponse").values():
        template = response["Properties"]["ResponseTemplates"]["application/json"]
        jsonschema.validate(json.loads(gateway_template_as_json(template)), schema)


# --- Defect 9: no canary over half the instances; production on two or more ------------------------------------
# SageMaker API reference, TrafficRoutingConfig: CanarySize at most 50 % of the variant's instances, LinearStepSize
# 10-50 %. "Best practices for deploying models on SageMaker AI Hosting Services": deploy multiple instances for
# each production endpoint, so that SageMaker can spread them across Availability Zones.
@pytest.mark.parametrize("env", ENVS)
def test_traffic_steps_turn_on_at_most_half_the_instances(synthesized, env: str) -> None:
    [variant] = one(synthesized, env, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    target = one(synthesized, env, "AWS::ApplicationAutoScaling::ScalableTarget")
    routing = one(synthesized, env, "AWS::SageMaker::Endpoint")["DeploymentConfig"]["BlueGreenUpdatePolicy"][
        "TrafficRoutingConfiguration"
    ]
    step = routing.get("CanarySize") or routing.get("LinearStepSize")
    assert (step is None) == (routing["Type"] == "ALL_AT_ONCE")
    if step is not None:
        assert step["Type"] == "CAPACITY_PERCENT"
        for instances in (variant["InitialInstanceCount"], target["MinCapacity"]):
            turned_on = max(1, math.ceil(step["Value"] * instances / 100))  # whole instances
            assert 2 * turned_on <= instances, (env, routing, instances)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_production_environments_run_at_least_two_instances(synthesized, env: str) -> None:
    [variant] = one(synthesized, env, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    target = one(synthesized, env, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert variant["InitialInstanceCount"] >= 2 and target["MinCapacity"] >= 2
    assert (
        one(synthesized, env, "AWS::SageMaker::Endpoint")["DeploymentConfig"]["BlueGreenUpdatePolicy"][
            "TrafficRoutingConfiguration"
        ]["Type"]
        == "CANARY"
    )


# --- Defect 12: CPUUtilization is summed over vCPUs --------------------------------------------------------------
# SageMaker Developer Guide, "Monitor Amazon SageMaker AI with Amazon CloudWatch": CPUUtilization is "the sum of
# each individual CPU core's utilization" (0-400 % on four CPUs); MemoryUtilization and DiskUtilization are 0-100 %.
# vCPUs per instance type: EC2 User Guide, "CPU cores and threads per CPU core per instance type".
VCPUS = {"ml.c6i.large": 2, "ml.m5.xlarge": 4, "ml.c5.2xlarge": 8}


def instance_type_vcpus(synthesized, env: str) -> int:
    [variant] = one(synthesized, env, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    return VCPUS[variant["InstanceType"]]


@pytest.mark.parametrize("env", ENVS)
def test_cpu_scaling_target_is_the_per_instance_percentage_times_the_vcpus(synthesized, cdk_context, env: str) -> None:
    policies = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in synthesized.resources(env, "inference", "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    [cpu] = [p for p in policies if p.get("CustomizedMetricSpecification", {}).get("MetricName") == "CPUUtilization"]
    percent = config(cdk_context, env, "endpoint").get(
        "cpu_utilization_target", EndpointSettings().cpu_utilization_target
    )
    assert cpu["TargetValue"] == percent * instance_type_vcpus(synthesized, env)


def host_alarms(synthesized, env: str) -> dict[str, dict]:
    return {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "/aws/sagemaker/Endpoints"
        and a["Properties"].get("Statistic") == "Average"
    }


@pytest.mark.parametrize("env", ENVS)
def test_cpu_alarm_threshold_is_the_per_instance_percentage_times_the_vcpus(synthesized, cdk_context, env: str) -> None:
    percent = config(cdk_context, env, "alarms").get("cpu_utilization_percent", 80.0)
    assert host_alarms(synthesized, env)["CPUUtilization"]["Threshold"] == percent * instance_type_vcpus(
        synthesized, env
    )


@pytest.mark.parametrize("env", ENVS)
def test_memory_and_disk_alarms_stay_percentages_of_the_instance(synthesized, env: str) -> None:
    alarms = host_alarms(synthesized, env)
    assert 0 < alarms["MemoryUtilization"]["Threshold"] <= 100
    assert 0 < alarms["DiskUtilization"]["Threshold"] <= 100


@pytest.mark.parametrize(("vcpus", "threshold"), [(2, 160.0), (4, 320.0), (1, 80.0)])
def test_endpoint_alarms_scale_the_cpu_threshold_by_the_vcpus_given(vcpus: int, threshold: float) -> None:
    from aws_cdk.assertions import Template

    from platform_config import AlarmSettings

    stack = alarms_stack(AlarmSettings(cpu_utilization_percent=80.0), instance_vcpus=vcpus)
    [cpu] = (
        Template.from_stack(stack)
        .find_resources("AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": "p-cpu"}})
        .values()
    )
    assert cpu["Properties"]["Threshold"] == threshold


def alarms_stack(settings=None, **options):  # type: ignore[no-untyped-def]
    """EndpointAlarms alone in a stack, of a model named `m` at the build's version (its card's)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms

    from ml_constructs.endpoint_alarms import EndpointAlarms
    from platform_config import AlarmSettings

    stack = Stack(App(), "Alarms")
    EndpointAlarms(
        stack,
        "Alarms",
        prefix="p",
        settings=settings or AlarmSettings(),
        emails=(),
        key=kms.Key(stack, "Key"),
        endpoint_name="e",
        variant_name="primary",
        api_name="a",
        api_stage="v1",
        model_name="m",
        model_version=ModelCard.load(DIST).version,
        max_instances=4,
        **options,
    )
    return stack


@pytest.mark.parametrize("task", TASKS)
def test_the_dashboard_graphs_the_prediction_metrics_of_the_task_and_no_alarm_watches_one(task: str) -> None:
    """A container publishes the prediction metrics of its task only (binary: the mean P(positive) and the positive
    rate): an alarm on one would sit in INSUFFICIENT_DATA, or never fire, for another task's model."""
    from aws_cdk.assertions import Template

    from ml_constructs.endpoint_alarms import PREDICTION_METRICS

    classes = ("class_0", "class_1", "class_2") if task == MULTICLASS else ()
    template = Template.from_stack(alarms_stack(task=task, class_names=classes)).to_json()
    [dashboard] = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    others = {name for other, names in PREDICTION_METRICS.items() if other != task for name in names}
    assert all(f'\\"{name}\\"' in body for name in PREDICTION_METRICS[task])
    assert not any(f'\\"{name}\\"' in body for name in others - set(PREDICTION_METRICS[task]))
    # A multiclass container reports each class's share under its name (dimension PredictedClass).
    assert all(f'\\"PredictedClass\\",\\"{name}\\"' in body for name in classes)
    alarmed = json.dumps([r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"])
    assert not any(f'"{name}"' in alarmed for names in PREDICTION_METRICS.values() for name in names)


# --- Defect 15: the container's error-rate alarm counts every 5xx the container answers --------------------------
def container_metrics(statuses: tuple[int, ...]) -> dict[str, float]:
    """The container's EMF record (model_container/server/metrics.py) after answering `statuses`, name -> value."""
    from model_container.server.metrics import MetricsAggregator

    aggregator = MetricsAggregator("m", worker=0)
    for status in statuses:
        aggregator.observe(status, latency_ms=1.0)
    # One record per interval with requests (a multiclass model adds one per class after it): the request record.
    record, *_ = aggregator.flush(now=0)
    return {m["Name"]: record[m["Name"]] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


@pytest.mark.parametrize("env", ENVS)
def test_container_error_rate_counts_every_5xx_the_container_emits(synthesized, env: str) -> None:
    [alarm] = [
        a["Properties"]
        for a in synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == f"mlapi-{env}-container-error-rate"
    ]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    errors = metrics["errors"]["MetricStat"]
    assert errors["Metric"]["Namespace"] == "MlApi/ModelServer" and errors["Stat"] == "Sum"
    # A model failure (500) and a model not ready (503, model_container/server/app.py) count; 200 and 400 do not.
    emitted = container_metrics((200, 400, 500, 503))
    assert emitted.get(errors["Metric"]["MetricName"]) == 2
    assert metrics["requests"]["MetricStat"]["Metric"]["MetricName"] == "Requests"


# --- Issue 15: rollback detection within 60 s, from the container's own EMF output ------------------------------
# The guard alarms as synthesized (period, statistic, expression, evaluation periods, datapoints to alarm,
# threshold, missing data) are fed the EMF records the server writes (tests/model_container/guard_replay.py), and
# evaluated as CloudWatch evaluates an M-of-N alarm (CloudWatch User Guide, "Using Amazon CloudWatch alarms",
# "Evaluating an alarm"). SageMaker rolls a deployment back when one of its AutoRollbackConfiguration alarms goes
# to ALARM during traffic shifting or baking (SageMaker Developer Guide, "Auto-Rollback Configuration and
# Monitoring"), so the time to ALARM is the time to start the rollback (CloudWatch's ingestion delay comes on top).
HEALTHY = (200, 0.4)  # status, latency ms: what the container answers today


def alarm_named(synthesized, env: str, name: str) -> dict:
    [alarm] = [
        a["Properties"]
        for a in synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == f"mlapi-{env}-{name}"
    ]
    return alarm


def container_identity(alarm: dict) -> dict[str, str]:
    """ModelName and ModelVersion the alarm watches (the records must carry them to count)."""
    stats = (
        [q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q] if "Metrics" in alarm else [alarm]
    )
    dimensions = {d["Name"]: d["Value"] for metric in stats for d in metric["Dimensions"]}
    assert set(dimensions) == {"ModelName", "ModelVersion"} and all(isinstance(v, str) for v in dimensions.values())
    return dimensions


def detected_after(alarm: dict, bad: tuple[int, float], interval_s: float | None) -> tuple[float, float]:
    """(seconds to ALARM on the healthy traffic alone, seconds to ALARM after the release that answers `bad`)."""
    from model_container.server.config import ServerConfig
    from tests.model_container.guard_replay import Traffic, detection_seconds, emf_records

    traffic = Traffic(before=HEALTHY, after=bad)
    identity = container_identity(alarm)
    records = emf_records(
        traffic,
        model_name=identity["ModelName"],
        model_version=identity["ModelVersion"],
        interval_s=interval_s or ServerConfig.from_env({}).metrics_interval_s,
        until_s=traffic.release_at_s + 180,
    )
    healthy = [r for r in records if r["_aws"]["Timestamp"] < traffic.release_at_s * 1000]
    return detection_seconds(alarm, healthy, traffic.release_at_s), detection_seconds(
        alarm, records, traffic.release_at_s
    )


@pytest.mark.parametrize("env", ENVS)
def test_guard_alarms_use_10_second_periods_and_the_aws_alarms_1_minute(synthesized, env: str) -> None:
    for alarm in (a["Properties"] for a in synthesized.resources(env, "inference", "AWS::CloudWatch::Alarm").values()):
        stats = [q["MetricStat"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
        periods = {s["Period"] for s in stats} or {alarm["Period"]}
        namespaces = {s["Metric"]["Namespace"] for s in stats} or {alarm["Namespace"]}
        if alarm["AlarmName"] in (f"mlapi-{env}-container-error-rate", f"mlapi-{env}-container-latency-p99"):
            assert periods == {10} and namespaces == {"MlApi/ModelServer"}, alarm["AlarmName"]
        elif any(n.startswith(("AWS/", "/aws/")) for n in namespaces):  # 1-minute metrics: 60 s or a multiple
            assert all(p >= 60 and p % 60 == 0 for p in periods), alarm["AlarmName"]


@pytest.mark.parametrize("interval_s", [None, 10.0])  # the server's default EMF interval, and the longest that fills
@pytest.mark.parametrize("env", ENVS)
def test_a_release_answering_5xx_puts_the_error_guard_in_alarm_within_60_seconds(
    synthesized, env: str, interval_s: float | None
) -> None:
    before, after = detected_after(alarm_named(synthesized, env, "container-error-rate"), (500, 0.4), interval_s)
    assert before == math.inf  # no false alarm before the release
    assert after <= 60, f"error guard in ALARM {after:.0f} s after the release's first errors"


@pytest.mark.parametrize("interval_s", [None, 10.0])
@pytest.mark.parametrize("env", ENVS)
def test_a_slow_release_puts_the_latency_guard_in_alarm_within_60_seconds(
    synthesized, env: str, interval_s: float | None
) -> None:
    alarm = alarm_named(synthesized, env, "container-latency-p99")
    before, after = detected_after(alarm, (200, 2 * alarm["Threshold"]), interval_s)
    assert before == math.inf
    assert after <= 60, f"latency guard in ALARM {after:.0f} s after the release's first slow requests"
    # A release slower than today but within the budget is no reason to roll back.
    assert detected_after(alarm, (200, 0.8 * alarm["Threshold"]), interval_s)[1] == math.inf
