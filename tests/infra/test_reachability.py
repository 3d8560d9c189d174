"""Every compute in the VPC reaches every AWS service it calls (rules and sources: reachability.py)."""

from __future__ import annotations

import pytest

from tests.infra.app_model import load_stages
from tests.infra.reachability import computes, services_called, unreachable


@pytest.fixture(scope="module")
def stages(synthesized):
    return [stage for stage in load_stages(synthesized.outdir) if computes(stage)]


def test_every_stage_with_compute_in_a_vpc_is_checked(stages) -> None:
    assert {s.name for s in stages} >= {"dev", "staging", "prod", "Pipeline-staging", "Pipeline-prod"}


def test_the_endpoint_model_needs_s3_ecr_and_logs(stages) -> None:
    [dev] = [s for s in stages if s.name == "dev"]
    [model] = [c for c in computes(dev) if c.kind == "SageMaker model"]
    assert {"s3", "ecr.api", "ecr.dkr", "logs"} <= services_called(dev, model)
    lambdas = [c for c in computes(dev) if c.kind == "Lambda function"]
    assert lambdas and any("dynamodb" in services_called(dev, c) for c in lambdas)


def test_every_compute_reaches_every_service_it_calls(stages) -> None:
    problems = [problem for stage in stages for problem in unreachable(stage)]
    assert not problems, "\n".join(problems)
