"""The retraining trigger under single AWS faults (tests/fault_injection.py), then Lambda's retry.

Each scenario runs `decide` (lock, list, read, start, release) fault-free to record its calls, then once per call
k with call k failing (throttling, 5xx, a conditional-check failure on the lock's conditional writes), followed by
Lambda's retry of a failed invocation (same event, same request id: "How Lambda handles errors and retries with
asynchronous invocation"). Invariants after every invocation:
- one pipeline execution per drift episode: never a second start, whatever call failed (the request token is the
  event's, and a retry sees the run it started);
- every start carries a valid request token (1-128 of [a-zA-Z0-9-], CodePipeline API Reference,
  StartPipelineExecution) and a non-empty RETRAINING_REASON;
- at the end a retraining run exists (the retry completed);
- no lock is left held, except when releasing it was the failed call, and then only until its lease ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from retraining_trigger import handler
from retraining_trigger.decision_lock import DecisionLock
from trigger_world import PIPELINE, REGION, SESSION, TOKEN, Execution, FakeCodePipeline

from tests.fault_injection import FaultCase, Scenario, Step, Trace, count_pairs, fault_cases, patched_env, run_scenario

LOCK_TABLE, LEASE = "decision-locks", 90
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "retraining-trigger",
}


def drift(event_id: str | None, feature: str = "feature_3") -> dict[str, Any]:
    event = {
        "id": event_id,
        "source": "ml-platform.drift-monitor",
        "detail-type": "Model Drift Detected",
        "detail": {
            "endpointName": "mlapi-prod-endpoint",
            "modelVersion": "1.0.0",
            "window": {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"},
            "driftedFeatures": [{"feature": feature, "psi": 0.83}],
        },
    }
    return {k: v for k, v in event.items() if v is not None}


MONITOR = {
    "id": "e-2",
    "source": "aws.sagemaker",
    "detail-type": "SageMaker Processing Job State Change",
    "detail": {
        "MonitoringScheduleArn": "arn:aws:sagemaker:eu-west-1:111111111111:monitoring-schedule/q",
        "ProcessingJobStatus": "Completed",
        "ExitMessage": "CompletedWithViolations",
    },
}


def provision() -> None:
    SESSION.client("dynamodb").create_table(
        TableName=LOCK_TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
    )


@dataclass
class World:
    pipeline: FakeCodePipeline
    client: Any
    lock: DecisionLock

    def decide(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        return handler.decide(event, self.lock, request_id, self.client, PIPELINE)


def setup() -> World:
    # A release in progress (not a retraining run) and an old run: both are read, neither blocks retraining.
    pipeline = FakeCodePipeline(
        [Execution("release", variables={"RETRAINING": "false"}), Execution("old", status="Succeeded")]
    )
    lock = DecisionLock(SESSION.client("dynamodb"), LOCK_TABLE, f"{PIPELINE}-retraining-trigger", lease_seconds=LEASE)
    return World(pipeline, pipeline.client(), lock)


def check(world: World, trace: Trace) -> None:
    started = world.pipeline.started
    assert len(started) <= 1, f"{len(started)} retraining runs for one drift episode: {[s.token for s in started]}"
    for run in started:
        assert run.token is not None and TOKEN.match(run.token), run.token
        assert run.variables.get("RETRAINING") == "true" and run.variables.get("RETRAINING_REASON")
    if len(trace.steps) < len(STEPS[trace.scenario]):
        return
    assert len(started) == 1, "no retraining run after the retry"
    lease = world.lock.current()
    if lease is not None:
        assert trace.fired is not None and trace.fired.operation == "DeleteItem", f"lock left held: {lease}"
        assert lease.expires_at <= time.time() + LEASE


def _environment() -> Any:
    return patched_env(ENVIRONMENT)


STEPS: dict[str, tuple[Step[World], ...]] = {}


def _scenario(name: str, *steps: Step[World]) -> Scenario[World]:
    STEPS[name] = steps
    return Scenario(name=name, steps=steps, setup=setup, check=check, provision=provision, environment=_environment)


DRIFT_STARTS_RUN = _scenario("trigger_drift_starts_run", Step("drift", lambda w: w.decide(drift("ev-1"), "req-1")))
WITHOUT_ID = _scenario("trigger_event_without_id", Step("drift", lambda w: w.decide(drift(None), "req-1")))
MONITOR_VIOLATIONS = _scenario("trigger_model_monitor", Step("monitor", lambda w: w.decide(MONITOR, "req-1")))
# The same event redelivered (EventBridge delivers at least once), then a second drift event: one run in all.
EPISODE = _scenario(
    "trigger_drift_episode",
    Step("drift", lambda w: w.decide(drift("ev-1"), "req-1")),
    Step("redelivered", lambda w: w.decide(drift("ev-1"), "req-2")),
    Step("more drift", lambda w: w.decide(drift("ev-2", "feature_7"), "req-3")),
)
SCENARIOS = [DRIFT_STARTS_RUN, WITHOUT_ID, MONITOR_VIOLATIONS, EPISODE]


def test_scenarios_without_faults_start_one_run() -> None:
    for scenario in SCENARIOS:
        trace = run_scenario(scenario)
        assert trace.unhandled == []
        results = [r for step in trace.steps for r in trace.results(step.name)]
        assert [r["started"] for r in results] == [True] + [False] * (len(results) - 1)
    with _environment():
        assert count_pairs(SCENARIOS) >= 60  # reported in README (the lead merges the figure)


with _environment():  # the recording run at collection needs the region and the fake credentials
    CASES = fault_cases(SCENARIOS)


@pytest.mark.parametrize("case", CASES)
def test_single_fault_then_lambdas_retry(case: FaultCase) -> None:
    trace = run_scenario(case.scenario, case.fault)
    assert trace.unhandled == [], trace.unhandled
