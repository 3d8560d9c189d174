"""Monthly cost estimate per environment, read from the synthesized templates and a dated price table.

    python -m scripts.cost_estimate --cloud-assembly cdk.out [--prices docs/prices/eu-west-1.json] [--rps 50]
        [--env dev,staging,prod] [--json]

For each environment (the cloud assembly's `assembly-<env>` stage) it prices what the templates declare: endpoint
instance hours (autoscaling bounds and target), serverless inference, interface VPC endpoints per AZ-hour, API
Gateway requests, WAF, CloudWatch alarms, dashboards and logs (ingestion and storage at the configured retention
and request-log sampling), data capture to S3, the scheduled drift job, Model Monitor's scheduled processing jobs,
KMS keys, CloudTrail data events and DynamoDB. Each line says its assumption; usage figures (bytes per request,
log line sizes, run times, ...) are in the price table's `usage`. A resource type that is neither priced nor listed
in FREE or UNPRICED fails the run, so a new billable resource cannot go unseen (tests/infra/test_cost_coverage.py
checks the whole app, shipped and variant).

Exit codes: 0 printed, 2 unusable input (no such assembly, price table missing a price, unknown resource type).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECONDS_PER_MONTH = 730 * 3600
GB = 1024**3
DEFAULT_PRICES = Path(__file__).resolve().parents[1] / "docs" / "prices" / "eu-west-1.json"

# No charge of their own (configuration objects, or billed through a resource priced here).
FREE = frozenset(
    {
        "AWS::ApiGateway::Account",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::GatewayResponse",
        "AWS::ApiGateway::Method",
        "AWS::ApiGateway::Model",
        "AWS::ApiGateway::RequestValidator",
        "AWS::ApiGateway::Resource",
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::CDK::Metadata",
        "AWS::EC2::RouteTable",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::Subnet",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::VPC",
        "AWS::EC2::FlowLog",
        "AWS::Events::Rule",
        "AWS::IAM::ManagedPolicy",
        "AWS::IAM::Policy",
        "AWS::IAM::Role",
        "AWS::KMS::Alias",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::Lambda::Permission",
        "AWS::S3::BucketPolicy",
        "AWS::SNS::Subscription",
        "AWS::SNS::TopicPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SageMaker::Model",
        "AWS::SageMaker::Endpoint",
        "AWS::SageMaker::ModelPackageGroup",
        "AWS::WAFv2::LoggingConfiguration",
        "AWS::WAFv2::WebACLAssociation",
        "AWS::CodeStarNotifications::NotificationRule",
        "Custom::AWS",
        "Custom::VpcRestrictDefaultSG",
        "AWS::Budgets::Budget",
        "AWS::CE::AnomalyMonitor",
        "AWS::CE::AnomalySubscription",
        "AWS::EC2::VPCEndpoint",
        "AWS::ECS::Cluster",  # no charge of its own; the drift task's runs are priced by `scheduled_jobs`
        "AWS::ECS::TaskDefinition",
        "AWS::SSM::Parameter",  # standard tier (the training runner's job arguments): no charge
        # Model Monitor's job definitions cost nothing until a MonitoringSchedule runs them (priced by `monitoring`).
        *(
            f"AWS::SageMaker::{kind}JobDefinition"
            for kind in ("DataQuality", "ModelQuality", "ModelBias", "ModelExplainability")
        ),
    }
)  # VPCEndpoint: gateway endpoints are free; interface endpoints are priced by `interface_endpoints`.
# Billed, but by use this estimate cannot know; the reason is printed with the table.
UNPRICED = {
    "AWS::S3::Bucket": "storage of artifacts, reports and logs depends on what you keep (capture is priced)",
    "AWS::Lambda::Function": "event-driven functions run a few thousand times a month (the drift job is priced)",
    "AWS::SNS::Topic": "alarm and release notices: well under a million publishes a month",
    "AWS::SQS::Queue": "dead-letter queues: empty unless something fails",
    "AWS::CodeBuild::Project": "billed per build minute: depends on how often you commit",
    "AWS::CodePipeline::Pipeline": "billed per action-minute (V2): depends on how often you commit",
    "AWS::StepFunctions::StateMachine": "billed per state transition: a few per pipeline run",
}


@dataclass(frozen=True)
class Line:
    """One priced item: monthly cost at idle and at the given request rate, with its assumption."""

    item: str
    idle: float
    busy: float
    assumption: str


class EstimateError(Exception):
    """An assembly, price table or template the estimate cannot use (exit 2)."""


class Environment:
    """The resources of one environment's stacks, and the usage figures of the run."""

    def __init__(self, name: str, templates: list[dict[str, Any]], prices: dict[str, Any], rps: float) -> None:
        self.name, self.prices, self.rps = name, prices, rps
        self.resources = [r for t in templates for r in t.get("Resources", {}).values()]
        self.usage: dict[str, float] = prices["usage"]

    def of_type(self, kind: str) -> Iterator[dict[str, Any]]:
        return (r.get("Properties", {}) for r in self.resources if r["Type"] == kind)

    def price(self, key: str) -> float:
        if key not in self.prices:
            raise EstimateError(f"the price table has no {key!r}")
        return float(self.prices[key])

    @property
    def hours(self) -> float:
        return float(self.prices.get("hours_per_month", 730))

    def requests(self, busy: bool) -> float:
        return self.rps * SECONDS_PER_MONTH if busy else 0.0


