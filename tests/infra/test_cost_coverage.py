"""make cost covers the whole app: every resource type it synthesizes is priced, free or listed as unpriced."""

from __future__ import annotations

from scripts import cost_estimate
from tests.infra.conftest import Synthesized


def test_every_resource_type_is_priced_free_or_listed(synthesized: Synthesized) -> None:
    types = {r["Type"] for template in synthesized.templates.values() for r in template["Resources"].values()}
    assert cost_estimate.unknown_types(types) == []


def test_every_environment_is_estimated(synthesized: Synthesized) -> None:
    prices = cost_estimate.json.loads(cost_estimate.DEFAULT_PRICES.read_text())
    for name in ("dev", "staging", "prod"):
        env = cost_estimate.load_environment(synthesized.outdir, name, prices, rps=50)
        lines, _ = cost_estimate.estimate(env)
        items = {line.item for line in lines}
        # The lines that dominate an idle environment's bill are all there.
        assert {"interface VPC endpoints", "WAF web ACL", "CloudWatch alarms", "KMS keys"} <= items
        assert any(item.startswith("endpoint ml.") or item == "serverless inference" for item in items)


def test_the_variant_app_is_fully_priced(variant) -> None:
    """The options the shipped config leaves off (tests/infra/conftest.py `variant`): Model Monitor in dev and
    staging, the Fargate drift task in prod, SageMaker training in production. Every environment is estimated,
    dev's two Model Monitor schedules (data and model quality) and prod's Fargate runs with a price."""
    prices = cost_estimate.json.loads(cost_estimate.DEFAULT_PRICES.read_text())
    by_env = {}
    for name in ("dev", "staging", "prod"):
        env = cost_estimate.load_environment(variant.outdir, name, prices, rps=50)
        assert cost_estimate.unknown_types({r["Type"] for r in env.resources}) == [], name
        lines, _ = cost_estimate.estimate(env)
        by_env[name] = {line.item: line for line in lines}
    monitors = {item: line for item, line in by_env["dev"].items() if item.startswith("Model Monitor ")}
    assert sorted(monitors) == ["Model Monitor mlapi-dev-data-quality", "Model Monitor mlapi-dev-model-quality"]
    assert all(line.idle > 0 and "runs (hourly)" in line.assumption for line in monitors.values())
    assert "drift job (hourly Lambda)" not in by_env["dev"]  # Model Monitor replaces the built-in job
    assert by_env["prod"]["drift job (hourly Fargate task)"].idle > 0
    # Staging runs Model Monitor without a baselined version: no schedule yet, so nothing to price.
    assert not any(item.startswith("Model Monitor ") for item in by_env["staging"])
    pipeline = {r["Type"] for r in variant.pipeline["Resources"].values()}
    assert cost_estimate.unknown_types(pipeline) == []
