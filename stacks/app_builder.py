"""Turns the validated configuration into one stage per environment, with every nag pack attached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment

from ml_constructs.nag import add_rule_packs
from model_container.card import card_field_digests
from platform_config import CONTEXT_KEY, load_environments, load_pipeline, select_environments
from stacks.pipeline_stack import PipelineStack
from stacks.platform_stage import PlatformStage

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_DIR = ROOT / "model_container" / "contract"
# The card of the package `make model` leaves in model_container/dist: the endpoint serves that model, so the
# contract the gateway deploys must be the one generated from it.
MODEL_CARD = ROOT / "model_container" / "dist" / "metadata.json"
# Written by model_container/contract/generate.py; read here as data (infrastructure imports no runtime module).
CONTRACT_MANIFEST = "generated-from.json"
REGENERATE = (
    "make contracts (python -m model_container.contract.generate; make model also runs it after building the package)"
)


class StaleContractError(RuntimeError):
    """The generated API contract does not match the model card (or was edited after generation)."""


def _read_json(path: Path, what: str, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        problem = "is missing" if isinstance(error, FileNotFoundError) else f"cannot be read ({error})"
        raise StaleContractError(f"API contract: {what} {path} {problem}; run {fix}") from None


def check_card(recorded: dict[str, str], card_path: Path) -> None:
    """Fail unless every contract field of the card has the digest the generator recorded, naming the fields."""
    raw = _read_json(card_path, "the model card", "make model (it builds the package, then the contract)")
    if not isinstance(raw, dict):
        raise StaleContractError(f"API contract: model card {card_path} is not a JSON object; run make model")
    changed = [name for name, digest in card_field_digests(raw, list(recorded)).items() if recorded[name] != digest]
    if changed:
        raise StaleContractError(
            f"API contract is stale: the model card {card_path} changed since the contract was generated "
            f"(field(s) {', '.join(changed)}); run {REGENERATE} and commit it"
        )


def check_contract(directory: Path = CONTRACT_DIR, card: Path = MODEL_CARD) -> None:
    """Fail unless the contract was generated from `card` and every file the generator recorded still has the hash
    it recorded.

    The API's request and response models (request.schema.json, response.schema.json) are deployed from this
    directory: a model card changed without regenerating them would deploy a gateway that validates against the
    old model's features. Synth does not regenerate (it would rewrite committed files as a side effect): it fails
    naming the command, and `make synth` runs `make model` (which regenerates) first.
    """
    path = directory / CONTRACT_MANIFEST
    manifest = _read_json(path, "the manifest", REGENERATE)
    try:
        fields = dict(manifest["card"]["fields"])
        inputs, outputs = dict(manifest["inputs"]), dict(manifest["outputs"])
    except (KeyError, TypeError, ValueError) as error:
        raise StaleContractError(
            f"API contract: {path} does not record the model card it was generated from ({error}); run {REGENERATE}"
        ) from None
    if not fields or "request.schema.json" not in outputs:
        raise StaleContractError(f"API contract: {path} does not cover the model card; run {REGENERATE}")
    check_card(fields, card)
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
    model_card: Path = MODEL_CARD,
) -> list[PlatformStage]:
    """Add the environments selected by `-c env=...` (all by default) to `app`.

    Every environment and the pipeline are validated whatever `-c env=` selects, and an API contract
    stale against the model card fails, before any construct is created.
    """
    check_contract(contract_dir, model_card)
    context = app.node.try_get_context(CONTEXT_KEY)
    commit = app.node.try_get_context("commit") or "unknown"
    selection = app.node.try_get_context("env")
    environments = load_environments(context, default_account=default_account, default_region=default_region)
    pipeline = load_pipeline(context, environments)
    stages = [
        PlatformStage(app, settings.name, settings=settings, commit=commit, contract_dir=contract_dir)
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