def _scaling(env: Environment) -> tuple[int | None, int | None, float | None]:
    """(min, max, requests/s per instance) of the endpoint's autoscaling, when it has one."""
    targets = list(env.of_type("AWS::ApplicationAutoScaling::ScalableTarget"))
    per_instance = None
    for policy in env.of_type("AWS::ApplicationAutoScaling::ScalingPolicy"):
        config = policy.get("TargetTrackingScalingPolicyConfiguration", {})
        predefined = config.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
        if predefined == "SageMakerVariantInvocationsPerInstance":  # invocations per instance per minute
            per_instance = float(config["TargetValue"]) / 60
    if not targets:
        return None, None, per_instance
    return int(targets[0]["MinCapacity"]), int(targets[0]["MaxCapacity"]), per_instance


def endpoint_instances(env: Environment) -> Iterator[Line]:
    low, high, per_instance = _scaling(env)
    for config in env.of_type("AWS::SageMaker::EndpointConfig"):
        for variant in config.get("ProductionVariants", []):
            if "ServerlessConfig" in variant:
                yield _serverless(env, variant["ServerlessConfig"])
                continue
            kind = variant["InstanceType"]
            hourly = env.prices["sagemaker_hosting_per_hour"].get(kind)
            if hourly is None:
                raise EstimateError(f"no hosting price for {kind} in the price table (sagemaker_hosting_per_hour)")
            idle_count = low if low is not None else int(variant["InitialInstanceCount"])
            busy_count, note = idle_count, f"{idle_count} instance(s) (autoscaling minimum)"
            if per_instance and high is not None:
                needed = math.ceil(env.rps / per_instance) if env.rps else 0
                busy_count = min(high, max(idle_count, needed))
                note += f"; at {env.rps:g} req/s {busy_count} at the target {per_instance:g} req/s per instance"
                if needed > high:
                    note += f" (needs {needed}: over max_capacity {high})"
            cost = hourly * env.hours
            yield Line(f"endpoint {kind}", idle_count * cost, busy_count * cost, f"{hourly} USD/h; {note}")


def _serverless(env: Environment, config: dict[str, Any]) -> Line:
    memory_gb = float(config["MemorySizeInMB"]) / 1024
    seconds = env.usage.get("serverless_seconds_per_request", 0.02)
    busy = env.requests(True) * seconds * memory_gb * env.price("sagemaker_serverless_per_gb_second")
    return Line("serverless inference", 0.0, busy, f"{memory_gb:g} GB, {seconds} s per request, nothing when idle")


def interface_endpoints(env: Environment) -> Iterator[Line]:
    count, az_hours = 0, 0.0
    for endpoint in env.of_type("AWS::EC2::VPCEndpoint"):
        if endpoint.get("VpcEndpointType") == "Interface":
            count += 1
            az_hours += len(endpoint.get("SubnetIds", [])) * env.hours
    if count:
        cost = az_hours * env.price("interface_endpoint_per_az_hour")
        note = (
            f"{count} interface endpoints, {az_hours / env.hours:g} endpoint-AZs; data processed not counted "
            "(serving traffic does not cross them)"
        )
        yield Line("interface VPC endpoints", cost, cost, note)


