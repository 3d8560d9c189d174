"""The classifier's job under single AWS faults (tests/fault_injection.py), and its retries.

Each scenario runs `decide` (the lock, then `run`) once fault-free to record its AWS calls, then once per call k
with call k failing (throttling, 5xx, a conditional-check failure on conditional writes, NoSuchKey on the artifact),
followed by Lambda's retry of a failed invocation (same request id, "How Lambda handles errors and retries with
asynchronous invocation"; CodePipeline invokes the function asynchronously, "Using AWS Lambda with AWS
CodePipeline"). Invariants after every invocation:
- at most one audit decision per job, and never an approval without it (the record is the intent);
- an approval is given only for an auto-approving decision, and each approval at most once;
- at the end the job is reported exactly once (CodePipeline's "AWS Lambda invoke action reference": without
  PutJobSuccessResult or PutJobFailureResult the action hangs until it times out), and the report agrees with the
  record: success <=> a completed decision (auto-approved with every approval answered, or left for humans);
- no lock is left held, except when releasing it was the failed call, and then only until its lease ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.config import Config
from change_classifier.decision_lock import DecisionLock
from change_classifier.handler import Clients, decide
from classifier_world import (
    APPROVALS,
    ARTIFACT_BUCKET,
    ARTIFACT_KEY,
    AUDIT_TABLE,
    LOCK_NAME,
    LOCK_TABLE,
    REGION,
    SESSION,
    FakeCloudFormation,
    FakePipeline,
    cdk_out_zip,
    job_event,
    shared,
    unchanged_deployment,
)

from tests.fault_injection import FaultCase, Scenario, Step, Trace, count_pairs, fault_cases, patched_env, run_scenario

LEASE = 150
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "APPROVAL_WAIT_ATTEMPTS": "3",
    "APPROVAL_WAIT_SECONDS": "0",
    "AWS_API_MAX_ATTEMPTS": "1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "change-classifier",
}
ARCHIVE = cdk_out_zip()
UNCHANGED = unchanged_deployment()


def provision() -> None:
    s3 = SESSION.client("s3")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    dynamodb = SESSION.client("dynamodb")
    for name in (AUDIT_TABLE, LOCK_TABLE):
        dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
        )


class FaultClients(Clients):
    def __init__(self, codepipeline: Any, cloudformation: Any) -> None:
        super().__init__(
            codepipeline=codepipeline, dynamodb=shared("dynamodb resource", lambda: SESSION.resource("dynamodb"))
        )
        self._cloudformation = cloudformation

    def artifacts_s3(self, job: Any) -> Any:  # the job's own credentials, from the shared session's models
        return shared(
            f"s3 {sorted(job.credentials.items())}",
            lambda: SESSION.client("s3", config=Config(signature_version="s3v4"), **job.credentials),
        )

    def cloudformation_for(self, job: Any) -> Any:
        return lambda region: self._cloudformation


@dataclass
class World:
    pipeline: FakePipeline
    clients: FaultClients
    lock: DecisionLock

    def decide(self, request_id: str, job: str = "job-1") -> dict[str, str]:
        return decide(job_event(job_id=job), self.clients, self.lock, request_id)

    def decisions(self, job: str = "job-1") -> list[dict[str, Any]]:
        items = self.clients.dynamodb.Table(AUDIT_TABLE).scan()["Items"]
        return [i for i in items if i.get("job_id") == job]


def world_with(deployed: dict[str, Any]) -> World:
    # Uploaded per run, not provisioned: a deep copy of moto's S3 backend loses an object's body (it lives in a
    # spooled temporary file) and keeps its checksum, so the restored object fails botocore's checksum check.
    shared("s3", lambda: SESSION.client("s3")).put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=ARCHIVE)
    pipeline = FakePipeline()
    dynamodb = shared("dynamodb", lambda: SESSION.client("dynamodb"))
    lock = DecisionLock(dynamodb, LOCK_TABLE, LOCK_NAME, lease_seconds=LEASE)
    return World(pipeline, FaultClients(pipeline.client(), FakeCloudFormation(deployed).client()), lock)


def check(world: World, trace: Trace) -> None:
    decisions, pipeline = world.decisions(), world.pipeline
    assert len(decisions) <= 1, f"{len(decisions)} audit decisions for one job: {decisions}"
    decision = decisions[0] if decisions else None
    if decision is not None and decision["decision"] in ("failed", "left-for-humans"):
        assert pipeline.approved == [], f"approved although the job's record says {decision['decision']}"
    if pipeline.approved:
        assert decision is not None, "approved without an audit record"
        assert decision["decision"] in ("auto-approving", "auto-approved"), decision["decision"]
    assert len(pipeline.approved) == len(set(pipeline.approved)), pipeline.approved
    if len(trace.steps) < len(SCENARIO_STEPS[trace.scenario]):
        return
    outcome = pipeline.outcome()
    assert outcome is not None, "the job was never reported: the action would hang until it times out"
    if outcome == "success":
        assert decision is not None and decision["decision"] in ("auto-approved", "left-for-humans"), decision
        if decision["decision"] == "auto-approved":
            assert sorted(pipeline.approved) == sorted(APPROVALS)
            assert sorted(decision["approvals"]) == sorted(APPROVALS)
        else:
            assert pipeline.approved == []
    else:  # failed before deciding: the failure is the job's record (when the table took it), nothing approved
        assert (decision is None or decision["decision"] == "failed") and pipeline.approved == [], decision
    lease = world.lock.current()
    if lease is not None:
        assert trace.fired is not None and trace.fired.operation == "DeleteItem", f"lock left held: {lease}"
        assert lease.expires_at <= time.time() + LEASE


def _environment() -> Any:
    return patched_env(ENVIRONMENT)


def _scenario(name: str, deployed: dict[str, Any], steps: tuple[Step[World], ...]) -> Scenario[World]:
    SCENARIO_STEPS[name] = steps
    return Scenario(
        name=name,
        steps=steps,
        setup=lambda: world_with(deployed),
        check=check,
        provision=provision,
        environment=_environment,
    )


SCENARIO_STEPS: dict[str, tuple[Step[World], ...]] = {}
AUTO_APPROVE = _scenario("classifier_auto_approve", UNCHANGED, (Step("job", lambda w: w.decide("request-1")),))
LEFT_FOR_HUMANS = _scenario(
    "classifier_left_for_humans",
    {**UNCHANGED, "mlapi-prod-inference": None},
    (Step("job", lambda w: w.decide("request-1")),),
)
# The same job delivered again after it completed (a duplicate delivery under another request id).
REDELIVERED = _scenario(
    "classifier_job_redelivered",
    UNCHANGED,
    (Step("job", lambda w: w.decide("request-1")), Step("again", lambda w: w.decide("request-2"))),
)
SCENARIOS = [AUTO_APPROVE, LEFT_FOR_HUMANS, REDELIVERED]


def test_scenarios_without_faults_complete() -> None:
    for scenario, summary in (
        (AUTO_APPROVE, "auto-approved: no model"),
        (LEFT_FOR_HUMANS, "left for humans"),
        (REDELIVERED, "auto-approved: no model"),
    ):
        trace = run_scenario(scenario)
        assert trace.unhandled == []
        assert [(r["result"], summary in r["summary"]) for r in trace.results("job")] == [("success", True)]
    with _environment():
        assert count_pairs(SCENARIOS) >= 100  # reported in README (the lead merges the figure)


with _environment():  # the recording run at collection needs the region and the fake credentials
    CASES = fault_cases(SCENARIOS)


@pytest.mark.parametrize("case", CASES)
def test_single_fault_then_lambdas_retry(case: FaultCase) -> None:
    trace = run_scenario(case.scenario, case.fault)
    assert trace.unhandled == [], trace.unhandled  # bounded: the retry (or an explicit failure report) ends it
