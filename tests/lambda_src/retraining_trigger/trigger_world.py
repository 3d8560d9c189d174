"""A stateful CodePipeline for the retraining trigger's tests (a uniquely named module on sys.path).

moto has no pipeline executions with variables; a Stubber scripts one fixed sequence, which a retry after a fault
changes. The fake answers through botocore's `before-call` hook (as the Stubber does), so each call still goes
through a real client: parameters are validated against the service model, and tests/fault_injection.py counts
and fails it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from moto import mock_aws  # noqa: F401 - imported before SESSION: moto hooks the handlers a session starts with

REGION, PIPELINE = "eu-west-1", "mlapi-pipeline-delivery"
# One session for every run: mock_aws resets boto3's default session, and a new session loads each service model
# again (~0.1 s per client), which would be most of a fault-injection run.
SESSION = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
# CodePipeline API Reference, StartPipelineExecution: clientRequestToken, length 1-128, pattern ^[a-zA-Z0-9-]+$.
TOKEN = re.compile(r"^[a-zA-Z0-9-]{1,128}$")


def _answer(status: int, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return AWSResponse("https://fake", status, {}, None), {**body, "ResponseMetadata": {"HTTPStatusCode": status}}


def _error(code: str, message: str) -> tuple[Any, dict[str, Any]]:
    return _answer(400, {"Error": {"Code": code, "Message": message}})


@dataclass
class Execution:
    id: str
    status: str = "InProgress"
    variables: dict[str, str] = field(default_factory=dict)
    token: str | None = None


class FakeCodePipeline:
    """Executions (newest first), StartPipelineExecution with CodePipeline's request-token constraints; an
    execution in `vanishing` is listed but gone when read (PipelineExecutionNotFoundException)."""

    def __init__(self, executions: list[Execution] | None = None) -> None:
        self.executions = list(executions or [])
        self.vanishing: set[str] = set()
        self.started: list[Execution] = []
        self.failing: dict[str, list[str]] = {}

    def fail(self, operation: str, *codes: str) -> None:
        self.failing.setdefault(operation, []).extend(codes)

    def client(self) -> Any:
        client = SESSION.client("codepipeline")

        def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["fake_params"] = dict(params)

        def respond(model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
            if self.failing.get(model.name):
                return _error(self.failing[model.name].pop(0), f"{model.name} failed (test)")
            return getattr(self, "_" + model.name)(context["fake_params"])  # type: ignore[no-any-return]

        client.meta.events.register("before-parameter-build.codepipeline", keep)
        client.meta.events.register("before-call.codepipeline", respond)
        return client

    def _ListPipelineExecutions(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return _answer(
            200,
            {
                "pipelineExecutionSummaries": [
                    {"pipelineExecutionId": e.id, "status": e.status}
                    for e in self.executions[: params.get("maxResults", 100)]
                ]
            },
        )

    def _GetPipelineExecution(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        found = next((e for e in self.executions if e.id == params["pipelineExecutionId"]), None)
        if found is None or found.id in self.vanishing:
            return _error("PipelineExecutionNotFoundException", f"execution {params['pipelineExecutionId']} not found")
        return _answer(
            200,
            {
                "pipelineExecution": {
                    "pipelineName": params["pipelineName"],
                    "pipelineExecutionId": found.id,
                    "status": found.status,
                    "variables": [{"name": k, "resolvedValue": v} for k, v in found.variables.items()],
                }
            },
        )

    def _StartPipelineExecution(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        token = params.get("clientRequestToken", "")
        if not TOKEN.match(token):  # what the service checks; botocore does not check patterns client-side
            return _error("ValidationException", f"clientRequestToken {token!r} fails ^[a-zA-Z0-9-]+$ / 1-128")
        if any(not v.get("value") for v in params.get("variables", [])):
            return _error("ValidationException", "a variable value must not be empty")
        execution = Execution(
            f"run-{len(self.started) + 1}",
            variables={v["name"]: v["value"] for v in params.get("variables", [])},
            token=token,
        )
        self.executions.insert(0, execution)
        self.started.append(execution)
        return _answer(200, {"pipelineExecutionId": execution.id})
