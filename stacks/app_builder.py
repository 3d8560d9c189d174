"""Turns the validated configuration into one stage per environment, with every nag pack attached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aws_cdk import App, Environment

from ml_constructs.nag import add_rule_packs
from platform_config import CONTEXT_KEY, load_environments, load_pipeline, select_environments
from stacks.pipeline_stack import PipelineStack
from stacks.platform_stage import PlatformStage

CONTRACT_DIR = Path(__file__).resolve().parents[1] / "model_container" / "contract"
# Written by model_container/contract/generate.py; read here as data (infrastructure imports no runtime module).
CONTRACT_MANIFEST = "generated-from.json"
REGENERATE = "make contracts (python -m model_container.contract.generate)"


class StaleContractError(RuntimeError):
    """The generated API contract does not match the feature schema (or was edited after generation)."""


def check_contract(directory: Path = CONTRACT_DIR) -> None:
    """Fail unless every file the contract generator recorded still has the hash it recorded.

    The API's request model (request.schema.json) is deployed from this directory: a feature schema changed
    without regenerating it would deploy a gateway that validates against the old features.
    """
    path = directory / CONTRACT_MANIFEST
    try:
        manifest = json.loads(path.read_text())
        inputs, outputs = dict(manifest["inputs"]), dict(manifest["outputs"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StaleContractError(f"API contract: cannot read {path} ({error}); run {REGENERATE}") from None
    if "feature_schema.json" not in inputs or "request.schema.json" not in outputs:
        raise StaleContractError(f"API contract: {path} does not cover feature_schema.json; run {REGENERATE}")
    changes = (("changed since the contract was generated", inputs), ("differs from what the generator wrote", outputs))
    for change, recorded in changes:
        for name, digest in recorded.items():
            file = directory / name
            actual = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
            if actual != digest:
                raise StaleContractError(f"API contract is stale: {file} {change}; run {REGENERATE} and commit it")


def build_stages(
    app: App,
    *,
    default_account: str | None,
    default_region: str | None,
    contract_dir: Path = CONTRACT_DIR,
) -> list[PlatformStage]:
    """Add the environments selected by `-c env=...` (all by default) to `app`.

    Every environment and the pipeline are validated whatever `-c env=` selects, and a stale API contract
    fails, before any construct is created.
    """
    check_contract(contract_dir)
    context = app.node.try_get_context(CONTEXT_KEY)
    commit = app.node.try_get_context("commit") or "unknown"
    selection = app.node.try_get_context("env")
    environments = load_environments(context, default_account=default_account, default_region=default_region)
    pipeline = load_pipeline(context, environments)
    stages = [
        PlatformStage(app, settings.name, settings=settings, commit=commit)
        for settings in select_environments(environments, selection)
    ]
    if pipeline is not None and not selection:
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
