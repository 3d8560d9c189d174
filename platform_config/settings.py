"""Typed settings of one environment, as read from the `ml-platform` context in cdk.json."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from platform_config.loader import ConfigError, check

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SEMVER = re.compile(r"\d+\.\d+\.\d+([-+][\w.]+)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class NetworkSettings:
    """VPC layout: CIDR, explicit AZs (no lookups at synth), optional NAT, flow log retention."""

    availability_zones: tuple[str, ...]
    cidr: str = "10.40.0.0/16"
    nat_gateways: int = 0
    flow_log_retention_days: int = 365

    def __post_init__(self) -> None:
        try:
            network = ipaddress.ip_network(self.cidr)
        except ValueError as error:
            raise ConfigError("cidr", str(error)) from error
        check(16 <= network.prefixlen <= 24, "cidr", "prefix must be between /16 and /24")
        check(len(self.availability_zones) >= 2, "availability_zones", "needs at least two AZs")
        check(
            len(set(self.availability_zones)) == len(self.availability_zones),
            "availability_zones",
            "contains duplicates",
        )
        check(
            0 <= self.nat_gateways <= len(self.availability_zones),
            "nat_gateways",
            "must be between 0 and the number of AZs",
        )
        check(
            self.flow_log_retention_days in LOG_RETENTION_DAYS,
            "flow_log_retention_days",
            f"must be one of CloudWatch's retention periods {LOG_RETENTION_DAYS}",
        )


@dataclass(frozen=True)
class DataSettings:
    """Stateful stores: lifecycle of artifacts and capture data, removal, audit trail."""

    removal_policy: Literal["retain", "destroy"] = "retain"
    noncurrent_artifacts_to_glacier_days: int = 30
    noncurrent_artifacts_expire_days: int = 365
    capture_expire_days: int = 90
    access_logs_expire_days: int = 365
    log_retention_days: int = 365
    organization_trail_exists: bool = False

    def __post_init__(self) -> None:
        check(
            self.noncurrent_artifacts_to_glacier_days >= 1, "noncurrent_artifacts_to_glacier_days", "must be at least 1"
        )
        check(
            self.noncurrent_artifacts_expire_days > self.noncurrent_artifacts_to_glacier_days + 90,
            "noncurrent_artifacts_expire_days",
            "must exceed noncurrent_artifacts_to_glacier_days by more than 90 (Glacier's minimum storage)",
        )
        check(self.capture_expire_days >= 1, "capture_expire_days", "must be at least 1")
        check(self.access_logs_expire_days >= 1, "access_logs_expire_days", "must be at least 1")
        check(
            self.log_retention_days in LOG_RETENTION_DAYS,
            "log_retention_days",
            f"must be one of CloudWatch's retention periods {LOG_RETENTION_DAYS}",
        )


@dataclass(frozen=True)
class EnvironmentSettings:
    """Everything one deployment environment (dev, staging, prod) is built from."""

    name: str
    project: str
    region: str
    network: NetworkSettings
    account: str | None = None
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSource = field(default_factory=lambda: ModelSource())
    endpoint: EndpointSettings = field(default_factory=lambda: EndpointSettings())
    api: ApiSettings = field(default_factory=lambda: ApiSettings())
    alarms: AlarmSettings = field(default_factory=lambda: AlarmSettings())
    deployment: DeploymentSettings = field(default_factory=lambda: DeploymentSettings())
    lambdas: LambdaSettings = field(default_factory=lambda: LambdaSettings())
    monitoring: MonitoringSettings = field(default_factory=lambda: MonitoringSettings())
    batch: BatchSettings = field(default_factory=lambda: BatchSettings())
    cost: CostSettings = field(default_factory=lambda: CostSettings())
    alarm_emails: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(
            bool(re.fullmatch(r"[a-z][a-z0-9-]{1,20}", self.project)),
            "project",
            "must be 2-21 lowercase letters, digits or dashes, starting with a letter",
        )
        check(
            bool(re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", self.region)),
            "region",
            f"{self.region!r} is not an AWS region name",
        )
        if self.account is not None:
            check(bool(re.fullmatch(r"\d{12}", self.account)), "account", "must be 12 digits")
        for index, zone in enumerate(self.network.availability_zones):
            check(
                bool(re.fullmatch(re.escape(self.region) + r"[a-z]", zone)),
                f"network.availability_zones[{index}]",
                f"{zone!r} is not an AZ of {self.region}",
            )
        for index, email in enumerate(self.alarm_emails):
            check(bool(_EMAIL.match(email)), f"alarm_emails[{index}]", f"{email!r} is not an email address")
        self._check_traffic_step()

    def _check_traffic_step(self) -> None:
        # SageMaker API reference, TrafficRoutingConfig: CanarySize "must be less than or equal to 50% of the
        # variant's total instance count", LinearStepSize "must be 10-50%". A step turns on whole instances,
        # at least one; rounding a percentage up is our conservative reading (SageMaker does not document it).
        # Checked at min_capacity too: autoscaling may hold the variant there when an update starts.
        routing = self.deployment.traffic_routing
        if routing == "ALL_AT_ONCE":
            return
        percent = self.deployment.canary_percent if routing == "CANARY" else self.deployment.linear_step_percent
        percent_key = "deployment.canary_percent" if routing == "CANARY" else "deployment.linear_step_percent"
        for count_key in ("min_capacity", "initial_instance_count"):
            count = getattr(self.endpoint, count_key)
            step = max(1, math.ceil(percent * count / 100))
            check(
                2 * step <= count,
                "deployment.traffic_routing",
                f"{routing} with {percent_key} = {percent} turns on {step} of endpoint.{count_key} = {count} "
                "instance(s), over the 50 % SageMaker allows (TrafficRoutingConfig): raise endpoint.min_capacity "
                "and endpoint.initial_instance_count to 2 or more, or set deployment.traffic_routing to ALL_AT_ONCE",
            )

    def resource_prefix(self) -> str:
        return f"{self.project}-{self.name}"


LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


# The default model.source: the bundled breast-cancer example (model_container/models/breast_cancer).
DEFAULT_MODEL_TRAIN = "model_container.models.breast_cancer.train:train"
DEFAULT_MODEL_DATA = "model_container.models.breast_cancer.train:load"
_ENTRY_POINT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class ModelSourceSpec:
    """`model.source`: a training entry point and its data (`train` + `data`), or a pre-built `package` (a
    directory or s3://bucket/prefix/ holding model.onnx and metadata.json). model_container/build_model.py reads
    the same key from cdk.json directly (the training image has no CDK); README "Bring your own model"."""

    train: str | None = None
    data: str | None = None
    package: str | None = None

    def __post_init__(self) -> None:
        if self.package is not None:
            check(self.train is None and self.data is None, "package", "a pre-built package takes no train or data")
            if self.package.startswith("s3://"):
                check(
                    bool(re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?", self.package)),
                    "package",
                    "must be s3://bucket/prefix/ (the prefix holding model.onnx and metadata.json)",
                )
            return
        check(self.train is not None, "train", "is required (or give package alone)")
        check(self.data is not None, "data", "is required with train: 'package.module:function' or a CSV path/URI")
        check(bool(_ENTRY_POINT.fullmatch(str(self.train))), "train", "must be 'package.module:function'")

    @property
    def is_package(self) -> bool:
        return self.package is not None

    @property
    def package_s3_uri(self) -> str | None:
        """The S3 prefix of a pre-built package (ending in '/'), None otherwise."""
        if self.package is None or not self.package.startswith("s3://"):
            return None
        return self.package if self.package.endswith("/") else self.package + "/"

    def as_dict(self) -> dict[str, str]:
        """The JSON form build_model takes (--source, the images' MODEL_SOURCE build arg)."""
        if self.package is not None:
            return {"package": self.package}
        return {"train": str(self.train), "data": str(self.data)}


@dataclass(frozen=True)
class ModelSource:
    """The `model` section: where the model comes from (`source`), where `make model` leaves its package
    (`artifact_dir`, the CDK asset of the endpoint's model data), and an optional pre-built serving image."""

    # Keys of earlier releases, refused with what replaced them (platform_config.loader.build).
    REMOVED_KEYS: ClassVar[Mapping[str, str]] = {
        "model_data_s3_uri": "is removed: give a pre-built package as model.source.package (a directory or "
        "s3://bucket/prefix/ with model.onnx and metadata.json); `make model` installs it into model.artifact_dir",
    }

    source: ModelSourceSpec = field(
        default_factory=lambda: ModelSourceSpec(train=DEFAULT_MODEL_TRAIN, data=DEFAULT_MODEL_DATA)
    )
    artifact_dir: str = "model_container/dist"
    image_uri: str | None = None

    def __post_init__(self) -> None:
        if self.image_uri is not None:
            check(
                bool(
                    re.fullmatch(
                        r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})",
                        self.image_uri,
                    )
                ),
                "image_uri",
                "must be an ECR image URI with a tag or digest",
            )


