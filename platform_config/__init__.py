"""Per-environment configuration of the platform, loaded from cdk.json context and validated at synth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from platform_config.loader import ConfigError, build, deep_merge
from platform_config.settings import (
    AlarmSettings,
    ApiSettings,
    CostSettings,
    DataSettings,
    DeploymentSettings,
    EndpointSettings,
    EnvironmentSettings,
    ModelSource,
    ModelSourceSpec,
    MonitoringSettings,
    NetworkSettings,
    PipelineSettings,
    TrainingSettings,
    check_load_test_fits,
)

CONTEXT_KEY = "ml-platform"

__all__ = [
    "CONTEXT_KEY",
    "AlarmSettings",
    "ApiSettings",
    "ConfigError",
    "CostSettings",
    "DataSettings",
    "DeploymentSettings",
    "EndpointSettings",
    "EnvironmentSettings",
    "ModelSource",
    "ModelSourceSpec",
    "MonitoringSettings",
    "NetworkSettings",
    "PipelineSettings",
    "TrainingSettings",
    "load_environments",
    "load_pipeline",
    "select_environments",
]


def load_environments(
    context: Any,
    *,
    selected: str | None = None,
    default_account: str | None = None,
    default_region: str | None = None,
) -> list[EnvironmentSettings]:
    """Validate every environment of the `ml-platform` context and return the selected ones (all by default).

    `selected` is a comma-separated list of environment names (from `-c env=...`); it narrows what is returned,
    never what is validated: a broken staging fails `-c env=dev` too.
    """
    if not isinstance(context, Mapping):
        raise ConfigError(CONTEXT_KEY, "missing from cdk.json context")
    allowed = {"project", "defaults", "environments", "pipeline"}
    unknown = sorted(set(context) - allowed)
    if unknown:
        raise ConfigError(f"{CONTEXT_KEY}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
    environments = context.get("environments")
    if not isinstance(environments, Mapping) or not environments:
        raise ConfigError(f"{CONTEXT_KEY}.environments", "must name at least one environment")
    defaults = context.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{CONTEXT_KEY}.defaults", "expected an object")

    loaded = []
    for name, overrides in environments.items():
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{CONTEXT_KEY}.environments.{name}", "expected an object")
        raw = deep_merge(defaults, overrides)
        raw.update(name=name, project=context.get("project", "mlapi"))
        raw.setdefault("account", default_account)
        if raw.get("region") is None:
            if not default_region:
                raise ConfigError(
                    f"{CONTEXT_KEY}.environments.{name}.region", "is not set and CDK_DEFAULT_REGION is empty"
                )
            raw["region"] = default_region
        loaded.append(build(EnvironmentSettings, raw, f"{CONTEXT_KEY}.environments.{name}"))
    check_one_model_source(loaded)
    return select_environments(loaded, selected)


def check_one_model_source(environments: list[EnvironmentSettings]) -> None:
    """Every environment serves the model the pipeline promotes: one model.source (set it under defaults)."""
    first = environments[0]
    for env in environments[1:]:
        if env.model.source != first.model.source:
            raise ConfigError(
                f"{CONTEXT_KEY}.environments.{env.name}.model.source",
                f"differs from {first.name}'s ({first.model.source.as_dict()}): every environment serves the model "
                f"the pipeline promotes; set {CONTEXT_KEY}.defaults.model.source once",
            )


def select_environments(environments: list[EnvironmentSettings], selected: str | None) -> list[EnvironmentSettings]:
    """The environments named in `selected` (comma-separated, from `-c env=...`), in that order; all if empty."""
    if not selected:
        return environments
    by_name = {env.name: env for env in environments}
    names = [name.strip() for name in selected.split(",") if name.strip()]
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ConfigError("env", f"unknown environment {missing[0]!r} (known: {', '.join(by_name)})")
    return [by_name[name] for name in names]


def load_pipeline(context: Any, environments: list[EnvironmentSettings]) -> PipelineSettings | None:
    """Validate the optional `ml-platform.pipeline` section; its stages must name environments of `environments`
    (pass every environment, not a `-c env=` selection)."""
    if not isinstance(context, Mapping) or context.get("pipeline") is None:
        return None
    key = f"{CONTEXT_KEY}.pipeline"
    pipeline = build(PipelineSettings, context["pipeline"], key)
    known = {env.name for env in environments}
    for role in ("staging", "production"):
        name = getattr(pipeline, role)
        if name not in known:
            raise ConfigError(
                f"{key}.{role}", f"names no environment of {CONTEXT_KEY}.environments ({', '.join(sorted(known))})"
            )
    by_name = {env.name: env for env in environments}
    for name in (pipeline.staging, pipeline.production):  # the load tests run against both
        try:
            check_load_test_fits(pipeline, by_name[name])
        except ConfigError as error:
            raise ConfigError(f"{CONTEXT_KEY}.{error.key}", error.detail) from None
    return pipeline