def api_requests(env: Environment) -> Iterator[Line]:
    for _ in env.of_type("AWS::ApiGateway::RestApi"):
        per_million = env.price("api_gateway_rest_per_million")
        yield Line("API Gateway REST", 0.0, env.requests(True) / 1e6 * per_million, f"{per_million} USD per million")


def firewall(env: Environment) -> Iterator[Line]:
    for acl in env.of_type("AWS::WAFv2::WebACL"):
        rules = len(acl.get("Rules", []))
        fixed = env.price("waf_web_acl_per_month") + rules * env.price("waf_rule_per_month")
        busy = fixed + env.requests(True) / 1e6 * env.price("waf_per_million_requests")
        yield Line("WAF web ACL", fixed, busy, f"1 web ACL, {rules} rules (AWS managed groups without extra fees)")


def alarms(env: Environment) -> Iterator[Line]:
    standard = high = 0
    for alarm in env.of_type("AWS::CloudWatch::Alarm"):
        metrics = [m for m in alarm.get("Metrics", []) if "MetricStat" in m] or [alarm]
        for metric in metrics:
            period = metric.get("MetricStat", {}).get("Period", metric.get("Period", 60))
            if int(period) < 60:
                high += 1
            else:
                standard += 1
    if standard or high:
        cost = standard * env.price("cloudwatch_alarm_standard_per_metric_month") + high * env.price(
            "cloudwatch_alarm_high_resolution_per_metric_month"
        )
        yield Line("CloudWatch alarms", cost, cost, f"{standard} standard and {high} high-resolution alarm metrics")


def _per_resource(env: Environment, kind: str, item: str, price_key: str, note: str) -> Iterator[Line]:
    """A flat monthly price per resource of `kind` (dashboards, keys)."""
    count = sum(1 for _ in env.of_type(kind))
    if count:
        cost = count * env.price(price_key)
        yield Line(item, cost, cost, f"{count} {note}")


def dashboards(env: Environment) -> Iterator[Line]:
    note = "dashboard(s); an account's first 3 are free"
    yield from _per_resource(
        env, "AWS::CloudWatch::Dashboard", "CloudWatch dashboards", "cloudwatch_dashboard_per_month", note
    )


def _request_log_share(env: Environment) -> float:
    for model in env.of_type("AWS::SageMaker::Model"):
        variables = model.get("PrimaryContainer", {}).get("Environment", {})
        return float(variables.get("MODEL_SERVER_REQUEST_LOG_SAMPLE", 1))
    return 0.0


def _log_bytes_per_request(env: Environment, name: str) -> tuple[float, str]:
    """Bytes a request adds to a log group, by what the group collects (from its name)."""
    lowered = name.lower()
    if "/aws/sagemaker/endpoints/" in lowered or "modellogs" in lowered:
        share = _request_log_share(env)
        return share * env.usage["request_log_line_bytes"], f"container request log at {share:.0%} sampling"
    if "access" in lowered:
        return env.usage["access_log_line_bytes"], "API access log, every request"
    if "waf" in lowered or "firewall" in lowered:
        return env.usage["waf_log_line_bytes"], "WAF log, every request (no logging filter)"
    if "flow" in lowered:
        return env.usage[
            "flow_log_bytes_per_request"
        ], "VPC flow log (invocations reach the instances over SageMaker's network, assumed not in it)"
    return 0.0, "event-driven"


def _log_month(env: Environment, per_request: float, retention_months: float, *, busy: bool) -> float:
    ingested = env.usage["idle_log_gb_per_month_per_group"] + env.requests(busy) * per_request / GB
    stored = ingested * env.usage.get("logs_compression_ratio", 0.15) * retention_months
    return ingested * env.price("logs_ingestion_per_gb") + stored * env.price("logs_storage_per_gb_month")


def logs(env: Environment) -> Iterator[Line]:
    """Ingestion at the request rate plus a small idle volume; storage in steady state at the group's retention."""
    for resource in (r for r in env.resources if r["Type"] == "AWS::Logs::LogGroup"):
        props, label = resource.get("Properties", {}), resource.get("_logical_id", "log group")
        per_request, what = _log_bytes_per_request(env, json.dumps(props.get("LogGroupName", "")) + label)
        retention_months = float(props.get("RetentionInDays", 3653)) / 30
        yield Line(
            f"logs {label}",
            _log_month(env, per_request, retention_months, busy=False),
            _log_month(env, per_request, retention_months, busy=True),
            f"{what}; {retention_months * 30:g} days kept",
        )