@dataclass(frozen=True)
class ScheduledScaling:
    """A known traffic peak: capacity bounds applied on a cron schedule (UTC)."""

    name: str
    schedule: str
    min_capacity: int
    max_capacity: int

    def __post_init__(self) -> None:
        check(
            self.schedule.startswith("cron(") and self.schedule.endswith(")"),
            "schedule",
            "must be an Application Auto Scaling cron(...) expression",
        )
        check(1 <= self.min_capacity <= self.max_capacity, "min_capacity", "must be at least 1 and <= max_capacity")


@dataclass(frozen=True)
class EndpointSettings:
    """SageMaker real-time endpoint: instances, autoscaling and data capture."""

    REMOVED_KEYS: ClassVar[Mapping[str, str]] = {
        # SageMaker Developer Guide, "Deploy models with Amazon SageMaker Serverless Inference", feature
        # exclusions: serverless endpoints support neither VPC configuration, network isolation, data capture
        # nor Model Monitor. Every endpoint here has all four (VPC-only model, isolated container, captured
        # traffic for the drift job), so a serverless endpoint would fail CreateEndpoint or run unwatched.
        "serverless": "is not supported: SageMaker Serverless Inference allows no VPC configuration, network "
        "isolation or data capture, which every endpoint of this platform has; for a cheaper endpoint lower "
        "endpoint.instance_type and the capacities (README, Cost)",
    }

    instance_type: str = "ml.c6i.large"
    # Two instances at least: SageMaker "strongly recommends" multiple instances per production endpoint so that
    # they spread across Availability Zones ("Best practices for deploying models on SageMaker AI Hosting
    # Services", Deploy Multiple Instances Across Availability Zones); a canary also needs two (TrafficRoutingConfig).
    initial_instance_count: int = 2
    min_capacity: int = 2
    # Room to double the floor under load before the instances-at-max alarm says autoscaling has run out.
    max_capacity: int = 4
    # SageMakerVariantInvocationsPerInstance counts per minute; see README for how it derives from the benchmark.
    invocations_per_instance_target: int = 60000
    cpu_utilization_target: float = 70.0
    scale_in_cooldown_seconds: int = 600
    scale_out_cooldown_seconds: int = 60
    scheduled_scaling: tuple[ScheduledScaling, ...] = ()
    data_capture_percent: int = 100
    startup_health_check_timeout_seconds: int = 600
    # Share of successful, fast requests that get a request log line in the container (errors and slow requests
    # always do; EMF metrics stay exact): MODEL_SERVER_REQUEST_LOG_SAMPLE. A line is ~240 bytes as CloudWatch Logs
    # bills it, ~0.14 USD of ingestion per million requests at 100 %, ~0.0014 at 1 % (model_container/README.md).
    request_log_sample_percent: float = 1.0

    def __post_init__(self) -> None:
        check(
            bool(re.fullmatch(r"ml\.[a-z0-9]+\.[a-z0-9]+", self.instance_type)),
            "instance_type",
            f"{self.instance_type!r} is not a SageMaker instance type",
        )
        check(self.min_capacity >= 1, "min_capacity", "must be at least 1")
        check(
            self.min_capacity <= self.max_capacity,
            "min_capacity",
            f"({self.min_capacity}) must not exceed max_capacity ({self.max_capacity})",
        )
        check(
            self.min_capacity <= self.initial_instance_count <= self.max_capacity,
            "initial_instance_count",
            "must lie between min_capacity and max_capacity",
        )
        check(self.invocations_per_instance_target > 0, "invocations_per_instance_target", "must be positive")
        check(
            0 < self.cpu_utilization_target <= 100,
            "cpu_utilization_target",
            "must be a per-instance percentage in (0, 100] (synth multiplies it by the instance's vCPUs)",
        )
        check(
            instance_vcpus(self.instance_type) is not None,
            "instance_type",
            f"{self.instance_type!r}: cannot tell its vCPUs (CPUUtilization sums them); known sizes are large, "
            "xlarge, <N>xlarge, Graviton medium and ml.t2/ml.t3 (platform_config/settings.py instance_vcpus)",
        )
        check(
            self.scale_in_cooldown_seconds > self.scale_out_cooldown_seconds,
            "scale_in_cooldown_seconds",
            "must be longer than scale_out_cooldown_seconds (scale out fast, in slowly)",
        )
        check(0 <= self.data_capture_percent <= 100, "data_capture_percent", "must be between 0 and 100")
        check(
            0 <= self.request_log_sample_percent <= 100,
            "request_log_sample_percent",
            "must be a percentage between 0 and 100",
        )
        check(
            60 <= self.startup_health_check_timeout_seconds <= 3600,
            "startup_health_check_timeout_seconds",
            "must be between 60 and 3600",
        )

    @property
    def vcpus(self) -> int:
        """vCPUs of `instance_type` (validated in __post_init__)."""
        vcpus = instance_vcpus(self.instance_type)
        assert vcpus is not None
        return vcpus


