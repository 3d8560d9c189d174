"""The configuration rejects bad input with the key named, and defaults fill the rest."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from platform_config import ConfigError, EndpointSettings, load_environments, load_pipeline
from tests.config_context import CONTEXT, with_change


def test_shipped_config_loads_three_environments_that_differ() -> None:
    envs = {env.name: env for env in load_environments(CONTEXT)}
    assert list(envs) == ["dev", "staging", "prod"]
    assert envs["dev"].data.removal_policy == "destroy"
    assert envs["prod"].data.removal_policy == "retain"
    assert len({env.network.cidr for env in envs.values()}) == 3
    assert len(envs["dev"].network.availability_zones) == 2
    assert len(envs["prod"].network.availability_zones) == 3


def test_defaults_fill_omitted_keys_and_account_comes_from_environment() -> None:
    [dev] = load_environments(CONTEXT, selected="dev", default_account="123456789012")
    assert dev.account == "123456789012"
    assert dev.network.nat_gateways == 0
    assert dev.data.organization_trail_exists is False


def test_selection_picks_named_environments_only() -> None:
    assert [env.name for env in load_environments(CONTEXT, selected="prod,dev")] == ["prod", "dev"]


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        ("environments.dev.network.colour", "blue", "ml-platform.environments.dev.network.colour", "unknown key"),
        (
            "environments.dev.network.nat_gateways",
            "1",
            "ml-platform.environments.dev.network.nat_gateways",
            "expected an integer",
        ),
        (
            "environments.dev.network.nat_gateways",
            True,
            "ml-platform.environments.dev.network.nat_gateways",
            "expected an integer",
        ),
        (
            "environments.dev.network.nat_gateways",
            3,
            "ml-platform.environments.dev.network.nat_gateways",
            "between 0 and the number of AZs",
        ),
        ("environments.dev.network.cidr", "10.0.0.0/8", "ml-platform.environments.dev.network.cidr", "/16"),
        (
            "environments.dev.network.availability_zones",
            ["us-east-1a", "us-east-1b"],
            "ml-platform.environments.dev.network.availability_zones[0]",
            "not an AZ of eu-west-1",
        ),
        (
            "environments.dev.data.removal_policy",
            "keep",
            "ml-platform.environments.dev.data.removal_policy",
            "must be one of",
        ),
        (
            "environments.dev.data.noncurrent_artifacts_expire_days",
            60,
            "ml-platform.environments.dev.data.noncurrent_artifacts_expire_days",
            "must exceed",
        ),
        (
            "environments.dev.data.log_retention_days",
            42,
            "ml-platform.environments.dev.data.log_retention_days",
            "retention periods",
        ),
        ("environments.dev.region", "mars-1", "ml-platform.environments.dev.region", "not an AWS region"),
        ("environments.dev.account", "12345", "ml-platform.environments.dev.account", "12 digits"),
        (
            "environments.dev.alarm_emails",
            ["not-an-email"],
            "ml-platform.environments.dev.alarm_emails[0]",
            "not an email",
        ),
        ("colour", "blue", "ml-platform.colour", "unknown key"),
        (
            "environments.dev.endpoint",
            {"min_capacity": 3, "max_capacity": 2, "initial_instance_count": 2},
            "ml-platform.environments.dev.endpoint.min_capacity",
            "must not exceed max_capacity",
        ),
        (
            "environments.dev.endpoint.scale_in_cooldown_seconds",
            30,
            "ml-platform.environments.dev.endpoint.scale_in_cooldown_seconds",
            "longer than scale_out",
        ),
        (
            "environments.dev.endpoint.instance_type",
            "c5.large",
            "ml-platform.environments.dev.endpoint.instance_type",
            "not a SageMaker instance type",
        ),
        ("environments.dev.api.auth", "basic", "ml-platform.environments.dev.api.auth", "must be one of"),
        (
            "environments.dev.api.usage_plans",
            {"gold": {"rate_limit": 5000, "burst_limit": 10, "quota_per_day": 1}},
            "ml-platform.environments.dev.api.usage_plans.gold.rate_limit",
            "must not exceed",
        ),
        (
            # 100/s x 300 s + 200 = 30,200 requests per 5 minutes, over the default per-key WAF limit of 20,000.
            "environments.dev.api.usage_plans",
            {"gold": {"rate_limit": 100, "burst_limit": 200, "quota_per_day": 1}},
            "ml-platform.environments.dev.api.usage_plans.gold.rate_limit",
            "over waf_key_rate_limit_per_5_minutes",
        ),
        (
            # The shipped limit before issue 13: a fifth of the standard plan's rate.
            "environments.dev.api.waf_rate_limit_per_5_minutes",
            3000,
            "ml-platform.environments.dev.api.waf_rate_limit_per_5_minutes",
            "at least waf_key_rate_limit_per_5_minutes",
        ),
        (
            "environments.dev.api.pipeline_test_plan",
            {"rate_limit": 80, "burst_limit": 100, "quota_per_day": 10},
            "ml-platform.environments.dev.api.pipeline_test_plan.rate_limit",
            "over waf_key_rate_limit_per_5_minutes",
        ),
        (
            "environments.dev.monitoring.engine",
            "sagemaker",
            "ml-platform.environments.dev.monitoring.engine",
            "must be one of 'builtin', 'model_monitor'",
        ),
        (
            "environments.dev.monitoring.model_monitor.baselined_versions",
            ["v1"],
            "ml-platform.environments.dev.monitoring.model_monitor.baselined_versions[0]",
            "is not a version",
        ),
        (
            "environments.dev.monitoring.task_memory_mib",
            1024,
            "ml-platform.environments.dev.monitoring.task_memory_mib",
            "2 to 8 GiB per vCPU",
        ),
        ("environments.dev.monitoring.runner", "batch", "ml-platform.environments.dev.monitoring.runner", "one of"),
        (
            "environments.dev.monitoring.model_monitor.model_quality",
            True,
            "ml-platform.environments.dev.monitoring.model_monitor.model_quality",
            "needs monitoring.ground_truth_prefix",
        ),
        (
            "environments.dev.monitoring.model_monitor.max_runtime_seconds",
            7200,
            "ml-platform.environments.dev.monitoring.model_monitor.max_runtime_seconds",
            "60..3600",
        ),
        (
            "environments.dev.monitoring.psi_warn",
            0.5,
            "ml-platform.environments.dev.monitoring.psi_warn",
            "below psi_alarm",
        ),
        (
            "environments.dev.deployment.bake_minutes",
            90,
            "ml-platform.environments.dev.deployment.bake_minutes",
            "0..60",
        ),
    ],
)
def test_bad_values_fail_naming_the_key(path: str, value: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_environments(with_change(path, value))
    assert raised.value.key == key
    assert fragment in str(raised.value)
    assert key in str(raised.value)


@pytest.mark.parametrize(("value", "fragment"), [(0, "must be an integer >= 1"), (-2, ">= 1"), ("2", "integer"),
                                                 (True, "integer"), (1.5, "integer")])  # fmt: skip
def test_a_bad_api_version_fails_naming_the_dotted_key(value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_environments(with_change("environments.prod.api.version", value))
    assert raised.value.key == "ml-platform.environments.prod.api.version"
    assert fragment in str(raised.value)


def test_api_version_defaults_to_1_and_is_set_once_for_every_environment() -> None:
    assert {env.api.version for env in load_environments(CONTEXT)} == {1}
    assert {env.api.version for env in load_environments(with_change("defaults.api", {"version": 3}))} == {3}


def test_unknown_environment_selection_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        load_environments(CONTEXT, selected="qa")


def test_region_falls_back_to_cdk_default_region_and_fails_without_one() -> None:
    context = copy.deepcopy(CONTEXT)
    del context["environments"]["dev"]["region"]
    [dev] = load_environments(context, selected="dev", default_region="eu-west-1")
    assert dev.region == "eu-west-1"
    with pytest.raises(ConfigError) as raised:
        load_environments(context, selected="dev")
    assert raised.value.key == "ml-platform.environments.dev.region"


def test_missing_context_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"missing from cdk\.json"):
        load_environments(None)


def test_shipped_pipeline_config_loads_with_its_gates() -> None:
    pipeline = load_pipeline(CONTEXT, load_environments(CONTEXT))
    assert pipeline is not None
    assert (pipeline.staging, pipeline.production) == ("staging", "prod")
    assert pipeline.latency_gate.single_row_p99_ms == 20.0
    assert pipeline.chat is None


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        ("pipeline.production", "qa", "ml-platform.pipeline.production", "names no environment"),
        ("pipeline.model_thresholds", {"f1": 0.9}, "ml-platform.pipeline.model_thresholds", "is removed"),
        ("pipeline.latency_gate.requests", 2, "ml-platform.pipeline.latency_gate.requests", "at least concurrency"),
        ("pipeline.latency_gate.batch_p99_ms", 0, "ml-platform.pipeline.latency_gate.batch_p99_ms", "> 0"),
        (
            "pipeline.chat",
            {"kind": "slack", "channel_id": "C0123456789"},
            "ml-platform.pipeline.chat.slack_workspace_id",
            "required",
        ),
    ],
)
def test_bad_pipeline_values_fail_naming_the_key(path: str, value: Any, key: str, fragment: str) -> None:
    context = with_change(path, value)
    with pytest.raises(ConfigError) as raised:
        load_pipeline(context, load_environments(context))
    assert raised.value.key == key
    assert fragment in str(raised.value)


# --- Defect 9: a canary or linear step must turn on at most 50 % of the variant's instances -----------------------
# SageMaker API reference, TrafficRoutingConfig: CanarySize "must be less than or equal to 50% of the variant's total
# instance count", LinearStepSize "must be 10-50%". Production runs 2+ instances ("Best practices for deploying
# models on SageMaker AI Hosting Services": deploy multiple instances so they spread across Availability Zones).


def test_staging_and_prod_run_two_instances_with_a_canary_and_dev_one_instance_all_at_once() -> None:
    envs = {env.name: env for env in load_environments(CONTEXT)}
    for name in ("staging", "prod"):
        endpoint = envs[name].endpoint
        assert endpoint.initial_instance_count >= 2 and endpoint.min_capacity >= 2
        assert endpoint.max_capacity >= 2 * endpoint.min_capacity
        assert envs[name].deployment.traffic_routing == "CANARY"
    assert envs["dev"].endpoint.initial_instance_count == 1
    assert envs["dev"].deployment.traffic_routing == "ALL_AT_ONCE"


def test_endpoint_defaults_are_two_instances_scaling_to_four() -> None:
    defaults = EndpointSettings()
    assert (defaults.initial_instance_count, defaults.min_capacity, defaults.max_capacity) == (2, 2, 4)


@pytest.mark.parametrize(
    ("endpoint", "deployment", "count_key"),
    [
        ({"initial_instance_count": 1, "min_capacity": 1}, {"traffic_routing": "CANARY"}, "min_capacity"),
        # Autoscaling may hold the variant at min_capacity when an update starts.
        ({"initial_instance_count": 2, "min_capacity": 1}, {"traffic_routing": "CANARY"}, "min_capacity"),
        ({"initial_instance_count": 1, "min_capacity": 1}, {"traffic_routing": "LINEAR"}, "min_capacity"),
        # 50 % of 3 instances turns on 2 of them (whole instances, rounded up).
        (
            {"initial_instance_count": 3, "min_capacity": 3, "max_capacity": 4},
            {"traffic_routing": "CANARY", "canary_percent": 50},
            "min_capacity",
        ),
    ],
)
def test_a_traffic_step_over_half_the_instances_fails_naming_the_keys(
    endpoint: dict[str, Any], deployment: dict[str, Any], count_key: str
) -> None:
    context = with_change("environments.staging.endpoint", endpoint)
    context["environments"]["staging"]["deployment"] = deployment
    with pytest.raises(ConfigError) as raised:
        load_environments(context)
    assert raised.value.key == "ml-platform.environments.staging.deployment.traffic_routing"
    assert f"endpoint.{count_key} = {endpoint[count_key]}" in str(raised.value)
    assert "endpoint.initial_instance_count" in str(raised.value) and "ALL_AT_ONCE" in str(raised.value)


@pytest.mark.parametrize(
    ("endpoint", "deployment"),
    [
        ({"initial_instance_count": 1, "min_capacity": 1}, {"traffic_routing": "ALL_AT_ONCE"}),
        ({"initial_instance_count": 2, "min_capacity": 2}, {"traffic_routing": "CANARY", "canary_percent": 50}),
        ({"initial_instance_count": 2, "min_capacity": 2}, {"traffic_routing": "LINEAR", "linear_step_percent": 50}),
    ],
)
def test_valid_traffic_steps_load(endpoint: dict[str, Any], deployment: dict[str, Any]) -> None:
    context = with_change("environments.staging.endpoint", endpoint)
    context["environments"]["staging"]["deployment"] = deployment
    [staging] = load_environments(context, selected="staging")
    assert staging.deployment.traffic_routing == deployment["traffic_routing"]


def test_serverless_endpoints_are_refused_naming_the_key() -> None:
    # SageMaker Serverless Inference has no VPC configuration, network isolation or data capture (Serverless
    # Inference feature exclusions): every endpoint here has all three, so the option would fail at deploy.
    with pytest.raises(ConfigError) as raised:
        load_environments(with_change("environments.dev.endpoint", {"serverless": {"memory_mb": 2048}}))
    assert raised.value.key == "ml-platform.environments.dev.endpoint.serverless"
    assert "network isolation" in str(raised.value)


def test_linear_steps_below_ten_percent_fail() -> None:
    with pytest.raises(ConfigError) as raised:
        load_environments(with_change("environments.prod.deployment", {"linear_step_percent": 5}))
    assert raised.value.key == "ml-platform.environments.prod.deployment.linear_step_percent"


# --- Defect 12: CPUUtilization is summed over vCPUs, so synth needs each instance type's vCPUs ---------------------
# Expected values from the EC2 User Guide: "CPU cores and threads per CPU core per instance type" (Default vCPUs)
# and "Key concepts and definitions for burstable performance instances" (t2/t3 vCPUs).
@pytest.mark.parametrize(
    ("instance_type", "vcpus"),
    [
        ("ml.c6i.large", 2),
        ("ml.m5.xlarge", 4),
        ("ml.c5.9xlarge", 36),
        ("ml.c4.8xlarge", 36),
        ("ml.m4.10xlarge", 40),
        ("ml.g4dn.12xlarge", 48),
        ("ml.inf1.6xlarge", 24),
        ("ml.p3.16xlarge", 64),
        ("ml.c6g.medium", 1),
        ("ml.r6gd.medium", 1),
        ("ml.t2.medium", 2),
        ("ml.t2.large", 2),
        ("ml.t3.xlarge", 4),
        ("ml.trn1.32xlarge", 128),
    ],
)
def test_vcpus_follow_the_ec2_tables(instance_type: str, vcpus: int) -> None:
    from platform_config.settings import instance_vcpus

    assert instance_vcpus(instance_type) == vcpus
    assert EndpointSettings(instance_type=instance_type).vcpus == vcpus


@pytest.mark.parametrize("instance_type", ["ml.m5.metal", "ml.c5.medium", "ml.t3.nano", "ml.c6i.huge"])
def test_an_instance_type_of_unknown_vcpus_fails_naming_the_key(instance_type: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_environments(with_change("environments.prod.endpoint", {"instance_type": instance_type}))
    assert raised.value.key == "ml-platform.environments.prod.endpoint.instance_type"
    assert "vCPUs" in str(raised.value)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("endpoint", "cpu_utilization_target", 150), ("alarms", "cpu_utilization_percent", 0)],
)
def test_cpu_settings_stay_per_instance_percentages(section: str, key: str, value: float) -> None:
    with pytest.raises(ConfigError) as raised:
        load_environments(with_change(f"environments.dev.{section}.{key}", value))
    assert raised.value.key == f"ml-platform.environments.dev.{section}.{key}"


# --- Defect 16: synth validates every environment and the pipeline, whatever `-c env=` selects -------------------
def test_selecting_one_environment_still_validates_the_others() -> None:
    context = with_change("environments.staging.network.nat_gateways", 9)
    with pytest.raises(ConfigError) as raised:
        load_environments(context, selected="dev")
    assert raised.value.key == "ml-platform.environments.staging.network.nat_gateways"


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (
            "environments.prod.alarms.cpu_utilization_percent",
            120,
            "ml-platform.environments.prod.alarms.cpu_utilization_percent",
        ),
        ("pipeline.latency_gate.requests", 2, "ml-platform.pipeline.latency_gate.requests"),
        ("pipeline.production", "qa", "ml-platform.pipeline.production"),
    ],
)
def test_synth_of_one_environment_fails_on_the_rest_of_the_config(path: str, value: Any, key: str) -> None:
    from aws_cdk import App

    from stacks.app_builder import build_stages

    full = json.loads((Path(__file__).resolve().parents[1] / "cdk.json").read_text())["context"]
    full = {**full, "ml-platform": with_change(path, value), "env": "dev"}
    app = App(context=full)
    with pytest.raises(ConfigError) as raised:
        build_stages(app, default_account="123456789012", default_region=None)
    assert raised.value.key == key
    assert not app.node.children  # refused before any stage was built


# --- Issue 18: training on data that moves (pipeline.training) ---------------------------------------------------
def test_training_defaults_to_the_bundled_dataset_built_in_the_pipeline() -> None:
    pipeline = load_pipeline(CONTEXT, load_environments(CONTEXT))
    assert pipeline is not None
    training = pipeline.training
    assert (training.dataset_uri, training.runner, training.spot) == (None, "build", True)
    assert (training.min_rows, training.min_class_fraction, training.holdout_fraction) == (500, 0.2, 0.2)
    assert training.max_wait_seconds >= training.max_runtime_seconds


def test_a_sagemaker_runner_on_spot_with_a_dataset_prefix_loads() -> None:
    context = with_change(
        "pipeline.training",
        {"dataset_uri": "s3://ml-datasets-111111111111/breast-cancer/v3/", "runner": "sagemaker", "spot": True,
         "instance_type": "ml.c5.xlarge", "max_runtime_seconds": 1800, "max_wait_seconds": 1800},
    )  # fmt: skip
    training = load_pipeline(context, load_environments(context)).training  # type: ignore[union-attr]
    assert (training.runner, training.instance_type, training.max_wait_seconds) == ("sagemaker", "ml.c5.xlarge", 1800)


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("dataset_uri", "s3://bucket/datasets/v3", "must be an s3:// prefix ending with '/'"),
        ("dataset_uri", "https://bucket.s3.amazonaws.com/datasets/", "must be an s3:// prefix"),
        ("runner", "lambda", "must be one of 'build', 'sagemaker'"),
        ("spot", "yes", "expected true or false"),
        ("min_rows", 5, "must be at least 10"),
        ("min_class_fraction", 0.6, "must be in (0, 0.5]"),
        ("holdout_fraction", 0.5, "must be in (0, 0.5)"),
        ("capture_days", 0, "must be 1..366"),
        ("instance_type", "m5.large", "is not a SageMaker instance type"),
        ("instance_type", "ml.m5d.xlarge", "has instance storage, which cannot take the data key"),
        ("max_runtime_seconds", 0, "must be 1..2419200"),
        ("max_wait_seconds", 3599, "(3599) must be at least max_runtime_seconds (3600) with spot"),
        ("colour", "blue", "unknown key"),
    ],
)
def test_bad_training_values_fail_naming_the_key(path: str, value: Any, fragment: str) -> None:
    context = with_change(f"pipeline.training.{path}", value)
    with pytest.raises(ConfigError) as raised:
        load_pipeline(context, load_environments(context))
    assert raised.value.key == f"ml-platform.pipeline.training.{path}"
    assert fragment in str(raised.value)


def test_without_spot_the_wait_is_not_checked() -> None:
    context = with_change("pipeline.training", {"spot": False, "max_wait_seconds": 1})
    assert load_pipeline(context, load_environments(context)).training.spot is False  # type: ignore[union-attr]


def test_request_log_sample_is_1_percent_in_staging_and_prod_and_everything_in_dev() -> None:
    envs = {env.name: env for env in load_environments(CONTEXT)}
    assert envs["dev"].endpoint.request_log_sample_percent == 100
    assert envs["staging"].endpoint.request_log_sample_percent == envs["prod"].endpoint.request_log_sample_percent == 1


def test_request_log_sample_must_be_a_percentage() -> None:
    context = with_change("environments.staging.endpoint", {"request_log_sample_percent": 150})
    with pytest.raises(ConfigError) as raised:
        load_environments(context)
    assert "endpoint.request_log_sample_percent" in str(raised.value)


def test_the_load_test_rate_must_fit_the_pipeline_test_plan() -> None:
    from platform_config.settings import check_load_test_fits

    context = with_change("pipeline.load_test_rate", 45)  # over 80 % of the pipeline_test_plan's 50 requests/s
    environments = load_environments(context, default_account="123456789012")
    # Synth refuses it when the pipeline is loaded, naming the full key.
    expected = r"config key 'ml-platform\.pipeline\.load_test_rate'.*staging's api\.pipeline_test_plan\.rate_limit"
    with pytest.raises(ConfigError, match=expected):
        load_pipeline(context, environments)
    environments = load_environments(CONTEXT, default_account="123456789012")
    pipeline = load_pipeline(CONTEXT, environments)
    assert pipeline is not None
    for environment in environments:
        check_load_test_fits(pipeline, environment)
