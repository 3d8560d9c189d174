"""Encryption, log destinations and internet paths of one environment, derived from its templates.

An environment is the set of stack templates of one stage (`assembly-<env>`); cross-stack references
(`Fn::ImportValue`) are followed through the other stacks' exports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from scripts.security_report_iam import as_list, render

SAGEMAKER_RUNTIME_URI = re.compile(r":runtime\.sagemaker:path/endpoints/(?P<endpoint>[^/]+)/invocations")
# Resource types that accept traffic from the internet (or give a VPC a way in) besides a REST API.
OTHER_PUBLIC_TYPES = {
    "AWS::Lambda::Url": "Lambda function URL",
    "AWS::ApiGatewayV2::Api": "HTTP/WebSocket API",
    "AWS::CloudFront::Distribution": "CloudFront distribution",
    "AWS::AppSync::GraphQLApi": "AppSync API",
    "AWS::ElasticLoadBalancing::LoadBalancer": "classic load balancer",
    "AWS::EC2::InternetGateway": "internet gateway",
    "AWS::EC2::EIP": "elastic IP",
    "AWS::Transfer::Server": "Transfer server",
}


@dataclass
class Env:
    name: str
    templates: dict[str, dict[str, Any]]  # stack name -> template
    exports: dict[str, tuple[str, Any]] = field(default_factory=dict)  # export name -> (stack, value)

    def __post_init__(self) -> None:
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                name = output.get("Export", {}).get("Name")
                if isinstance(name, str):
                    self.exports[name] = (stack, output.get("Value"))

    def resources(self, cfn_type: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (stack, logical_id, resource)
            for stack, template in self.templates.items()
            for logical_id, resource in template.get("Resources", {}).items()
            if resource.get("Type") == cfn_type
        ]

    def resource(self, stack: str, logical_id: str) -> dict[str, Any] | None:
        return self.templates.get(stack, {}).get("Resources", {}).get(logical_id)

    def target(self, stack: str, value: Any) -> tuple[str, str] | None:
        """(stack, logical id) a Ref / GetAtt / ImportValue points at, following exports."""
        if isinstance(value, dict):
            if "Ref" in value and self.resource(stack, str(value["Ref"])):
                return stack, str(value["Ref"])
            if "Fn::GetAtt" in value and self.resource(stack, str(value["Fn::GetAtt"][0])):
                return stack, str(value["Fn::GetAtt"][0])
            if "Fn::ImportValue" in value and isinstance(value["Fn::ImportValue"], str):
                exported = self.exports.get(value["Fn::ImportValue"])
                if exported:
                    return self.target(exported[0], exported[1])
        return None

    def path(self, stack: str, logical_id: str) -> str:
        resource = self.resource(stack, logical_id) or {}
        return resource.get("Metadata", {}).get("aws:cdk:path", f"{stack}/{logical_id}")

    def describe_key(self, stack: str, value: Any) -> str:
        if value in (None, ""):
            return ""
        target = self.target(stack, value)
        if target:
            kind = (self.resource(*target) or {}).get("Type", "")
            label = "KMS key" if kind == "AWS::KMS::Key" else kind
            return f"{label} {target[1]} ({self.path(*target)})"
        rendered = render(value)
        if rendered.startswith("alias/aws/") or ":alias/aws/" in rendered:
            return f"AWS managed key {rendered}"
        return rendered


def _name(env: Env, stack: str, logical_id: str, prop: str) -> str:
    value = (env.resource(stack, logical_id) or {}).get("Properties", {}).get(prop)
    return render(value) if value is not None else ""


def encryption(env: Env) -> list[dict[str, Any]]:
    """Every data store and the key that encrypts it."""
    rows: list[dict[str, Any]] = []

    def row(stack: str, logical_id: str, kind: str, name: str, key: str, note: str = "") -> None:
        rows.append(
            {
                "type": kind,
                "stack": stack,
                "logical_id": logical_id,
                "path": env.path(stack, logical_id),
                "name": name,
                "key": key,
                "note": note,
            }
        )

    for stack, lid, r in env.resources("AWS::S3::Bucket"):
        props = r.get("Properties", {})
        rules = as_list(props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration"))
        default = rules[0].get("ServerSideEncryptionByDefault", {}) if rules else {}
        algorithm = default.get("SSEAlgorithm", "")
        if algorithm.startswith("aws:kms"):
            key = env.describe_key(stack, default.get("KMSMasterKeyID")) or "AWS managed key aws/s3"
        elif algorithm == "AES256":
            key = "SSE-S3 (S3 managed keys)"
        else:
            key = "SSE-S3 (S3 default)"
        row(stack, lid, "S3 bucket", _name(env, stack, lid, "BucketName"), key)
    for stack, lid, r in env.resources("AWS::DynamoDB::Table"):
        sse = r.get("Properties", {}).get("SSESpecification", {})
        key = (
            env.describe_key(stack, sse.get("KMSMasterKeyId")) or "AWS managed key aws/dynamodb"
            if sse.get("SSEEnabled")
            else "AWS owned key"
        )
        row(stack, lid, "DynamoDB table", _name(env, stack, lid, "TableName"), key)
    for stack, lid, r in env.resources("AWS::SQS::Queue"):
        props = r.get("Properties", {})
        key = env.describe_key(stack, props.get("KmsMasterKeyId")) or (
            "SSE-SQS (SQS managed)" if props.get("SqsManagedSseEnabled", True) else "NONE"
        )
        row(stack, lid, "SQS queue", _name(env, stack, lid, "QueueName"), key)
    for stack, lid, r in env.resources("AWS::SNS::Topic"):
        key = env.describe_key(stack, r.get("Properties", {}).get("KmsMasterKeyId")) or "NONE"
        row(stack, lid, "SNS topic", _name(env, stack, lid, "TopicName"), key)
    for stack, lid, r in env.resources("AWS::Logs::LogGroup"):
        key = env.describe_key(stack, r.get("Properties", {}).get("KmsKeyId")) or "CloudWatch Logs service key"
        row(stack, lid, "log group", _name(env, stack, lid, "LogGroupName"), key)
    for stack, lid, r in env.resources("AWS::SageMaker::EndpointConfig"):
        props = r.get("Properties", {})
        row(
            stack,
            lid,
            "SageMaker endpoint config (instance volume)",
            _name(env, stack, lid, "EndpointConfigName"),
            env.describe_key(stack, props.get("KmsKeyId")) or "SageMaker managed key",
        )
        capture = props.get("DataCaptureConfig")
        if capture:
            row(
                stack,
                lid,
                "SageMaker data capture",
                render(capture.get("DestinationS3Uri", "")),
                env.describe_key(stack, capture.get("KmsKeyId")) or "bucket default",
            )
    for stack, lid, r in env.resources("AWS::CloudTrail::Trail"):
        row(
            stack,
            lid,
            "CloudTrail trail",
            _name(env, stack, lid, "TrailName"),
            env.describe_key(stack, r.get("Properties", {}).get("KMSKeyId")) or "SSE-S3",
        )
    return sorted(rows, key=lambda r: (r["type"], r["path"]))


SAGEMAKER_JOB_LOGS = {
    "/aws/sagemaker/TransformJobs": "SageMaker batch transform jobs",
    "/aws/sagemaker/TrainingJobs": "SageMaker training jobs",
}


def log_destinations(env: Env) -> list[dict[str, Any]]:
    """Every log group (declared or created by a service at run time), its retention, key and writers."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    declared_names: set[str] = set()
    for stack, lid, r in env.resources("AWS::Logs::LogGroup"):
        props = r.get("Properties", {})
        name = render(props["LogGroupName"]) if "LogGroupName" in props else f"(generated) {lid}"
        declared_names.add(name)
        groups[(stack, lid)] = {
            "destination": name,
            "kind": "log group",
            "path": env.path(stack, lid),
            "retention_days": props.get("RetentionInDays"),
            "key": env.describe_key(stack, props.get("KmsKeyId")) or "CloudWatch Logs service key",
            "writers": [],
            "declared": True,
        }

    def writer(stack: str, value: Any, who: str) -> None:
        target = env.target(stack, value)
        if target in groups:
            groups[target]["writers"].append(who)
            return
        rendered = render(value)
        for group in groups.values():
            if group["destination"] != "" and group["destination"] in rendered:
                group["writers"].append(who)
                return

    extra: list[dict[str, Any]] = []
    for stack, lid, r in env.resources("AWS::ApiGateway::Stage"):
        props = r.get("Properties", {})
        stage = f"API stage {props.get('StageName', lid)} ({env.path(stack, lid)})"
        if props.get("AccessLogSetting", {}).get("DestinationArn"):
            writer(stack, props["AccessLogSetting"]["DestinationArn"], f"{stage} access logs")
        levels = {m.get("LoggingLevel", "OFF") for m in as_list(props.get("MethodSettings"))} - {"OFF"}
        execution_prefix = "API-Gateway-Execution-Logs_"
        declared_execution = [
            g
            for g in groups.values()
            if g["destination"].startswith(execution_prefix)
            and g["destination"].endswith(f"/{props.get('StageName', '')}")
        ]
        for execution_group in declared_execution:  # declared by the stack, so that it is encrypted and expires
            execution_group["writers"].append(f"{stage} execution logs ({', '.join(sorted(levels))})")
        if levels and not declared_execution:
            extra.append(
                {
                    "destination": f"API-Gateway-Execution-Logs_<api id>/{props.get('StageName', '')}",
                    "kind": "log group created by API Gateway",
                    "path": env.path(stack, lid),
                    "retention_days": None,
                    "key": "CloudWatch Logs service key",
                    "writers": [f"{stage} execution logs ({', '.join(sorted(levels))})"],
                    "declared": False,
                }
            )
    for stack, lid, r in env.resources("AWS::Lambda::Function"):
        props = r.get("Properties", {})
        who = f"Lambda {render(props.get('FunctionName', lid))}"
        log_group = props.get("LoggingConfig", {}).get("LogGroup")
        if log_group:
            writer(stack, log_group, who)
        else:
            name = f"/aws/lambda/{render(props.get('FunctionName', '<generated name>'))}"
            if name not in declared_names:
                extra.append(
                    {
                        "destination": name,
                        "kind": "log group created by Lambda",
                        "path": env.path(stack, lid),
                        "retention_days": None,
                        "key": "CloudWatch Logs service key",
                        "writers": [who],
                        "declared": False,
                    }
                )
    for stack, lid, r in env.resources("AWS::EC2::FlowLog"):
        props = r.get("Properties", {})
        writer(
            stack, props.get("LogGroupName") or props.get("LogDestination"), f"VPC flow log ({env.path(stack, lid)})"
        )
    for stack, lid, r in env.resources("AWS::CloudTrail::Trail"):
        props = r.get("Properties", {})
        if props.get("CloudWatchLogsLogGroupArn"):
            writer(stack, props["CloudWatchLogsLogGroupArn"], f"CloudTrail {env.path(stack, lid)}")
    for stack, lid, r in env.resources("AWS::StepFunctions::StateMachine"):
        logging = r.get("Properties", {}).get("LoggingConfiguration", {})
        for destination in as_list(logging.get("Destinations")):
            group = destination.get("CloudWatchLogsLogGroup", {}).get("LogGroupArn")
            if group:
                writer(stack, group, f"Step Functions state machine {env.path(stack, lid)}")
    for stack, lid, r in env.resources("AWS::WAFv2::LoggingConfiguration"):
        for destination in as_list(r.get("Properties", {}).get("LogDestinationConfigs")):
            writer(stack, destination, f"WAF web ACL logs ({env.path(stack, lid)})")
    # SageMaker writes a job's logs to a fixed group per account and region ("Log Amazon SageMaker AI Events with
    # Amazon CloudWatch": /aws/sagemaker/TransformJobs, /aws/sagemaker/TrainingJobs): the stack that declares it.
    for group in (g for g in groups.values() if g["destination"] in SAGEMAKER_JOB_LOGS):
        group["writers"].append(SAGEMAKER_JOB_LOGS[group["destination"]])
    for stack, lid, r in env.resources("AWS::SageMaker::Endpoint"):
        name = render(r.get("Properties", {}).get("EndpointName", lid))
        group = f"/aws/sagemaker/Endpoints/{name}"
        for declared in (g for g in groups.values() if g["destination"] == group):
            declared["writers"].append(f"SageMaker endpoint {name} (container stdout/stderr)")
        if group not in declared_names:
            extra.append(
                {
                    "destination": group,
                    "kind": "log group created by SageMaker",
                    "path": env.path(stack, lid),
                    "retention_days": None,
                    "key": "CloudWatch Logs service key",
                    "writers": [f"SageMaker endpoint {name} (container stdout/stderr)"],
                    "declared": False,
                }
            )
    # S3 destinations: server access logs and CloudTrail files; retention from the lifecycle expiration.
    buckets = {(s, lid): r for s, lid, r in env.resources("AWS::S3::Bucket")}
    sinks: dict[tuple[str, str], list[str]] = {}
    for (stack, lid), r in buckets.items():
        destination = r.get("Properties", {}).get("LoggingConfiguration", {}).get("DestinationBucketName")
        if destination:
            target = env.target(stack, destination)
            if target:
                sinks.setdefault(target, []).append(f"S3 access logs of {env.path(stack, lid)}")
    for stack, lid, r in env.resources("AWS::CloudTrail::Trail"):
        target = env.target(stack, r.get("Properties", {}).get("S3BucketName"))
        if target:
            sinks.setdefault(target, []).append(f"CloudTrail log files ({env.path(stack, lid)})")
    for target, writers in sinks.items():
        rules = as_list(buckets[target].get("Properties", {}).get("LifecycleConfiguration", {}).get("Rules"))
        expirations = [rule.get("ExpirationInDays") for rule in rules if rule.get("ExpirationInDays")]
        extra.append(
            {
                "destination": f"S3 bucket {target[1]}",
                "kind": "S3 bucket",
                "path": env.path(*target),
                "retention_days": min(expirations) if expirations else None,
                "key": next((e["key"] for e in encryption(env) if e["logical_id"] == target[1]), ""),
                "writers": writers,
                "declared": True,
            }
        )
    return sorted([*groups.values(), *extra], key=lambda g: (g["kind"], g["destination"]))