# `/aws/sagemaker/Endpoints` CPUUtilization is "the sum of each individual CPU core's utilization ... if there are
# four CPUs, the CPUUtilization range is 0%-400%" (SageMaker Developer Guide, "Monitor Amazon SageMaker AI with
# Amazon CloudWatch"; MemoryUtilization and DiskUtilization stay 0-100 %). An ml.* type has the vCPUs of the EC2
# type it names: EC2 User Guide, "CPU cores and threads per CPU core per instance type" gives large = 2,
# xlarge = 4 and Nxlarge = 4N in every family but two irregular sizes, medium = 1 for Graviton (c6g, c7g, m6g,
# r6g...: the family has a "g" after its generation digit); burstable sizes differ and come from the EC2 User
# Guide's table in "Key concepts and definitions for burstable performance instances" (t2.medium has 2 vCPUs).
IRREGULAR_VCPUS = {"c4.8xlarge": 36, "d2.8xlarge": 36}
BURSTABLE_VCPUS = {
    "t2.medium": 2,
    "t2.large": 2,
    "t2.xlarge": 4,
    "t2.2xlarge": 8,
    "t3.medium": 2,
    "t3.large": 2,
    "t3.xlarge": 4,
    "t3.2xlarge": 8,
}
_INSTANCE = re.compile(r"ml\.(?P<family>[a-z]+(?P<generation>\d+)(?P<options>[a-z-]*))\.(?P<size>[a-z0-9]+)")


def instance_vcpus(instance_type: str) -> int | None:
    """vCPUs of a SageMaker instance type, or None when the rule above does not cover it."""
    match = _INSTANCE.fullmatch(instance_type)
    if match is None:
        return None
    family, size = match["family"], match["size"]
    if re.fullmatch(r"t\d+[a-z]*", family):
        return BURSTABLE_VCPUS.get(f"{family}.{size}")
    if f"{family}.{size}" in IRREGULAR_VCPUS:
        return IRREGULAR_VCPUS[f"{family}.{size}"]
    if size == "large":
        return 2
    if size == "xlarge":
        return 4
    if size.endswith("xlarge") and size.removesuffix("xlarge").isdigit():
        return 4 * int(size.removesuffix("xlarge"))
    if size == "medium" and "g" in match["options"]:
        return 1
    return None


@dataclass(frozen=True)
class UsagePlanSettings:
    """One API consumer tier: steady rate, burst and daily quota."""

    rate_limit: float
    burst_limit: int
    quota_per_day: int

    def __post_init__(self) -> None:
        check(self.rate_limit > 0, "rate_limit", "must be positive")
        check(self.burst_limit >= 1, "burst_limit", "must be at least 1")
        check(self.quota_per_day >= 1, "quota_per_day", "must be at least 1")


@dataclass(frozen=True)
class ApiSettings:
    """Public REST API: auth, throttling, consumer tiers, WAF limits, caching, major version."""

    # The API's major version: the public path is /v{version}/predict and openapi.json's info.version is
    # "{version}.0.0" (model_container/contract/generate.py reads it from cdk.json). Bump it for a breaking contract
    # change; the model gate refuses one without it (scripts/model_gate.py).
    version: int = 1
    auth: Literal["api_key", "iam"] = "api_key"
    throttle_rate_limit: float = 1000.0
    throttle_burst_limit: int = 2000
    usage_plans: Mapping[str, UsagePlanSettings] = field(
        default_factory=lambda: {
            "standard": UsagePlanSettings(rate_limit=50, burst_limit=100, quota_per_day=100_000),
        }
    )
    # The pipeline's own key and plan for its smoke and load tests (README "Test traffic"): the gateway marks the
    # requests of this key only, and the drift job leaves marked requests out of its statistics.
    pipeline_test_plan: UsagePlanSettings = field(
        default_factory=lambda: UsagePlanSettings(rate_limit=50, burst_limit=100, quota_per_day=20_000)
    )
    # WAF rate limits per 5 minutes: per API key (header x-api-key), and per source IP as the backstop for requests
    # without a key or with made-up keys. Every plan must fit under both (checked below).
    waf_key_rate_limit_per_5_minutes: int = 20_000
    waf_rate_limit_per_5_minutes: int = 40_000
    # WAF inspects at most 64 KB of a regional API's body; larger bodies are blocked, not passed uninspected.
    max_body_kb: Literal[8, 16, 32, 48, 64] = 64
    integration_timeout_seconds: int = 29
    cache_size_gb: float | None = None
    access_log_retention_days: int = 365

    def __post_init__(self) -> None:
        check(self.version >= 1, "version", f"must be an integer >= 1 (the API's major version), got {self.version}")
        check(self.throttle_rate_limit > 0, "throttle_rate_limit", "must be positive")
        check(self.throttle_burst_limit >= 1, "throttle_burst_limit", "must be at least 1")
        check(bool(self.usage_plans), "usage_plans", "needs at least one tier")
        for tier, plan in self.usage_plans.items():
            check(
                plan.rate_limit <= self.throttle_rate_limit,
                f"usage_plans.{tier}.rate_limit",
                "must not exceed the stage's throttle_rate_limit",
            )
        check(self.waf_rate_limit_per_5_minutes >= 100, "waf_rate_limit_per_5_minutes", "must be at least 100")
        self._check_plans_fit_the_firewall()
        check(1 <= self.integration_timeout_seconds <= 60, "integration_timeout_seconds", "must be 1..60")
        if self.cache_size_gb is not None:
            check(
                self.cache_size_gb in (0.5, 1.6, 6.1, 13.5, 28.4, 58.2, 118.0, 237.0),
                "cache_size_gb",
                "must be an API Gateway cache size",
            )
        check(
            self.access_log_retention_days in LOG_RETENTION_DAYS,
            "access_log_retention_days",
            "must be one of CloudWatch's retention periods",
        )

    def _check_plans_fit_the_firewall(self) -> None:
        # A consumer at its plan's limit must never meet a WAF block first: over WAF's 5-minute window a plan admits
        # rate * 300 requests plus one burst (API Gateway's token bucket, "Throttle requests to your REST APIs").
        plans = {**{f"usage_plans.{tier}": plan for tier, plan in self.usage_plans.items()},
                 "pipeline_test_plan": self.pipeline_test_plan}  # fmt: skip
        for key, plan in plans.items():
            admitted = plan_requests_per_5_minutes(plan)
            check(
                admitted <= self.waf_key_rate_limit_per_5_minutes,
                f"{key}.rate_limit",
                f"admits {admitted} requests per 5 minutes, over waf_key_rate_limit_per_5_minutes "
                f"({self.waf_key_rate_limit_per_5_minutes}): the firewall would block the key before its plan does",
            )
        check(
            self.waf_rate_limit_per_5_minutes >= self.waf_key_rate_limit_per_5_minutes,
            "waf_rate_limit_per_5_minutes",
            f"the per-IP limit must be at least waf_key_rate_limit_per_5_minutes "
            f"({self.waf_key_rate_limit_per_5_minutes}): one consumer on one address would be blocked before its plan",
        )