def data_capture(env: Environment) -> Iterator[Line]:
    for config in env.of_type("AWS::SageMaker::EndpointConfig"):
        capture = config.get("DataCaptureConfig")
        if not capture or not capture.get("EnableCapture", True):
            continue
        share = float(capture.get("InitialSamplingPercentage", 100)) / 100
        written = env.requests(True) * share * env.usage["capture_record_bytes"] / GB
        puts = env.usage["capture_objects_per_hour"] * env.hours / 1000 * env.price("s3_put_per_thousand")
        busy = written * env.price("s3_standard_per_gb_month") + (puts if env.rps else 0.0)
        yield Line("data capture to S3", 0.0, busy, f"{share:.0%} of requests captured, one month kept")


def scheduled_jobs(env: Environment) -> Iterator[Line]:
    functions = {
        r["_logical_id"]: r.get("Properties", {}) for r in env.resources if r["Type"] == "AWS::Lambda::Function"
    }
    tasks = {
        r["_logical_id"]: r.get("Properties", {}) for r in env.resources if r["Type"] == "AWS::ECS::TaskDefinition"
    }
    for rule in env.of_type("AWS::Events::Rule"):
        schedule = rule.get("ScheduleExpression", "")
        if not schedule.startswith("cron(5 *"):  # the hourly drift job (ml_constructs/drift_monitor.py)
            continue
        for target in rule.get("Targets", []):
            if "EcsParameters" in target:  # monitoring.runner fargate: the same job as an ECS Fargate task
                yield from _fargate_run(env, tasks, target["EcsParameters"])
                continue
            function = functions.get(str(target.get("Arn", {}).get("Fn::GetAtt", [""])[0]))
            if function is None:
                continue
            memory_gb = float(function.get("MemorySize", 128)) / 1024
            seconds = env.usage["drift_run_seconds"]
            cost = env.hours * seconds * memory_gb * env.price("lambda_per_gb_second")
            yield Line("drift job (hourly Lambda)", cost, cost, f"{seconds:g} s a run at {memory_gb:g} GB")


# SageMaker Developer Guide, "The cron expression for monitoring schedule" (model-monitor-schedule-expression):
# hourly cron(0 * ? * * *), daily cron(0 H ? * * *), every N hours from H cron(0 H/N ? * * *), or NOW (one run).
_MONITOR_CRON = re.compile(r"cron\(0 (?P<hours>\*|\d{1,2}|\d{1,2}/\d{1,2}) \? \* \* \*\)")
_JOB_DEFINITIONS = tuple(
    f"AWS::SageMaker::{kind}JobDefinition"
    for kind in ("DataQuality", "ModelQuality", "ModelBias", "ModelExplainability")
)


def monitor_runs_per_month(expression: str, hours_per_month: float) -> tuple[float, str]:
    """Runs a month of a Model Monitor schedule expression, and how it reads it."""
    if expression == "NOW":
        return 1.0, "NOW: one run, not recurring"
    match = _MONITOR_CRON.fullmatch(expression.strip())
    if match is None:
        raise EstimateError(f"schedule expression {expression!r} is none of Model Monitor's hourly/daily forms")
    days = hours_per_month / 24
    hours = match["hours"]
    if hours == "*":
        return 24 * days, "hourly"
    if "/" in hours:
        start, step = (int(part) for part in hours.split("/"))
        if not 0 <= start <= 23 or not 1 <= step <= 24:
            raise EstimateError(f"schedule expression {expression!r}: hours {hours} out of range")
        per_day = math.ceil(24 / step)  # "every N hours" (the guide's reading), whatever hour it starts at
        return per_day * days, f"every {step} h from {start}:00 UTC, {per_day} a day"
    return days, "daily"


