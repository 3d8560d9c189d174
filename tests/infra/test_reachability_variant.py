"""Reachability (reachability.py) of the compute only the variant config has: Model Monitor jobs' roles,
the drift job as an ECS Fargate task."""

from __future__ import annotations

from tests.infra.app_model import load_stages
from tests.infra.reachability import computes, services_called, unreachable


def test_the_fargate_drift_task_reaches_ecr_s3_and_logs_and_all_it_calls(variant) -> None:
    [prod] = [stage for stage in load_stages(variant.outdir) if stage.name == "prod"]
    [task] = [c for c in computes(prod) if c.kind == "ECS task"]
    assert {"ecr.api", "ecr.dkr", "s3", "logs"} <= services_called(prod, task)
    assert not unreachable(prod), "\n".join(unreachable(prod))


def test_every_variant_stage_is_reachable(variant) -> None:
    problems = [p for stage in load_stages(variant.outdir) for p in unreachable(stage)]
    assert not problems, "\n".join(problems)