def plan_requests_per_5_minutes(plan: UsagePlanSettings) -> int:
    """The most requests a usage plan lets through in WAF's 5-minute rate window: the steady rate plus one burst."""
    return math.ceil(plan.rate_limit * 300) + plan.burst_limit


@dataclass(frozen=True)
class AlarmSettings:
    """Alarm thresholds; each alarm notifies the environment's SNS topic."""

    api_5xx_rate_percent: float = 1.0
    api_4xx_rate_percent: float = 25.0
    api_p99_latency_ms: float = 500.0
    endpoint_5xx_errors: int = 5
    model_latency_p99_ms: float = 50.0
    overhead_latency_p99_ms: float = 50.0
    cpu_utilization_percent: float = 80.0
    memory_utilization_percent: float = 80.0
    disk_utilization_percent: float = 80.0
    container_error_rate_percent: float = 1.0
    evaluation_periods: int = 3
    period_seconds: int = 60

    def __post_init__(self) -> None:
        for name in (
            "api_5xx_rate_percent",
            "api_4xx_rate_percent",
            "cpu_utilization_percent",
            "memory_utilization_percent",
            "disk_utilization_percent",
            "container_error_rate_percent",
        ):
            check(0 < getattr(self, name) <= 100, name, "must be a percentage in (0, 100]")
        for name in ("api_p99_latency_ms", "model_latency_p99_ms", "overhead_latency_p99_ms"):
            check(getattr(self, name) > 0, name, "must be positive")
        check(self.endpoint_5xx_errors >= 1, "endpoint_5xx_errors", "must be at least 1")
        check(self.evaluation_periods >= 1, "evaluation_periods", "must be at least 1")
        check(
            self.period_seconds in (10, 30) or self.period_seconds % 60 == 0,
            "period_seconds",
            "must be 10, 30 or a multiple of 60",
        )


@dataclass(frozen=True)
class DeploymentSettings:
    """Blue/green update of the endpoint: canary size, waits, bake time; alarms roll it back."""

    traffic_routing: Literal["CANARY", "LINEAR", "ALL_AT_ONCE"] = "CANARY"
    canary_percent: int = 10
    linear_step_percent: int = 25
    wait_interval_seconds: int = 300
    bake_minutes: int = 30
    auto_rollback: bool = True
    # Flap guard of the rollback controller: after an automatic rollback, no further automatic rollback for this
    # long unless an operator acts (lambda_src/releases/RELEASES.md).
    rollback_cooldown_minutes: int = 60

    def __post_init__(self) -> None:
        check(
            1 <= self.rollback_cooldown_minutes <= 1440,
            "rollback_cooldown_minutes",
            "must be 1..1440 (a flapping alarm must not walk production back release by release)",
        )
        # SageMaker API reference, TrafficRoutingConfig: CanarySize at most 50 %, LinearStepSize 10-50 %.
        check(1 <= self.canary_percent <= 50, "canary_percent", "must be between 1 and 50")
        check(10 <= self.linear_step_percent <= 50, "linear_step_percent", "must be between 10 and 50")
        check(0 <= self.wait_interval_seconds <= 3600, "wait_interval_seconds", "must be 0..3600")
        check(
            0 <= self.bake_minutes <= 60,
            "bake_minutes",
            "must be 0..60 (SageMaker's TerminationWaitInSeconds is at most 3600)",
        )


@dataclass(frozen=True)
class LambdaSettings:
    """Shared settings of the platform's Lambdas: the public Powertools layer (no lookup at synth)."""

    powertools_layer_account: str = "017000801446"
    powertools_layer_version: int = 27

    def __post_init__(self) -> None:
        check(
            bool(re.fullmatch(r"\d{12}", self.powertools_layer_account)),
            "powertools_layer_account",
            "must be 12 digits",
        )
        check(self.powertools_layer_version >= 1, "powertools_layer_version", "must be at least 1")

    def powertools_layer_arn(self, region: str) -> str:
        return (
            f"arn:aws:lambda:{region}:{self.powertools_layer_account}:layer:"
            f"AWSLambdaPowertoolsPythonV3-python313-x86_64:{self.powertools_layer_version}"
        )


