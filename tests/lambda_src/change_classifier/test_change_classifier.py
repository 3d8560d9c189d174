"""The classifier end to end: artifact in S3, deployed templates, approvals, audit record, job result."""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.stub import ANY
from change_classifier import handler as handler_module
from change_classifier.handler import run
from classifier_world import (
    APPROVALS,
    LOCK_TABLE,
    PIPELINE,
    STAGE,
    World,
    as_deployed,
    cdk_out_zip,
    job_event,
    synthesized,
)

COMMIT = "1234567890abcdef1234567890abcdef12345678"
SUMMARY = "auto-approved: no model or inference change"


def deploy_unchanged(world: World) -> None:
    for stack in ("mlapi-prod-inference", "mlapi-prod-data"):
        world.deployed(stack, as_deployed(synthesized(stack)))


def expect_approvals(world: World, errors: dict[str, str] | None = None) -> None:
    for action in APPROVALS:
        params = {
            "pipelineName": PIPELINE,
            "stageName": STAGE,
            "actionName": action,
            "result": {"summary": SUMMARY, "status": "Approved"},
            "token": f"token-{action}",
        }
        if errors and action in errors:
            world.codepipeline.add_client_error(
                "put_approval_result", errors[action], "done", 400, expected_params=params
            )
        else:
            world.codepipeline.add_response("put_approval_result", {"approvedAt": "2026-03-01T12:00:00Z"}, params)


def expect_success(world: World) -> None:
    world.codepipeline.add_response(
        "put_job_success_result", {}, {"jobId": "job-1", "executionDetails": {"summary": ANY, "percentComplete": 100}}
    )


def expect_failure(world: World, failure_type: str) -> None:
    world.codepipeline.add_response(
        "put_job_failure_result", {}, {"jobId": "job-1", "failureDetails": {"type": failure_type, "message": ANY}}
    )


def only_audit_item(world: World) -> dict[str, Any]:
    items = world.audit_items()
    assert len(items) == 1
    return items[0]


def test_unchanged_release_is_auto_approved_and_audited(world: World) -> None:
    world.upload(cdk_out_zip())
    deploy_unchanged(world)
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})
    expect_approvals(world)
    expect_success(world)
    result = run(job_event(), world.clients)
    assert result["result"] == "success" and result["summary"].startswith(SUMMARY)
    item = only_audit_item(world)
    assert item["pk"] == f"PIPELINE#{PIPELINE}" and item["sk"].startswith("DECISION#") and item["sk"].endswith("#job-1")
    assert item["who"] == "auto-classifier" and item["decision"] == "auto-approved"
    assert item["execution_id"] == "exec-42" and item["commit"] == COMMIT
    assert item["approvals"] == {a: "approved" for a in APPROVALS}
    assert {s["stack"]: s["changed"] for s in item["stacks_compared"]} == {
        "mlapi-prod-inference": False,
        "mlapi-prod-data": False,
    }
    assert world.clients.regions == ["eu-west-1", "eu-west-1"]  # from the manifest's environment


def test_classifier_waits_until_the_approvals_are_pending(world: World) -> None:
    world.upload(cdk_out_zip())
    deploy_unchanged(world)
    world.pipeline_state({"ModelApproval": None, "OperationsApproval": None})  # stage just started
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": None})
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})
    expect_approvals(world)
    expect_success(world)
    assert run(job_event(), world.clients)["result"] == "success"
    assert only_audit_item(world)["decision"] == "auto-approved"


def test_approvals_never_pending_are_left_for_humans(world: World) -> None:
    world.upload(cdk_out_zip())
    deploy_unchanged(world)
    for _ in range(3):  # APPROVAL_WAIT_ATTEMPTS in the test world
        world.pipeline_state({"ModelApproval": "Succeeded", "OperationsApproval": "InProgress"})
    expect_success(world)
    result = run(job_event(), world.clients)
    assert result["result"] == "success" and "left for humans" in result["summary"]
    item = only_audit_item(world)
    assert item["decision"] == "left-for-humans" and "approvals" not in item


def test_approval_answered_by_a_human_first_still_succeeds(world: World) -> None:
    world.upload(cdk_out_zip())
    deploy_unchanged(world)
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})
    expect_approvals(world, errors={"ModelApproval": "ApprovalAlreadyCompletedException"})
    expect_success(world)
    assert run(job_event(), world.clients)["result"] == "success"
    assert only_audit_item(world)["approvals"] == {
        "ModelApproval": "already settled: ApprovalAlreadyCompletedException",
        "OperationsApproval": "approved",
    }


def _new_model(name: str, data: bytes) -> bytes:
    text = data.decode()
    if name.endswith("prodInference18B729AF.template.json"):
        text = text.replace("bf9558756f5ead0c", "0123456789abcdef").replace(
            "b7ed74cbd9f5aa3705c866deac72c00d4d1e75eb5a5afd26f7e25a8fbe3cbe3a", "f" * 64
        )
    return text.encode()


def _new_lambda_code(name: str, data: bytes) -> bytes:
    return data.replace(b"d60d27aa18746dfb222177c50436c2880cdd78e6d003df076915d2ca9b31da16", b"e" * 64)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_new_model, "model hash bf9558756f5ead0c -> 0123456789abcdef"),
        (_new_lambda_code, "Resources.ReleasesRecorderFunctionC5A01C0C changed"),
    ],
)
def test_changed_inference_stack_is_left_for_humans(world: World, edit: Any, reason: str) -> None:
    world.upload(cdk_out_zip(edit))
    deploy_unchanged(world)
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})  # execution id only
    expect_success(world)  # and no put_approval_result: the stubber would fail on an unexpected call
    result = run(job_event(), world.clients)
    assert result["result"] == "success" and "left for humans" in result["summary"]
    item = only_audit_item(world)
    assert item["decision"] == "left-for-humans" and item["execution_id"] == "exec-42"
    inference = next(s for s in item["stacks_compared"] if s["stack"] == "mlapi-prod-inference")
    assert inference["changed"] is True and reason in inference["reasons"]


