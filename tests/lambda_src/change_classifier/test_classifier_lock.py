"""The classifier decides one job at a time under its decision lock (lambda_src/.../decision_lock.py), which
replaces reserved concurrency: a duplicate delivery of the job being classified returns, another job waits for
Lambda's retry, and a lock that cannot be checked fails the job instead of deciding without it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from botocore.stub import ANY
from change_classifier import handler as handler_module
from change_classifier.decision_lock import LockBusy
from change_classifier.handler import decide
from classifier_world import World, cdk_out_zip, job_event
from test_change_classifier import deploy_unchanged, expect_approvals, expect_success


def test_a_classification_holds_the_lock_and_gives_it_back(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.upload(cdk_out_zip())
    deploy_unchanged(world)
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})
    expect_approvals(world)
    expect_success(world)
    held, classify = [], handler_module.classify

    def classify_and_look(*args: Any) -> Any:
        held.append(world.lock().current())
        return classify(*args)

    monkeypatch.setattr(handler_module, "classify", classify_and_look)
    assert decide(job_event(), world.clients, world.lock(), "request-1")["result"] == "success"
    assert held[0] is not None and (held[0].holder, held[0].subject) == ("request-1", "job-1")
    assert world.lock().current() is None


def test_a_duplicate_delivery_of_the_job_being_classified_returns_without_reporting(world: World) -> None:
    world.lock().acquire(holder="request-1", subject="job-1")
    result = decide(job_event(), world.clients, world.lock(), "request-2")
    assert result == {"job_id": "job-1", "result": "duplicate", "message": "request-1 classifies this job"}
    assert world.audit_items() == []  # no decision, no CodePipeline call (the Stubber holds no response)


def test_another_job_being_classified_makes_this_invocation_fail_for_lambdas_retry(world: World) -> None:
    world.lock().acquire(holder="request-1", subject="job-0")
    with pytest.raises(LockBusy, match="held by request-1 for job-0"):
        decide(job_event(), world.clients, world.lock(), "request-2")
    assert world.audit_items() == []


def test_a_lock_table_that_cannot_be_read_fails_the_job_without_deciding(world: World) -> None:
    world.codepipeline.add_response(
        "put_job_failure_result", {}, {"jobId": "job-1", "failureDetails": {"type": "JobFailed", "message": ANY}}
    )
    result = decide(job_event(), world.clients, world.lock("no-such-table"), "request-1")
    assert result["result"] == "failure" and "ResourceNotFoundException" in result["message"]
    assert [i["decision"] for i in world.audit_items()] == ["failed"]  # nothing decided; the failure recorded


def test_an_unwired_lock_fails_the_job(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module, "default_clients", lambda: world.clients)
    monkeypatch.delenv("DECISION_LOCK_TABLE", raising=False)
    world.codepipeline.add_response(
        "put_job_failure_result", {}, {"jobId": "job-1", "failureDetails": {"type": "JobFailed", "message": ANY}}
    )
    context = SimpleNamespace(
        function_name="mlapi-change-classifier",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:x",
        aws_request_id="req-1",
    )
    result = handler_module.handler(job_event(), context)
    assert result["result"] == "failure" and "DECISION_LOCK_TABLE" in result["message"]