@dataclass(frozen=True)
class ModelMonitorSettings:
    """SageMaker Model Monitor (engine `model_monitor`): hourly data-quality schedule per baselined version.

    A model version gets a schedule only once its baseline exists: run scripts/model_monitor_baseline.py,
    then list the version in `baselined_versions` (synth warns with the command until then)."""

    baselined_versions: tuple[str, ...] = ()
    instance_type: str = "ml.m5.xlarge"
    volume_size_gb: int = 20
    max_runtime_seconds: int = 3300
    schedule_expression: str = "cron(0 * ? * * *)"
    drift_threshold: float = 0.1  # the analyzer's distance between baseline and window distributions
    # Also an hourly model-quality job on labels under monitoring.ground_truth_prefix, in Model Monitor's
    # ground-truth format (see README).
    model_quality: bool = False

    def __post_init__(self) -> None:
        for index, version in enumerate(self.baselined_versions):
            check(bool(_SEMVER.fullmatch(version)), f"baselined_versions[{index}]", f"{version!r} is not a version")
        check(self.instance_type.startswith("ml."), "instance_type", "must be a SageMaker instance type (ml.*)")
        check(1 <= self.volume_size_gb <= 16384, "volume_size_gb", "must be 1..16384")
        check(0 < self.drift_threshold <= 1, "drift_threshold", "must be in (0, 1]")
        # An hourly schedule's job must end before the next one starts.
        check(60 <= self.max_runtime_seconds <= 3600, "max_runtime_seconds", "must be 60..3600")
        check(
            self.schedule_expression.startswith("cron(") and self.schedule_expression.endswith(")"),
            "schedule_expression",
            "must be a cron(...) expression, e.g. cron(0 * ? * * *)",
        )


@dataclass(frozen=True)
class MonitoringSettings:
    """Drift detection on captured traffic: engine, window, thresholds, ground truth, retraining trigger."""

    engine: Literal["builtin", "model_monitor"] = "builtin"
    # Built-in engine: a Lambda for small volumes, an ECS Fargate task (no 15-minute or 10 GB limit) for large.
    runner: Literal["lambda", "fargate"] = "lambda"
    task_cpu: int = 1024
    task_memory_mib: int = 4096
    window_hours: int = 1
    psi_warn: float = 0.1
    psi_alarm: float = 0.25
    ks_p_value: float = 0.01
    min_samples: int = 50
    feature_psi_alarm: Mapping[str, float] = field(default_factory=dict)
    ground_truth_prefix: str | None = None
    min_accuracy: float = 0.9
    retraining_event_bus_arn: str | None = None
    model_monitor: ModelMonitorSettings = field(default_factory=ModelMonitorSettings)

    def __post_init__(self) -> None:
        check(self.task_cpu in (256, 512, 1024, 2048, 4096, 8192, 16384), "task_cpu", "must be a Fargate CPU size")
        check(
            2 * self.task_cpu <= self.task_memory_mib <= 8 * self.task_cpu,
            "task_memory_mib",
            "must be 2 to 8 GiB per vCPU (Fargate's combinations)",
        )
        if self.model_monitor.model_quality:
            check(
                self.ground_truth_prefix is not None,
                "model_monitor.model_quality",
                "needs monitoring.ground_truth_prefix (where the labels are uploaded)",
            )
        check(1 <= self.window_hours <= 24, "window_hours", "must be 1..24")
        check(0 < self.psi_warn < self.psi_alarm, "psi_warn", "must be positive and below psi_alarm")
        check(0 < self.ks_p_value < 1, "ks_p_value", "must be in (0, 1)")
        check(self.min_samples >= 10, "min_samples", "must be at least 10")
        for feature, threshold in self.feature_psi_alarm.items():
            check(threshold > 0, f"feature_psi_alarm.{feature}", "must be positive")
        check(0 < self.min_accuracy <= 1, "min_accuracy", "must be in (0, 1]")
        if self.retraining_event_bus_arn is not None:
            check(
                bool(
                    re.fullmatch(
                        r"arn:aws[\w-]*:events:[a-z0-9-]+:\d{12}:event-bus/[\w.\-/]+", self.retraining_event_bus_arn
                    )
                ),
                "retraining_event_bus_arn",
                "must be an EventBridge event bus ARN",
            )


# EventBridge Scheduler expressions ("Schedule types on EventBridge Scheduler"): cron() with its six fields, or rate().
_SCHEDULE = re.compile(r"cron\((\S+ ){5}\S+\)|rate\([1-9]\d* (minute|minutes|hour|hours|day|days)\)")
# Object key prefixes inside the artifacts bucket: relative, "/"-terminated, no empty or dot segments.
_KEY_PREFIX = re.compile(r"([a-z0-9][a-z0-9_-]*/)+")


@dataclass(frozen=True)
class BatchSettings:
    """Batch inference: SageMaker Batch Transform jobs run by the `<prefix>-batch` state machine with the
    endpoint's model, from `input_prefix` to `output_prefix`/<execution>/ in the artifacts bucket
    (ml_constructs/batch_inference.py). Unset payload and concurrency leave them to the container's
    /execution-parameters answer, which is sized to the instance's CPUs (model_container/server/batch.py)."""

    enabled: bool = False
    # "If you are using built-in algorithms to transform moderately sized datasets, we recommend using ml.m4.xlarge
    # or ml.m5.large" (CloudFormation, AWS::SageMaker::ModelPackage TransformResources); this model is small.
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    content_type: Literal["text/csv", "application/jsonlines"] = "text/csv"
    max_payload_mb: int | None = None
    max_concurrent_transforms: int | None = None
    schedule: str | None = None
    input_prefix: str = "batch/input/"
    output_prefix: str = "batch/output/"
    timeout_minutes: int = 240
    # /aws/sagemaker/TransformJobs is one log group per account and region: "own" creates it in this environment's
    # inference stack (logs key, retention); "existing" where it exists already (an earlier transform job made it, or
    # another environment in the same account and region owns it: CloudFormation cannot create a name that exists).
    transform_log_group: Literal["own", "existing"] = "own"

    def __post_init__(self) -> None:
        check(
            bool(re.fullmatch(r"ml\.[a-z0-9]+\.[a-z0-9]+", self.instance_type)),
            "instance_type",
            f"{self.instance_type!r} is not a SageMaker instance type",
        )
        # TransformResources.VolumeKmsKeyId (the data key, always set): "You can't request a VolumeKmsKeyId when
        # using an instance type with local storage" - the "d" families (m5d, c6id, g4dn...) have instance store.
        family = self.instance_type.split(".")[1]
        check(
            not re.fullmatch(r"[a-z]+\d+[a-z-]*d[a-z-]*", family),
            "instance_type",
            f"{self.instance_type!r} has local instance storage, which cannot take the data key as VolumeKmsKeyId",
        )
        # TransformResources.InstanceCount: minimum 1, "the maximum is 100".
        check(1 <= self.instance_count <= 100, "instance_count", "must be between 1 and 100")
        if self.max_payload_mb is not None:
            # 0 (HTTP chunked, unbounded) is not supported: the container refuses bodies over its limit.
            check(1 <= self.max_payload_mb <= 100, "max_payload_mb", "must be between 1 and 100 (MB), or null")
        if self.max_concurrent_transforms is not None:
            check(self.max_concurrent_transforms >= 1, "max_concurrent_transforms", "must be at least 1, or null")
        if self.schedule is not None:
            check(
                bool(_SCHEDULE.fullmatch(self.schedule)),
                "schedule",
                f"{self.schedule!r} is not an EventBridge Scheduler cron(...) (six fields) or rate(...) expression",
            )
        for key in ("input_prefix", "output_prefix"):
            check(
                bool(_KEY_PREFIX.fullmatch(getattr(self, key))),
                key,
                "must be a relative S3 key prefix ending in '/' (lowercase letters, digits, '-', '_')",
            )
        inside = self.output_prefix.startswith(self.input_prefix) or self.input_prefix.startswith(self.output_prefix)
        check(
            not inside,
            "output_prefix",
            "must not overlap input_prefix (a job would read earlier outputs as input)",
        )
        check(10 <= self.timeout_minutes <= 2880, "timeout_minutes", "must be between 10 and 2880 (48 hours)")


