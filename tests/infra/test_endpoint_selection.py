"""Each environment creates only the interface endpoints its compute calls (ml_constructs/private_network.py
COMPUTE_CALLS, compute_kinds), and reachability.py proves the choice both ways: every call reachable, and no
endpoint (no table row) that could go without some compute losing a service it calls."""

from __future__ import annotations

import copy

import pytest

from ml_constructs.private_network import COMPUTE_CALLS, ENDPOINT_IDS, compute_kinds, interface_services
from platform_config import load_environments
from tests.infra.app_model import StageModel, load_stages
from tests.infra.reachability import (
    ENDPOINT_SERVICES,
    computes,
    interface_endpoints,
    services_called,
    unreachable,
    without,
)

# Stage -> environment: the pipeline deploys staging and prod as stages of its own (same settings).
ENVIRONMENT_OF = {"dev": "dev", "staging": "staging", "prod": "prod", "Pipeline-staging": "staging",
                  "Pipeline-prod": "prod"}  # fmt: skip


@pytest.fixture(scope="module")
def settings(cdk_context):
    return {s.name: s for s in load_environments(cdk_context["ml-platform"])}


@pytest.fixture(scope="module")
def stages(synthesized) -> dict[str, StageModel]:
    return {stage.name: stage for stage in load_stages(synthesized.outdir) if stage.name in ENVIRONMENT_OF}


def kinds_of(settings, stage: str) -> tuple[str, ...]:
    # The shipped pipeline retrains in CodeBuild (training.runner build): no training jobs in any VPC.
    return compute_kinds(settings[ENVIRONMENT_OF[stage]], training_jobs=False)


def needed(stage: StageModel) -> set[str]:
    return {service for compute in computes(stage) for service in services_called(stage, compute)}


def test_every_environment_stage_is_checked(stages) -> None:
    assert set(stages) == set(ENVIRONMENT_OF)


@pytest.mark.parametrize("name", sorted(ENVIRONMENT_OF))
def test_the_stage_creates_the_endpoints_of_its_compute_kinds(stages, settings, name: str) -> None:
    assert sorted(interface_endpoints(stages[name])) == list(interface_services(kinds_of(settings, name)))


@pytest.mark.parametrize("name", sorted(ENVIRONMENT_OF))
def test_no_interface_endpoint_that_no_compute_needs(stages, name: str) -> None:
    stage = stages[name]
    assert not unreachable(stage), "\n".join(unreachable(stage))
    endpoints = interface_endpoints(stage)
    assert set(endpoints) <= needed(stage), f"{name}: unused {sorted(set(endpoints) - needed(stage))}"
    # Minimal in the reachability check's own terms: without any one of them some compute loses a call.
    for service, ref in endpoints.items():
        problems = unreachable(without(stage, [ref]))
        assert any(f"calls {service}, which has no VPC endpoint" in p for p in problems), (name, service)


def test_removing_a_table_row_fails_the_reachability_check(stages, settings) -> None:
    """What a row alone supplies, removed from the synthesized stage (as the app would be without the row)."""
    failed: set[str] = set()
    for name, stage in stages.items():
        kinds = kinds_of(settings, name)
        endpoints = interface_endpoints(stage)
        for kind in kinds:
            only_this_row = set(interface_services(kinds)) - set(interface_services(k for k in kinds if k != kind))
            if not only_this_row:
                continue
            problems = unreachable(without(stage, [endpoints[s] for s in only_this_row]))
            lost = {s for s in only_this_row if any(f"calls {s}, which has no VPC endpoint" in p for p in problems)}
            assert lost, f"{name}: the check passes without row {kind} ({sorted(only_this_row)})"
            failed.add(kind)
    # The rows the shipped config uses that supply a service no other row does (batch-transform overlaps hosting).
    assert failed == {"sagemaker-hosting", "release-functions", "drift-function"}


def test_the_shipped_environments_drop_sts_and_sagemaker_runtime(stages) -> None:
    # No compute in the VPC assumes a role (each gets its credentials from its service) or invokes the endpoint
    # (API Gateway does, from outside the VPC): 8 of the 10 endpoints stay in each environment.
    for name, stage in stages.items():
        assert not {"sts", "sagemaker.runtime"} & set(interface_endpoints(stage)), name
        assert len(interface_endpoints(stage)) == 8, name


# Without synth: the table and the settings.


def test_every_row_cites_its_source_and_names_known_endpoints() -> None:
    for kind, row in COMPUTE_CALLS.items():
        assert row.services and set(row.services) <= set(ENDPOINT_IDS), kind
        assert row.sources and all(source.startswith("https://") for source in row.sources), kind
    # Each interface service the reachability check can ask for has an endpoint the network can create.
    interface = {s for services in ENDPOINT_SERVICES.values() for s in services} - {"s3", "dynamodb"}
    assert interface <= set(ENDPOINT_IDS)


def test_compute_kinds_follow_the_settings(cdk_context) -> None:
    context = copy.deepcopy(cdk_context["ml-platform"])
    dev = context["environments"]["dev"]
    dev.setdefault("monitoring", {})["runner"] = "fargate"
    dev.setdefault("batch", {})["enabled"] = False
    context["environments"]["staging"].setdefault("monitoring", {})["engine"] = "model_monitor"
    by_name = {s.name: s for s in load_environments(context)}
    assert compute_kinds(by_name["dev"], training_jobs=False) == (
        "sagemaker-hosting",
        "release-functions",
        "drift-task",
    )
    staging = compute_kinds(by_name["staging"], training_jobs=False)
    assert "model-monitor-jobs" in staging and not {"drift-function", "drift-task"} & set(staging)
    assert "events" not in interface_services(staging)  # only the built-in drift job puts events
    assert compute_kinds(by_name["prod"], training_jobs=True)[-1] == "training-jobs"
    assert "events" in interface_services(compute_kinds(by_name["dev"], training_jobs=False))