def monitoring(env: Environment) -> Iterator[Line]:
    """Each MonitoringSchedule runs a processing job on its job definition's cluster (instance type and count) per
    schedule interval; a run is billed per instance-second for its run time, assumed in usage."""
    definitions: dict[str, dict[str, Any]] = {}
    for resource in (r for r in env.resources if r["Type"] in _JOB_DEFINITIONS):
        props = resource.get("Properties", {})
        definitions[resource["_logical_id"]] = props
        if isinstance(props.get("JobDefinitionName"), str):
            definitions[props["JobDefinitionName"]] = props
    seconds = float(env.usage["model_monitor_run_seconds"])
    for resource in (r for r in env.resources if r["Type"] == "AWS::SageMaker::MonitoringSchedule"):
        schedule = resource.get("Properties", {})
        config = schedule.get("MonitoringScheduleConfig", {})
        name = schedule.get("MonitoringScheduleName")
        name = name if isinstance(name, str) else resource.get("_logical_id", "monitoring schedule")
        if "MonitoringJobDefinition" in config:  # inline definition
            definition = config["MonitoringJobDefinition"]
            resources, stopping = definition.get("MonitoringResources", {}), definition.get("StoppingCondition", {})
        else:
            reference = config.get("MonitoringJobDefinitionName")
            if isinstance(reference, dict):  # {"Fn::GetAtt": [logical id, "JobDefinitionName"]} or {"Ref": ...}
                reference = (reference.get("Fn::GetAtt") or [reference.get("Ref")])[0]
            definition = definitions.get(str(reference))
            if definition is None:
                raise EstimateError(f"{name}: no job definition {reference!r} in the environment's templates")
            resources, stopping = definition.get("JobResources", {}), definition.get("StoppingCondition", {})
        cluster = resources.get("ClusterConfig", {})
        kind, count = cluster.get("InstanceType"), int(cluster.get("InstanceCount", 1))
        hourly = env.prices.get("sagemaker_processing_per_hour", {}).get(kind)
        if hourly is None:
            raise EstimateError(f"no processing price for {kind} in the price table (sagemaker_processing_per_hour)")
        expression = config.get("ScheduleConfig", {}).get("ScheduleExpression", "")
        runs, how = monitor_runs_per_month(str(expression), env.hours)
        cost = runs * count * hourly * seconds / 3600
        note = f"{runs:g} runs ({how}) x {count} {kind} at {hourly} USD/h, {seconds:g} s a run assumed"
        note += " (usage.model_monitor_run_seconds"
        if "MaxRuntimeInSeconds" in stopping:
            cap = float(stopping["MaxRuntimeInSeconds"])
            note += f"; {runs * count * hourly * cap / 3600:.2f} if every run took its {cap:g} s cap"
        note += ")"
        yield Line(f"Model Monitor {name}", cost, cost, note)


def _fargate_run(env: Environment, tasks: dict[str, dict[str, Any]], ecs: dict[str, Any]) -> Iterator[Line]:
    """An hourly Fargate run of the task definition: vCPU-hours and GB-hours for the run time (per second)."""
    reference = ecs.get("TaskDefinitionArn", {})
    task = tasks.get(str(reference.get("Ref", "")) if isinstance(reference, dict) else "")
    if task is None:
        raise EstimateError(f"scheduled ECS target's task definition {reference!r} is not in the environment")
    vcpus, memory_gb = float(task["Cpu"]) / 1024, float(task["Memory"]) / 1024
    seconds = env.usage["drift_run_seconds"]
    hourly = vcpus * env.price("fargate_vcpu_per_hour") + memory_gb * env.price("fargate_gb_per_hour")
    cost = env.hours * hourly * max(seconds, 60) / 3600  # Fargate bills per second, at least a minute
    note = f"{seconds:g} s a run, {vcpus:g} vCPU and {memory_gb:g} GB (Linux x86, 20 GB ephemeral storage included)"
    yield Line("drift job (hourly Fargate task)", cost, cost, note)


def keys(env: Environment) -> Iterator[Line]:
    note = "customer-managed keys; requests not counted"
    yield from _per_resource(env, "AWS::KMS::Key", "KMS keys", "kms_key_per_month", note)


def trails(env: Environment) -> Iterator[Line]:
    for trail in env.of_type("AWS::CloudTrail::Trail"):
        selectors = trail.get("EventSelectors", []) + trail.get("AdvancedEventSelectors", [])
        data_events = any("DataResources" in s or "FieldSelectors" in s for s in selectors)
        puts = env.usage["capture_objects_per_hour"] * env.hours if data_events and env.rps else 0.0
        busy = puts / 1e5 * env.price("cloudtrail_data_events_per_100k")
        yield Line("CloudTrail", 0.0, busy, "management events: first copy free; data events on capture writes")