# AWS Budgets: "A budget can have up to ten notifications. Each notification must have at least one subscriber. A
# notification can have one SNS subscriber and up to 10 email subscribers" (Budgets API reference, Notification).
BUDGET_MAX_NOTIFICATIONS = 10
BUDGET_MAX_EMAIL_SUBSCRIBERS = 10


@dataclass(frozen=True)
class CostSettings:
    """The environment's monthly cost budget and anomaly alerts (ml_constructs/cost_alerts.py).

    Each percentage of `actual_threshold_percent` and `forecast_threshold_percent` is a budget notification (actual
    or forecasted spend above that share of `monthly_budget_usd`) to the environment's alarm topic and `emails`;
    anomalies of at least `anomaly_impact_usd` go to the topic at once and to `emails` in a daily summary."""

    monthly_budget_usd: float = 1000.0
    actual_threshold_percent: tuple[float, ...] = (80.0, 100.0)
    forecast_threshold_percent: tuple[float, ...] = (100.0,)
    emails: tuple[str, ...] = ()
    anomaly_impact_usd: float = 50.0
    # False leaves out the anomaly monitor and its subscriptions (the budget stays): where a tag monitor cannot be
    # created, e.g. an organization's member account without access to cost allocation tags.
    anomaly_alerts: bool = True

    def __post_init__(self) -> None:
        check(self.monthly_budget_usd > 0, "monthly_budget_usd", "must be a positive amount of USD")
        for key in ("actual_threshold_percent", "forecast_threshold_percent"):
            values: tuple[float, ...] = getattr(self, key)
            for index, value in enumerate(values):
                check(0 < value <= 1000, f"{key}[{index}]", f"{value} is not a percentage of the budget in (0, 1000]")
                check(value not in values[:index], f"{key}[{index}]", f"{value} is listed twice")
        count = len(self.actual_threshold_percent) + len(self.forecast_threshold_percent)
        check(count >= 1, "actual_threshold_percent", "a budget without a threshold notifies nobody: give one or more")
        check(
            count <= BUDGET_MAX_NOTIFICATIONS,
            "forecast_threshold_percent",
            f"{count} thresholds in all, over the {BUDGET_MAX_NOTIFICATIONS} notifications AWS Budgets allows a budget",
        )
        check(
            len(self.emails) <= BUDGET_MAX_EMAIL_SUBSCRIBERS,
            "emails",
            f"at most {BUDGET_MAX_EMAIL_SUBSCRIBERS} (a budget notification's e-mail subscribers)",
        )
        for index, email in enumerate(self.emails):
            check(bool(_EMAIL.match(email)), f"emails[{index}]", f"{email!r} is not an email address")
        check(self.anomaly_impact_usd >= 0, "anomaly_impact_usd", "must be a non-negative amount of USD")


@dataclass(frozen=True)
class PipelineSource:
    """Where the pipeline pulls from: a CodeConnections connection (GitHub/GitLab/Bitbucket) by default,
    or a CodeCommit repository, or a zip object in a versioned S3 bucket (set exactly one)."""

    repository: str
    branch: str = "main"
    connection_arn: str | None = None
    codecommit_repository: str | None = None
    s3_bucket: str | None = None
    s3_key: str = "source.zip"

    def __post_init__(self) -> None:
        check(bool(re.fullmatch(r"[\w.-]+/[\w.-]+", self.repository)), "repository", "must be owner/name")
        kinds = [self.connection_arn, self.codecommit_repository, self.s3_bucket]
        check(
            sum(kind is not None for kind in kinds) == 1,
            "connection_arn",
            "set exactly one of connection_arn, codecommit_repository and s3_bucket",
        )
        if self.connection_arn is not None:
            check(
                bool(
                    re.fullmatch(
                        r"arn:aws[\w-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:"
                        r"connection/[\w-]+",
                        self.connection_arn,
                    )
                ),
                "connection_arn",
                "must be a CodeConnections connection ARN",
            )
        if self.s3_bucket is not None:
            bucket_name = re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.s3_bucket)
            check(bool(bucket_name), "s3_bucket", "is not a bucket name")
            check(self.s3_key.endswith(".zip"), "s3_key", "must name a .zip object")


@dataclass(frozen=True)
class LatencyGate:
    """The model gate's short latency benchmark: the build served locally, p99 per request size."""

    requests: int = 2000
    concurrency: int = 4
    single_row_p99_ms: float = 20.0
    batch_rows: int = 100
    batch_p99_ms: float = 50.0

    def __post_init__(self) -> None:
        check(1 <= self.concurrency <= 64, "concurrency", "must be 1..64")
        check(self.requests >= self.concurrency, "requests", "must be at least concurrency")
        check(1 <= self.batch_rows <= 1000, "batch_rows", "must be 1..1000")
        check(self.single_row_p99_ms > 0, "single_row_p99_ms", "must be > 0")
        check(self.batch_p99_ms > 0, "batch_p99_ms", "must be > 0")


