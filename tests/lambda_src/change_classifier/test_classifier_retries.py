"""Issue 14, defect 8: the classifier's decision survives a failure after it was made, and malformed
UserParameters are refused by name.

CodePipeline invokes the function asynchronously ("Using AWS Lambda with AWS CodePipeline", Lambda Developer
Guide), so an invocation that raises is retried by Lambda twice ("How Lambda handles errors and retries with
asynchronous invocation"); the action itself waits for PutJobSuccessResult or PutJobFailureResult and otherwise
"hangs until the action times out" ("AWS Lambda invoke action reference", CodePipeline User Guide), which is
20 minutes without a reply ("Quotas in AWS CodePipeline"). So a retry must complete the recorded decision: one
audit record per job, each approval answered once, one report.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from change_classifier import handler as handler_module
from change_classifier.handler import run
from change_classifier.job import JobError, parse_job
from classifier_world import (
    APPROVALS,
    FakeCloudFormation,
    FakePipeline,
    StubbedClients,
    World,
    cdk_out_zip,
    job_event,
    unchanged_deployment,
)
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture
def fake(world: World) -> tuple[World, FakePipeline, StubbedClients]:
    """The moto world with stateful CodePipeline/CloudFormation fakes instead of the scripted Stubbers."""
    world.upload(cdk_out_zip())
    pipeline = FakePipeline()
    clients = StubbedClients(
        pipeline.client(), world.clients.dynamodb, FakeCloudFormation(unchanged_deployment()).client()
    )
    return world, pipeline, clients


def test_a_failed_success_report_is_retried_without_a_second_decision(fake: Any) -> None:
    world, pipeline, clients = fake
    pipeline.fail("PutJobSuccessResult", "ThrottlingException")
    with pytest.raises(Exception, match="ThrottlingException"):  # for Lambda's retry, decision recorded
        run(job_event(), clients)
    retried = run(job_event(), clients)  # Lambda's retry: same event
    assert retried["result"] == "success" and retried["summary"].startswith("auto-approved")
    items = world.audit_items()
    assert [i["decision"] for i in items] == ["auto-approved"], items  # one record, not a second contradictory one
    assert sorted(pipeline.approved) == sorted(APPROVALS)  # each approval answered once
    assert pipeline.outcome() == "success" and len(items[0]["attempts"]) == 2


def test_a_failed_approval_is_completed_by_the_retry(fake: Any) -> None:
    world, pipeline, clients = fake
    pipeline.fail("PutApprovalResult", "ThrottlingException")  # the first approval fails, after the record
    with pytest.raises(Exception, match="ThrottlingException"):
        run(job_event(), clients)
    assert [i["decision"] for i in world.audit_items()] == ["auto-approving"]  # the intent, recorded before acting
    assert run(job_event(), clients)["result"] == "success"
    [item] = world.audit_items()
    assert item["decision"] == "auto-approved" and sorted(pipeline.approved) == sorted(APPROVALS)
    assert item["approvals"] == {a: "approved" for a in APPROVALS}


def test_a_redelivery_of_a_reported_job_reports_nothing_new(fake: Any) -> None:
    world, pipeline, clients = fake
    assert run(job_event(), clients)["result"] == "success"
    assert run(job_event(), clients)["result"] == "success"  # InvalidJobStateException: reported already
    assert len(world.audit_items()) == 1 and pipeline.approved == sorted(APPROVALS)


def test_the_last_attempt_gives_up_explicitly(fake: Any) -> None:
    world, pipeline, clients = fake
    pipeline.fail("PutJobSuccessResult", *["ServiceUnavailable"] * handler_module.ATTEMPTS)
    for _ in range(handler_module.ATTEMPTS - 1):
        with pytest.raises(Exception, match="ServiceUnavailable"):
            run(job_event(), clients)
    result = run(job_event(), clients)  # the last of Lambda's attempts: fail the job, say why
    assert result["result"] == "gave-up" and "gave up after 3 attempts" in result["message"]
    assert pipeline.reports["job-1"][0][0] == "failure"
    assert "gave up after 3 attempts" in pipeline.reports["job-1"][0][1]["message"]
    [item] = world.audit_items()
    assert item["outcome"].startswith("gave up after 3 attempts completing decision auto-approved")


@pytest.mark.parametrize("key", ["approval_actions", "watched_stacks"])
def test_a_string_where_a_list_is_required_is_refused_by_name(fake: Any, key: str) -> None:
    _, pipeline, clients = fake
    value = {"approval_actions": "ModelApproval", "watched_stacks": "mlapi-prod-inference"}[key]
    result = run(job_event({key: value}), clients)
    assert result["result"] == "failure", result  # not split into characters
    assert f"UserParameters.{key} must be a JSON list of names" in result["message"]
    assert pipeline.reports["job-1"][0][1]["type"] == "ConfigurationError" and pipeline.approved == []


# ---- malformed input is data: properties -------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
KEYS = (
    "pipeline",
    "approval_stage",
    "approval_actions",
    "watched_stacks",
    "audit_table",
    "audit_pk",
    "assembly",
    "cfn_role_arn",
)
VALID = {
    "pipeline": "p",
    "approval_stage": "prod",
    "approval_actions": ["A"],
    "watched_stacks": ["S"],
    "audit_table": "t",
}


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=8), st.booleans())
def test_user_parameters_are_parsed_or_refused_never_mangled(raw: dict[str, Any], over_valid: bool) -> None:
    parameters = {**VALID, **raw} if over_valid else raw
    event = job_event()
    event["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]["UserParameters"] = json.dumps(parameters)
    try:
        parsed = parse_job(event).parameters
    except JobError as error:
        assert "UserParameters" in str(error)
        return
    # Accepted only as given: lists of names stay those names.
    assert list(parsed.approval_actions) == parameters["approval_actions"]
    assert list(parsed.watched_stacks) == parameters["watched_stacks"]
    assert all(isinstance(getattr(parsed, k), str) for k in ("pipeline", "approval_stage", "audit_table"))


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_any_event_is_a_job_or_refused_clearly(event: Any) -> None:
    assert handler_module.job_id(event) is None or isinstance(handler_module.job_id(event), str)
    if not isinstance(event, dict):
        return
    with pytest.raises(JobError):
        parse_job(event)  # arbitrary JSON is never a valid job; the only error is a JobError (ConfigurationError)


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {}, optional={"id": JSON | st.just("job-1"), "data": JSON | st.just(job_event()["CodePipeline.job"]["data"])}
    )
)
def test_a_damaged_job_event_fails_the_job_or_is_refused(job: dict[str, Any]) -> None:
    event = {"CodePipeline.job": job}
    if handler_module.job_id(event) is None:
        with pytest.raises(ValueError, match="not a CodePipeline job event"):
            handler_module.run(event, None)  # type: ignore[arg-type]  # nothing to report to: refused
        return
    try:
        parse_job(event)
    except JobError:
        return
    assert job["data"] == job_event()["CodePipeline.job"]["data"]  # only the intact job parses


@pytest.mark.parametrize(
    "manifest",
    [
        b"[1]",
        b'{"artifacts": ["a"]}',
        b'{"artifacts": {"s": "x"}}',
        b'{"artifacts": {"s": {"type": "aws:cloudformation:stack", "properties": '
        b'{"stackName": "mlapi-prod-inference"}}}}',
    ],
)
def test_a_malformed_manifest_is_a_configuration_error(fake: Any, manifest: bytes) -> None:
    world, pipeline, clients = fake
    world.upload(cdk_out_zip(lambda name, data: manifest if name.endswith("manifest.json") else data))
    result = run(job_event(), clients)
    assert result["result"] == "failure" and pipeline.reports["job-1"][0][1]["type"] == "ConfigurationError"
    assert pipeline.approved == []
