"""Turns the validated configuration into one stage per environment, with every nag pack attached."""

from __future__ import annotations

from aws_cdk import App, Environment

from ml_constructs.nag import add_rule_packs
from platform_config import CONTEXT_KEY, load_environments, load_pipeline
from stacks.pipeline_stack import PipelineStack
from stacks.platform_stage import PlatformStage


def build_stages(app: App, *, default_account: str | None, default_region: str | None) -> list[PlatformStage]:
    """Add the environments selected by `-c env=...` (all by default) to `app`."""
    context = app.node.try_get_context(CONTEXT_KEY)
    commit = app.node.try_get_context("commit") or "unknown"
    environments = load_environments(
        context,
        selected=app.node.try_get_context("env"),
        default_account=default_account,
        default_region=default_region,
    )
    stages = [PlatformStage(app, settings.name, settings=settings, commit=commit) for settings in environments]
    pipeline = load_pipeline(context, environments) if not app.node.try_get_context("env") else None
    if pipeline is not None:
        by_name = {settings.name: settings for settings in environments}
        PipelineStack(
            app,
            "Pipeline",
            stack_name=f"{by_name[pipeline.staging].project}-pipeline",
            settings=pipeline,
            project=by_name[pipeline.staging].project,
            staging=by_name[pipeline.staging],
            production=by_name[pipeline.production],
            commit=commit,
            env=Environment(account=pipeline.account or default_account, region=pipeline.region),
        )
    add_rule_packs(app)
    return stages
