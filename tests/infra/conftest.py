"""Synthesizes the whole app (all environments, all nag packs) once per test session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from stacks.app_builder import build_stages

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Keep every infra test on one xdist worker so the app is synthesized once, not once per worker.
    for item in items:
        if "tests/infra/" in str(item.path):
            # The Model Monitor module synthesizes its own variant of dev: it can run beside the main synth.
            group = "synth-model-monitor" if item.path.name == "test_model_monitor.py" else "synth"
            item.add_marker(pytest.mark.xdist_group(group))


@dataclass
class Synthesized:
    outdir: Path
    templates: dict[tuple[str, str], dict[str, Any]]
    context: dict[str, Any]

    def template(self, env: str, stack: str) -> Template:
        return Template.from_json(self.templates[(env, stack)])

    def resources(self, env: str, stack: str, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.templates[(env, stack)]["Resources"].items()
            if resource["Type"] == resource_type
        }


@pytest.fixture(scope="session")
def cdk_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


@pytest.fixture(scope="session")
def synthesized(cdk_context: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(context=cdk_context, outdir=str(outdir))
    stages = build_stages(app, default_account="123456789012", default_region=None)
    assembly = app.synth()  # raises if any nag pack reports an unacknowledged finding
    templates = {}
    for stack in assembly.stacks:  # top-level stacks: the pipeline, when configured
        templates[("pipeline", "pipeline")] = stack.template
    for stage in stages:
        assembly = stage.synth()
        for stack in assembly.stacks:
            templates[(stage.stage_name, stack.stack_name.split("-")[-1])] = stack.template
    return Synthesized(outdir=outdir, templates=templates, context=cdk_context)