def tables(env: Environment) -> Iterator[Line]:
    count = sum(1 for t in env.of_type("AWS::DynamoDB::Table") if t.get("BillingMode") == "PAY_PER_REQUEST")
    if count:
        writes = 12 * 24 * 31  # the release recorder's 5-minute promotion check writes at most once a run
        cost = count * writes / 1e6 * env.price("dynamodb_write_per_million")
        yield Line("DynamoDB on demand", cost, cost, f"{count} tables, ~{writes} writes each a month")


PRICERS: dict[str, Callable[[Environment], Iterator[Line]]] = {
    "AWS::SageMaker::EndpointConfig": endpoint_instances,
    "AWS::EC2::VPCEndpoint": interface_endpoints,
    "AWS::ApiGateway::RestApi": api_requests,
    "AWS::WAFv2::WebACL": firewall,
    "AWS::CloudWatch::Alarm": alarms,
    "AWS::CloudWatch::Dashboard": dashboards,
    "AWS::Logs::LogGroup": logs,
    "AWS::Events::Rule": scheduled_jobs,
    "AWS::SageMaker::MonitoringSchedule": monitoring,
    "AWS::KMS::Key": keys,
    "AWS::CloudTrail::Trail": trails,
    "AWS::DynamoDB::Table": tables,
}
EXTRA_PRICERS = (data_capture,)  # priced from a property of a resource priced above


def unknown_types(types: set[str]) -> list[str]:
    return sorted(types - FREE - set(UNPRICED) - set(PRICERS))


def estimate(env: Environment) -> tuple[list[Line], dict[str, str]]:
    """The priced lines and the unpriced resource types (with reasons) of one environment."""
    types = {r["Type"] for r in env.resources}
    unknown = unknown_types(types)
    if unknown:
        raise EstimateError(f"{env.name}: resource types neither priced nor listed: {', '.join(unknown)}")
    lines = [line for kind, pricer in PRICERS.items() if kind in types for line in pricer(env)]
    lines += [line for pricer in EXTRA_PRICERS for line in pricer(env)]
    return lines, {kind: reason for kind, reason in UNPRICED.items() if kind in types}


def load_environment(assembly: Path, name: str, prices: dict[str, Any], rps: float) -> Environment:
    stage = assembly / f"assembly-{name}"
    if not stage.is_dir():
        raise EstimateError(f"{stage} not found: synthesize first (make synth)")
    templates = []
    for path in sorted(stage.glob("*.template.json")):
        template = json.loads(path.read_text())
        for logical_id, resource in template.get("Resources", {}).items():
            resource["_logical_id"] = logical_id
        templates.append(template)
    return Environment(name, templates, prices, rps)


def render(env: Environment, lines: list[Line], unpriced: dict[str, str]) -> str:
    width = max(len(line.item) for line in lines) if lines else 10
    rows = [f"## {env.name}: monthly estimate, USD ({env.prices['region']}, prices as of {env.prices['as_of']})"]
    rows.append(f"{'item':<{width}}  {'idle':>9}  {f'{env.rps:g} req/s':>11}  assumption")
    for line in sorted(lines, key=lambda x: -x.busy):
        rows.append(f"{line.item:<{width}}  {line.idle:9.2f}  {line.busy:11.2f}  {line.assumption}")
    rows.append(f"{'total':<{width}}  {sum(x.idle for x in lines):9.2f}  {sum(x.busy for x in lines):11.2f}")
    rows += [f"  not priced: {kind}: {reason}" for kind, reason in unpriced.items()]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cloud-assembly", type=Path, default=Path("cdk.out"))
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES)
    parser.add_argument("--rps", type=float, default=50.0, help="average requests per second over the month")
    parser.add_argument("--env", default="dev,staging,prod")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.rps < 0:
            raise EstimateError("--rps must be zero or more")
        prices = json.loads(args.prices.read_text())
        results = []
        for name in [n.strip() for n in args.env.split(",") if n.strip()]:
            env = load_environment(args.cloud_assembly, name, prices, args.rps)
            results.append((env, *estimate(env)))
    except (EstimateError, OSError, ValueError, KeyError) as error:
        print(f"cost_estimate: {error}", file=sys.stderr)
        return 2
    if args.json:
        out = {
            env.name: {"lines": [line.__dict__ for line in lines], "unpriced": unpriced}
            for env, lines, unpriced in results
        }
        print(json.dumps(out, indent=2))
    else:
        print("\n\n".join(render(env, lines, unpriced) for env, lines, unpriced in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
