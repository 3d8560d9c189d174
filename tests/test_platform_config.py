"""The configuration rejects bad input with the key named, and defaults fill the rest."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from platform_config import ConfigError, load_environments, load_pipeline

CONTEXT = json.loads((Path(__file__).resolve().parents[1] / "cdk.json").read_text())["context"]["ml-platform"]


def with_change(path: str, value: Any) -> dict[str, Any]:
    context = copy.deepcopy(CONTEXT)
    node = context
    *parents, last = path.split(".")
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return context


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
        ("pipeline.model_thresholds", {"f1": 0.9}, "ml-platform.pipeline.model_thresholds.f1", "must be one of"),
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
