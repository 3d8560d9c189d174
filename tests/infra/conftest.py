"""Synthesizes the whole app (all environments, all nag packs) once per test session."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from model_container.card import ModelCard
from stacks.app_builder import build_stages

ROOT = Path(__file__).resolve().parents[2]
VARIANT_MODULES = {"test_model_monitor.py", "test_drift_task.py", "test_reachability_variant.py"}
TASK_MODULES = {"test_model_release.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Keep every infra test on one xdist worker so the app is synthesized once, not once per worker.
    for item in items:
        if "tests/infra/" in str(item.path):
            # The variant synth (see `variant`) runs beside the main synth, on the other worker; the per-task
            # synths (test_model_release.py) need neither session synth, so they go wherever a worker is free.
            group = "synth-variant" if item.path.name in VARIANT_MODULES else "synth"
            group = "synth-tasks" if item.path.name in TASK_MODULES else group
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
    # Construct paths in the templates, as the CDK CLI writes them: the architecture picture is drawn from them.
    app = App(context={**cdk_context, "aws:cdk:enable-path-metadata": True}, outdir=str(outdir))
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


@dataclass
class Variant:
    """The app with the options the shipped config leaves off: dev on Model Monitor (this build baselined,
    model quality on), staging on Model Monitor without a baseline, prod's drift job as a Fargate task, and
    retraining as SageMaker training jobs in production (`pipeline.training.runner: sagemaker`)."""

    dev_inference: Template
    prod_inference: Template
    pipeline: dict[str, Any]
    outdir: Path


@pytest.fixture(scope="session")
def variant(cdk_context: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Variant:
    context = copy.deepcopy(cdk_context)
    version = ModelCard.load(ROOT / "model_container" / "dist").version
    environments = context["ml-platform"]["environments"]
    environments["dev"].setdefault("monitoring", {}).update(
        engine="model_monitor",
        ground_truth_prefix="ground-truth/",
        model_monitor={"baselined_versions": [version], "model_quality": True},
    )
    environments["staging"].setdefault("monitoring", {})["engine"] = "model_monitor"
    environments["prod"].setdefault("monitoring", {})["runner"] = "fargate"
    # Retraining as a SageMaker training job in production (ml_constructs/training_runner.py), nagged with the rest.
    context["ml-platform"]["pipeline"]["training"] = {
        "runner": "sagemaker",
        "max_runtime_seconds": 1800,
        "max_wait_seconds": 2400,
    }
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(context=context, outdir=str(outdir))
    stages = {
        stage.stage_name: stage for stage in build_stages(app, default_account="123456789012", default_region=None)
    }
    assembly = app.synth()  # raises on any unacknowledged nag finding, in every stage and the pipeline

    def inference(stage: str) -> Template:
        [stack] = [s for s in stages[stage].synth().stacks if s.stack_name.endswith("inference")]
        return Template.from_json(stack.template)

    [pipeline] = assembly.stacks
    return Variant(inference("dev"), inference("prod"), pipeline.template, outdir)