def test_stack_not_deployed_yet_counts_as_a_change(world: World) -> None:
    world.upload(cdk_out_zip())
    world.deployed("mlapi-prod-inference", None)
    world.deployed("mlapi-prod-data", as_deployed(synthesized("mlapi-prod-data")))
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})
    expect_success(world)
    run(job_event(), world.clients)
    item = only_audit_item(world)
    assert item["decision"] == "left-for-humans"
    assert item["stacks_compared"][0]["reasons"] == ["stack does not exist yet"]


def test_audit_partition_comes_from_user_parameters(world: World) -> None:
    world.upload(cdk_out_zip())
    world.deployed("mlapi-prod-inference", None)
    world.deployed("mlapi-prod-data", None)
    world.pipeline_state({})
    expect_success(world)
    run(job_event({"audit_pk": "APPROVALS#prod"}), world.clients)
    assert only_audit_item(world)["pk"] == "APPROVALS#prod"


# ---- errors: always reported to CodePipeline ---------------------------------------------------------
def test_artifact_that_is_not_a_zip_fails_the_job(world: World) -> None:
    world.upload(b"not a zip")
    expect_failure(world, "ConfigurationError")
    result = run(job_event(), world.clients)
    assert result["result"] == "failure" and "is not a zip" in result["message"]
    # The failure is the job's record: a redelivery of the job reports it again instead of deciding.
    item = only_audit_item(world)
    assert (item["decision"], item["failure_type"], item["summary"]) == (
        "failed",
        "ConfigurationError",
        result["message"],
    )


def test_missing_watched_stack_fails_the_job(world: World) -> None:
    world.upload(cdk_out_zip())
    expect_failure(world, "ConfigurationError")
    result = run(job_event({"watched_stacks": ["mlapi-prod-inference", "mlapi-prod-api"]}), world.clients)
    assert "mlapi-prod-api not found" in result["message"]


def test_access_denied_on_get_template_is_a_permission_error(world: World) -> None:
    world.upload(cdk_out_zip())
    world.cloudformation.add_client_error("get_template", "AccessDenied", "not authorized", 403)
    expect_failure(world, "PermissionError")
    assert run(job_event(), world.clients)["result"] == "failure"


def test_no_approval_without_an_audit_record(world: World) -> None:
    # The table is read first (a recorded decision of this job is resumed), so nothing is compared either.
    expect_failure(world, "JobFailed")  # the stubber fails the test on any put_approval_result
    result = run(job_event({"audit_table": "no-such-table"}), world.clients)
    assert result["result"] == "failure" and "ResourceNotFoundException" in result["message"]


def test_no_approval_when_the_audit_write_fails(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.upload(cdk_out_zip())
    deploy_unchanged(world)
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})
    expect_failure(world, "JobFailed")  # and no put_approval_result

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("PutItem refused")

    monkeypatch.setattr(handler_module.AuditLog, "record", refused)
    result = run(job_event(), world.clients)
    assert result["result"] == "failure" and "PutItem refused" in result["message"]
    assert world.audit_items() == []


def test_malformed_user_parameters_fail_the_job(world: World) -> None:
    event = job_event()
    event["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]["UserParameters"] = "{not json"
    expect_failure(world, "ConfigurationError")
    assert "malformed" in run(event, world.clients)["message"]


def test_stack_in_two_assemblies_needs_the_assembly_parameter(world: World) -> None:
    archive = cdk_out_zip()
    buffer = io.BytesIO(archive)
    with zipfile.ZipFile(buffer, "a") as combined, zipfile.ZipFile(io.BytesIO(archive)) as original:
        # The app's own prod stage next to the pipeline's, as this repository's cdk.out has them.
        for name in original.namelist():
            combined.writestr(name.replace("assembly-prod/", "assembly-Pipeline-prod/"), original.read(name))
    world.upload(buffer.getvalue())
    expect_failure(world, "ConfigurationError")
    assert "set UserParameters.assembly" in run(job_event(), world.clients)["message"]

    deploy_unchanged(world)
    world.pipeline_state({"ModelApproval": "InProgress", "OperationsApproval": "InProgress"})
    expect_approvals(world)
    world.codepipeline.add_response("put_job_success_result", {}, {"jobId": "job-2", "executionDetails": ANY})
    result = run(job_event({"assembly": "assembly-Pipeline-prod"}, job_id="job-2"), world.clients)
    assert result["result"] == "success"


def test_lambda_handler_entry_point(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.upload(b"not a zip")
    expect_failure(world, "ConfigurationError")
    monkeypatch.setattr(handler_module, "default_clients", lambda: world.clients)
    for variable, value in {
        "DECISION_LOCK_TABLE": LOCK_TABLE,
        "DECISION_LOCK_NAME": "classifier",
        "DECISION_LOCK_LEASE_SECONDS": "150",
    }.items():
        monkeypatch.setenv(variable, value)
    context = SimpleNamespace(
        function_name="mlapi-change-classifier",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:x",
        aws_request_id="req-1",
    )
    assert handler_module.handler(job_event(), context)["result"] == "failure"


def test_event_without_a_job_raises(world: World) -> None:
    with pytest.raises(ValueError, match="not a CodePipeline job event"):
        run({"detail": json.dumps({})}, world.clients)
