"""Turns the validated configuration into one stage per environment, with every nag pack attached."""

from __future__ import annotations

from aws_cdk import App

from ml_constructs.nag import add_rule_packs
from platform_config import CONTEXT_KEY, load_environments
from stacks.platform_stage import PlatformStage


def build_stages(app: App, *, default_account: str | None, default_region: str | None) -> list[PlatformStage]:
    """Add the environments selected by `-c env=...` (all by default) to `app`."""
    stages = [
        PlatformStage(app, settings.name, settings=settings, commit=app.node.try_get_context("commit") or "unknown")
        for settings in load_environments(
            app.node.try_get_context(CONTEXT_KEY),
            selected=app.node.try_get_context("env"),
            default_account=default_account,
            default_region=default_region,
        )
    ]
    add_rule_packs(app)
    return stages