def _subnet_exposure(env: Env, subnet: tuple[str, str]) -> list[str]:
    """Why a subnet is reachable from the internet (empty when it is not)."""
    problems = []
    props = (env.resource(*subnet) or {}).get("Properties", {})
    if props.get("MapPublicIpOnLaunch"):
        problems.append("MapPublicIpOnLaunch")
    stack = subnet[0]
    tables = [
        env.target(stack, r.get("Properties", {}).get("RouteTableId"))
        for s, _, r in env.resources("AWS::EC2::SubnetRouteTableAssociation")
        if s == stack and env.target(s, r.get("Properties", {}).get("SubnetId")) == subnet
    ]
    for s, lid, route in env.resources("AWS::EC2::Route"):
        route_props = route.get("Properties", {})
        if env.target(s, route_props.get("RouteTableId")) not in tables:
            continue
        gateway = env.target(s, route_props.get("GatewayId"))
        if gateway and (env.resource(*gateway) or {}).get("Type") == "AWS::EC2::InternetGateway":
            problems.append(f"route {lid} to internet gateway {gateway[1]}")
        elif route_props.get("NatGatewayId"):
            problems.append(f"route {lid} to a NAT gateway (outbound internet)")
    return problems


def _api_resource_path(env: Env, stack: str, resource_ref: Any) -> str:
    parts = []
    target = env.target(stack, resource_ref)
    while target and (env.resource(*target) or {}).get("Type") == "AWS::ApiGateway::Resource":
        props = env.resource(*target)["Properties"]  # type: ignore[index]
        parts.append(props.get("PathPart", "?"))
        target = env.target(target[0], props.get("ParentId"))
    return "/" + "/".join(reversed(parts))