@dataclass(frozen=True)
class ChatChannel:
    """AWS Chatbot delivery of approvals and failures: a Slack channel or a Microsoft Teams channel.

    The workspace (Slack) or team (Teams) must first be authorized once in the AWS Chatbot console."""

    kind: Literal["slack", "teams"]
    channel_id: str
    slack_workspace_id: str | None = None
    teams_team_id: str | None = None
    teams_tenant_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "slack":
            check(bool(re.fullmatch(r"[A-Z0-9]{9,11}", self.channel_id)), "channel_id", "is not a Slack channel id")
            check(
                bool(re.fullmatch(r"[A-Z0-9]{9,11}", self.slack_workspace_id or "")),
                "slack_workspace_id",
                "is required for slack and must be a Slack workspace id (e.g. T01234567)",
            )
        else:
            for key in ("teams_team_id", "teams_tenant_id"):
                check(bool(_UUID.fullmatch(getattr(self, key) or "")), key, "is required for teams and must be a UUID")
            check(bool(re.fullmatch(r"\S{1,256}", self.channel_id)), "channel_id", "is not a Teams channel id")


# IAM users and roles, or one assumed-role session: what CodePipeline records as an approval's `lastUpdatedBy`.
_REVIEWER = re.compile(
    r"arn:aws[\w-]*:(iam::\d{12}:(user|role)/[\w+=,.@/-]+|sts::\d{12}:assumed-role/[\w+=,.@-]+(/[\w+=,.@-]+)?)"
)


@dataclass(frozen=True)
class ApprovalStage:
    """One manual approval before production: whom it notifies (e-mails and/or a chat channel), the reviewers
    it expects (recorded with the release) and what it asks them. `registry: true` marks the model approval:
    its decision becomes the model package's approval status in the SageMaker Model Registry."""

    name: str
    emails: tuple[str, ...] = ()
    chat: ChatChannel | None = None
    reviewers: tuple[str, ...] = ()
    instructions: str = ""
    registry: bool = False

    def __post_init__(self) -> None:
        check(
            bool(re.fullmatch(r"[a-z][a-z0-9_]{1,30}", self.name)),
            "name",
            "must be 2-31 lowercase letters, digits or underscores, starting with a letter",
        )
        for index, email in enumerate(self.emails):
            check(bool(_EMAIL.match(email)), f"emails[{index}]", f"{email!r} is not an email address")
        for index, reviewer in enumerate(self.reviewers):
            check(
                bool(_REVIEWER.fullmatch(reviewer)),
                f"reviewers[{index}]",
                f"{reviewer!r} is not an IAM user or role ARN (or an assumed-role ARN)",
            )
        # The approval's CustomData (shown to the reviewer) holds at most 500 characters.
        check(len(self.instructions) <= 500, "instructions", "must be at most 500 characters")

    @property
    def action_name(self) -> str:
        """The CodePipeline action: data_science -> DataScienceApproval."""
        return "".join(part.title() for part in self.name.split("_")) + "Approval"


DEFAULT_APPROVALS = (
    ApprovalStage(
        name="data_science",
        registry=True,
        instructions="Data science: review the model gate report and the model package (metrics, model card, "
        "lineage). Approving here or in the SageMaker Model Registry approves the package; rejecting stops the run.",
    ),
    ApprovalStage(
        name="operations",
        instructions="Operations: staging smoke/load results and bake alarms are in the previous stage.",
    ),
    ApprovalStage(name="product", instructions="Product: the release may reach production users now."),
)


