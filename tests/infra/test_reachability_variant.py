"""Reachability (reachability.py) of the compute only the variant config has: Model Monitor jobs' roles,
the drift job as an ECS Fargate task, SageMaker training jobs in production."""

from __future__ import annotations

from tests.infra.app_model import load_stages
from tests.infra.reachability import computes, interface_endpoints, services_called, unreachable, without


def test_the_fargate_drift_task_reaches_ecr_s3_and_logs_and_all_it_calls(variant) -> None:
    [prod] = [stage for stage in load_stages(variant.outdir) if stage.name == "prod"]
    [task] = [c for c in computes(prod) if c.kind == "ECS task"]
    assert {"ecr.api", "ecr.dkr", "s3", "logs"} <= services_called(prod, task)
    problems = unreachable(prod)
    assert not problems, "\n".join(problems)


TRAINING = "SageMaker training job"


def test_every_variant_stage_is_reachable(variant) -> None:
    problems = [p for stage in load_stages(variant.outdir) for p in unreachable(stage)]
    assert not problems, "\n".join(problems)


def test_the_training_jobs_reach_every_service_they_call(variant) -> None:
    """training.runner sagemaker (production, in the inference subnets): S3 through the gateway, logs, metrics
    and ECR through the interface endpoints (ml_constructs/training_runner.py lets HTTPS out to their group)."""
    stages = [stage for stage in load_stages(variant.outdir) if stage.name in ("prod", "Pipeline-prod")]
    assert len(stages) == 2
    for stage in stages:
        [job] = [c for c in computes(stage) if c.kind == TRAINING]
        assert {"ecr.api", "ecr.dkr", "logs", "monitoring", "s3"} <= services_called(stage, job)
    problems = [p for stage in stages for p in unreachable(stage) if TRAINING in p]
    assert not problems, "\n".join(problems)


def test_the_variant_stages_create_only_the_endpoints_their_compute_calls(variant) -> None:
    """Minimal (test_endpoint_selection.py) with the variant's compute: Model Monitor jobs, the Fargate task."""
    stages = {stage.name: stage for stage in load_stages(variant.outdir) if computes(stage)}
    for name, stage in stages.items():
        endpoints = interface_endpoints(stage)
        needed = {service for compute in computes(stage) for service in services_called(stage, compute)}
        assert set(endpoints) <= needed, f"{name}: unused {sorted(set(endpoints) - needed)}"
        for service, ref in endpoints.items():
            lost = f"calls {service}, which has no VPC endpoint"
            assert any(lost in p for p in unreachable(without(stage, [ref]))), (name, service)
    # Model Monitor (dev, staging) puts no events: no EventBridge endpoint; the Fargate drift task (prod) does.
    assert "events" not in interface_endpoints(stages["dev"]) and "events" not in interface_endpoints(stages["staging"])
    assert "events" in interface_endpoints(stages["prod"])
    jobs = [c for c in computes(stages["dev"]) if c.kind == "SageMaker monitoring job"]
    assert len(jobs) == 2  # data quality and model quality (dev's variant has ground truth)
    assert all({"ecr.api", "ecr.dkr", "logs", "monitoring", "s3"} <= services_called(stages["dev"], j) for j in jobs)