def internet_paths(env: Env) -> dict[str, Any]:
    """Every way in from the internet: paths to the model (WAF -> stage -> method -> endpoint) and anything else."""
    model_paths: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    associations = [(s, r.get("Properties", {})) for s, _, r in env.resources("AWS::WAFv2::WebACLAssociation")]
    endpoints = {
        render(r.get("Properties", {}).get("EndpointName", "")): (s, lid)
        for s, lid, r in env.resources("AWS::SageMaker::Endpoint")
    }
    for stack, api_id, api in env.resources("AWS::ApiGateway::RestApi"):
        types = api.get("Properties", {}).get("EndpointConfiguration", {}).get("Types", ["EDGE"])
        if types == ["PRIVATE"]:
            continue
        stages = [
            (lid, r.get("Properties", {}))
            for s, lid, r in env.resources("AWS::ApiGateway::Stage")
            if s == stack and env.target(s, r.get("Properties", {}).get("RestApiId")) == (stack, api_id)
        ]
        methods = [
            (lid, r.get("Properties", {}))
            for s, lid, r in env.resources("AWS::ApiGateway::Method")
            if s == stack and env.target(s, r.get("Properties", {}).get("RestApiId")) == (stack, api_id)
        ]
        for stage_id, stage in stages:
            acls = [
                env.target(s, p.get("WebACLArn"))
                for s, p in associations
                if s == stack
                and f"${{{api_id}}}" in render(p.get("ResourceArn"))
                and (
                    f"${{{stage_id}}}" in render(p.get("ResourceArn"))
                    or f"/stages/{stage.get('StageName')}" in render(p.get("ResourceArn"))
                )
            ]
            for _method_id, method in methods:
                integration = method.get("Integration", {})
                uri = render(integration.get("Uri", ""))
                route = f"{method.get('HttpMethod')} {_api_resource_path(env, stack, method.get('ResourceId'))}"
                match = SAGEMAKER_RUNTIME_URI.search(uri)
                hop = {
                    "api": env.path(stack, api_id),
                    "endpoint_type": types,
                    "stage": stage.get("StageName"),
                    "method": route,
                    "integration": f"{integration.get('Type')} {uri}",
                    "waf": [env.path(*a) for a in acls if a],
                    "authorization": method.get("AuthorizationType", "NONE")
                    + (" + API key" if method.get("ApiKeyRequired") else ""),
                }
                if integration.get("Type") == "AWS" and match:
                    endpoint_name = match.group("endpoint")
                    problems = [] if hop["waf"] else ["no WAF web ACL on the stage"]
                    endpoint = endpoints.get(endpoint_name)
                    subnets: list[str] = []
                    if endpoint is None:
                        problems.append(f"endpoint {endpoint_name} not in this environment")
                    else:
                        endpoint_props = (env.resource(*endpoint) or {}).get("Properties", {})
                        config = env.target(endpoint[0], endpoint_props.get("EndpointConfigName"))
                        variants = (
                            as_list((env.resource(*config) or {}).get("Properties", {}).get("ProductionVariants"))
                            if config
                            else []
                        )
                        for variant in variants:
                            model = env.target(config[0], variant.get("ModelName")) if config else None  # type: ignore[index]
                            if model is None:  # the variant names its model (the name carries a digest)
                                model = next(
                                    (
                                        (stack, logical_id)
                                        for stack, logical_id, resource in env.resources("AWS::SageMaker::Model")
                                        if resource.get("Properties", {}).get("ModelName") == variant.get("ModelName")
                                    ),
                                    None,
                                )
                            model_props = (env.resource(*model) or {}).get("Properties", {}) if model else {}
                            vpc = model_props.get("VpcConfig")
                            if not vpc:
                                problems.append(f"variant {variant.get('VariantName')}: model not in a VPC")
                                continue
                            if not model_props.get("EnableNetworkIsolation"):
                                problems.append(f"variant {variant.get('VariantName')}: no network isolation")
                            for subnet_ref in as_list(vpc.get("Subnets")):
                                subnet = env.target(model[0], subnet_ref)  # type: ignore[index]
                                if subnet is None:
                                    problems.append(f"subnet {render(subnet_ref)} not found")
                                    continue
                                subnets.append(env.path(*subnet))
                                problems += [f"{env.path(*subnet)}: {p}" for p in _subnet_exposure(env, subnet)]
                    model_paths.append(
                        {
                            **hop,
                            "sagemaker_endpoint": endpoint_name,
                            "endpoint_path": env.path(*endpoint) if endpoint else "",
                            "endpoint_subnets": subnets,
                            "problems": problems,
                            "summary": " -> ".join(
                                [
                                    f"WAF {', '.join(hop['waf']) or 'NONE'}",
                                    f"API Gateway {types[0].lower()} stage {hop['stage']} {route}",
                                    "SageMaker runtime InvokeEndpoint (AWS integration)",
                                    f"endpoint {endpoint_name} (private subnets: {len(subnets)})",
                                ]
                            ),
                        }
                    )
                else:
                    other.append({"kind": "API method not integrated with the model", **hop})
    for cfn_type, label in OTHER_PUBLIC_TYPES.items():
        for stack, lid, _ in env.resources(cfn_type):
            other.append({"kind": label, "path": env.path(stack, lid)})
    for stack, lid, r in env.resources("AWS::ElasticLoadBalancingV2::LoadBalancer"):
        if r.get("Properties", {}).get("Scheme", "internet-facing") == "internet-facing":
            other.append({"kind": "internet-facing load balancer", "path": env.path(stack, lid)})
    for stack, lid, r in env.resources("AWS::Lambda::Permission"):
        props = r.get("Properties", {})
        if props.get("Principal") == "*" or props.get("FunctionUrlAuthType"):
            other.append({"kind": "Lambda permission open to any principal", "path": env.path(stack, lid)})
    for stack, lid, _ in env.resources("AWS::EC2::Subnet"):
        exposure = _subnet_exposure(env, (stack, lid))
        if any("internet gateway" in p or p == "MapPublicIpOnLaunch" for p in exposure):
            other.append({"kind": "public subnet", "path": env.path(stack, lid), "why": exposure})
    return {"serves_model": bool(endpoints), "model_paths": model_paths, "other_entry_points": other}