# S3 URIs of a prefix: s3://bucket/ or s3://bucket/some/prefix/ (a bucket name as S3 allows it).
_S3_PREFIX = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[\w!.*'()/=+-]*)?/")


# The pipeline's CodeBuild step timeout (ml_constructs/delivery_pipeline.py code_build_defaults), what the rest of
# a retraining run's Synth step needs (deps, snapshot, make synth), and scripts/training_job.py's allowance for an
# on-demand job's instance to start before MaxRuntimeInSeconds counts (PROVISIONING_ALLOWANCE_S).
SYNTH_STEP_MINUTES = 60
SYNTH_STEP_RESERVE_MINUTES = 20
TRAINING_PROVISIONING_SECONDS = 900


@dataclass(frozen=True)
class TrainingSettings:
    """Retraining: where the data comes from, what a training snapshot must hold, and where training runs.

    One training per pipeline run serves staging and production alike, so this lives with the pipeline, not
    with an environment. A snapshot joins `dataset_uri` (CSV files under a versioned S3 prefix; absent: the
    bundled dataset) with production's captured traffic of the last `capture_days` that has ground-truth
    labels (model_container/dataset)."""

    dataset_uri: str | None = None
    capture_days: int = 30
    min_rows: int = 500
    # Each class must make up at least this fraction of the snapshot (binary labels: the other at most 1 - it).
    min_class_fraction: float = 0.2
    holdout_fraction: float = 0.2
    # build: in the pipeline's CodeBuild step (seconds for this model); sagemaker: scripts/training_job.py.
    runner: Literal["build", "sagemaker"] = "build"
    instance_type: str = "ml.m5.large"
    volume_size_gb: int = 10
    spot: bool = True
    max_runtime_seconds: int = 3600
    max_wait_seconds: int = 7200
    # sagemaker: production's inference stack creates /aws/sagemaker/TrainingJobs (one per account and region, with
    # the logs key and retention). False where it exists already (an earlier training job created it: CloudFormation
    # cannot create a log group whose name exists); the jobs then log to it as it is.
    owns_log_group: bool = True

    def __post_init__(self) -> None:
        if self.dataset_uri is not None:
            check(
                bool(_S3_PREFIX.fullmatch(self.dataset_uri)),
                "dataset_uri",
                "must be an s3:// prefix ending with '/' (the CSV files under it are the dataset)",
            )
        check(1 <= self.capture_days <= 366, "capture_days", "must be 1..366")
        check(self.min_rows >= 10, "min_rows", "must be at least 10")
        check(0 < self.min_class_fraction <= 0.5, "min_class_fraction", "must be in (0, 0.5]")
        check(0 < self.holdout_fraction < 0.5, "holdout_fraction", "must be in (0, 0.5)")
        match = _INSTANCE.fullmatch(self.instance_type)
        check(match is not None, "instance_type", f"{self.instance_type!r} is not a SageMaker instance type")
        # "You can't request a VolumeKmsKeyId when using an instance type with local storage" (API reference,
        # ResourceConfig); the instance-store families carry a "d" (m5d, c5d, g4dn, p4d). The job always sets
        # VolumeKmsKeyId to the data key, so those are refused here rather than by CreateTrainingJob.
        check(
            match is None or "d" not in match["options"],
            "instance_type",
            f"{self.instance_type!r} has instance storage, which cannot take the data key (VolumeKmsKeyId)",
        )
        check(1 <= self.volume_size_gb <= 16384, "volume_size_gb", "must be 1..16384")
        # MaxRuntimeInSeconds: 1 second to 28 days (API reference, StoppingCondition).
        check(1 <= self.max_runtime_seconds <= 2419200, "max_runtime_seconds", "must be 1..2419200 (28 days)")
        if self.spot:
            # "MaxWaitTimeInSeconds ... must be equal to or greater than MaxRuntimeInSeconds" (API reference,
            # StoppingCondition; "Managed Spot Training in Amazon SageMaker AI").
            check(
                self.max_wait_seconds >= self.max_runtime_seconds,
                "max_wait_seconds",
                f"({self.max_wait_seconds}) must be at least max_runtime_seconds ({self.max_runtime_seconds}) "
                "with spot",
            )
        if self.runner == "sagemaker":
            self._check_job_fits_the_synth_step()

    def _check_job_fits_the_synth_step(self) -> None:
        """The retraining run's Synth step waits for the job (scripts/training_job.py: MaxWaitTimeInSeconds with
        spot, else MaxRuntimeInSeconds plus its provisioning allowance) within its CodeBuild timeout; a step that
        times out first leaves the job running unwatched and its build unused."""
        budget_minutes = SYNTH_STEP_MINUTES - SYNTH_STEP_RESERVE_MINUTES
        key, waited = (
            ("max_wait_seconds", self.max_wait_seconds)
            if self.spot
            else ("max_runtime_seconds", self.max_runtime_seconds + TRAINING_PROVISIONING_SECONDS)
        )
        check(
            waited <= budget_minutes * 60,
            key,
            f"with runner 'sagemaker' the Synth step waits up to {waited} s for the job, more than the "
            f"{budget_minutes * 60} s its {SYNTH_STEP_MINUTES}-minute CodeBuild timeout leaves after the rest of the "
            f"step ({SYNTH_STEP_RESERVE_MINUTES} minutes)",
        )


@dataclass(frozen=True)
class PipelineSettings:
    """The delivery pipeline: where it lives, its source, which environments it deploys, its gates."""

    # Keys of earlier releases, refused with what replaced them (platform_config.loader.build).
    REMOVED_KEYS: ClassVar[Mapping[str, str]] = {
        "model_thresholds": "is removed: the model gate's thresholds live in the model card's `acceptance` "
        '(model_card.json beside the train module, or metadata.json of a package), e.g. {"accuracy": {"min": 0.93}}',
    }

    region: str
    source: PipelineSource
    account: str | None = None
    staging: str = "staging"
    production: str = "prod"
    approval_emails: tuple[str, ...] = ()
    metric_tolerance: float = 0.01
    load_test_requests: int = 2000
    load_test_concurrency: int = 16
    load_test_p99_ms: float = 500.0
    # Requests per second of the smoke test's load (smoke_test --rate), with the environments' pipeline_test_plan:
    # at most LOAD_TEST_PLAN_SHARE of that plan's rate (check_load_test_fits).
    load_test_rate: float = 30.0
    latency_gate: LatencyGate = field(default_factory=LatencyGate)
    chat: ChatChannel | None = None
    # Start a retraining run on drift events sent to this account's default bus (see README).
    retraining_trigger: bool = False
    # Manual approvals before production; the audited low-risk auto-approval and the audited emergency override
    # answer all of them (README "Approvals").
    approvals: tuple[ApprovalStage, ...] = DEFAULT_APPROVALS
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def __post_init__(self) -> None:
        check(bool(re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", self.region)), "region", "is not an AWS region name")
        if self.account is not None:
            check(bool(re.fullmatch(r"\d{12}", self.account)), "account", "must be 12 digits")
        check(0 <= self.metric_tolerance < 0.5, "metric_tolerance", "must be in [0, 0.5)")
        for index, email in enumerate(self.approval_emails):
            check(bool(_EMAIL.match(email)), f"approval_emails[{index}]", f"{email!r} is not an email address")
        check(1 <= self.load_test_concurrency <= 64, "load_test_concurrency", "must be 1..64")
        check(
            self.load_test_requests >= self.load_test_concurrency,
            "load_test_requests",
            "must be at least load_test_concurrency",
        )
        check(0 < self.load_test_rate <= 1000, "load_test_rate", "must be in (0, 1000] requests per second")
        self._check_approvals()

    def _check_approvals(self) -> None:
        names = [stage.name for stage in self.approvals]
        for index, name in enumerate(names):
            check(name not in names[:index], f"approvals[{index}].name", f"{name!r} is used by an earlier stage")
        check(
            sum(stage.registry for stage in self.approvals) == 1,
            "approvals",
            "exactly one stage must be the model registry approval (registry: true)",
        )
        for index, stage in enumerate(self.approvals):
            check(
                bool(stage.emails or stage.chat or self.approval_emails or self.chat),
                f"approvals[{index}].emails",
                f"approval stage {stage.name!r} notifies nobody: set approvals[{index}].emails or "
                f"approvals[{index}].chat (or approval_emails / chat, which every stage also notifies)",
            )


# The load test paces itself below its plan's rate, leaving room for retries and client-side timing jitter.
LOAD_TEST_PLAN_SHARE = 0.8


def check_load_test_fits(pipeline: PipelineSettings, environment: EnvironmentSettings) -> None:
    """Refuse a load test (pipeline.load_test_rate) faster than the plan of the key it uses in `environment`."""
    plan = environment.api.pipeline_test_plan
    check(
        pipeline.load_test_rate <= LOAD_TEST_PLAN_SHARE * plan.rate_limit,
        "pipeline.load_test_rate",
        f"{pipeline.load_test_rate} requests/s is over {LOAD_TEST_PLAN_SHARE:.0%} of {environment.name}'s "
        f"api.pipeline_test_plan.rate_limit ({plan.rate_limit}): API Gateway would throttle the load test",
    )
