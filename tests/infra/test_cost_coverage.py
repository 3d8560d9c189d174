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
