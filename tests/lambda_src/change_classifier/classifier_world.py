"""Fixtures' data and helpers for the change-classifier tests (a uniquely named module on sys.path)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber
from change_classifier.decision_lock import DecisionLock
from change_classifier.handler import Clients
from moto import mock_aws  # noqa: F401 - imported before SESSION: moto hooks the handlers a session starts with

REGION = "eu-west-1"
CDK_OUT = Path(__file__).parent / "cdk_out"
ARTIFACT_BUCKET, ARTIFACT_KEY = "pipeline-artifacts", "mlapi-delivery/Synth_Outp/abc.zip"
AUDIT_TABLE, PIPELINE, STAGE = "approval-audit", "mlapi-delivery", "prod"
LOCK_TABLE, LOCK_NAME = "decision-locks", "mlapi-delivery-change-classifier"
APPROVALS = ["ModelApproval", "OperationsApproval"]
WATCHED = {
    "mlapi-prod-inference": "assembly-prod/prodInference18B729AF.template.json",
    "mlapi-prod-data": "assembly-prod/prodData007C6C9D.template.json",
}


def synthesized(stack: str) -> dict[str, Any]:
    return json.loads((CDK_OUT / WATCHED[stack]).read_text())


def as_deployed(template: dict[str, Any], commit: str = "0" * 40) -> dict[str, Any]:
    """The template as an earlier commit deployed it: other commit tag, other construct paths, no
    CDKMetadata (analytics off back then): differences the classifier must ignore."""
    text = json.dumps(template).replace("prod/Inference/", "Pipeline/prod/Inference/")
    deployed = json.loads(text)
    deployed["Resources"].pop("CDKMetadata", None)
    deployed.pop("Conditions", None)
    for resource in deployed["Resources"].values():
        for tag in resource.get("Properties", {}).get("Tags", []):
            if tag.get("Key") == "commit":
                tag["Value"] = commit
        resource.get("Metadata", {}).pop("cdk_nag", None)
    return deployed


def cdk_out_zip(edit: Callable[[str, bytes], bytes] | None = None) -> bytes:
    """The fixture cloud assembly zipped as CodePipeline stores the synth output."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(CDK_OUT.rglob("*")):
            if path.is_file():
                name = path.relative_to(CDK_OUT).as_posix()
                archive.writestr(name, edit(name, path.read_bytes()) if edit else path.read_bytes())
    return buffer.getvalue()


def job_event(parameters: dict[str, Any] | None = None, job_id: str = "job-1") -> dict[str, Any]:
    user_parameters = {
        "pipeline": PIPELINE,
        "approval_stage": STAGE,
        "approval_actions": APPROVALS,
        "watched_stacks": list(WATCHED),
        "audit_table": AUDIT_TABLE,
        **(parameters or {}),
    }
    return {
        "CodePipeline.job": {
            "id": job_id,
            "accountId": "123456789012",
            "data": {
                "actionConfiguration": {
                    "configuration": {
                        "FunctionName": "mlapi-change-classifier",
                        "UserParameters": json.dumps(user_parameters),
                    }
                },
                "inputArtifacts": [
                    {
                        "name": "Synth_Output",
                        "revision": None,
                        "location": {
                            "type": "S3",
                            "s3Location": {"bucketName": ARTIFACT_BUCKET, "objectKey": ARTIFACT_KEY},
                        },
                    }
                ],
                "outputArtifacts": [],
                "artifactCredentials": {
                    "accessKeyId": "testing",
                    "secretAccessKey": "testing",
                    "sessionToken": "testing",
                },
            },
        }
    }


@dataclass
class World:
    """Stubbed CodePipeline/CloudFormation plus moto S3/DynamoDB, and helpers to script them."""

    clients: StubbedClients
    codepipeline: Stubber
    cloudformation: Stubber
    s3: Any
    table: Any

    def lock(self, table: str = LOCK_TABLE) -> DecisionLock:
        return DecisionLock(boto3.client("dynamodb", region_name=REGION), table, LOCK_NAME, lease_seconds=150)

    def upload(self, data: bytes) -> None:
        self.s3.put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=data)

    def deployed(self, stack: str, template: dict[str, Any] | None) -> None:
        if template is None:
            self.cloudformation.add_client_error(
                "get_template",
                "ValidationError",
                f"Stack with id {stack} does not exist",
                400,
                expected_params={"StackName": stack, "TemplateStage": "Original"},
            )
        else:
            self.cloudformation.add_response(
                "get_template",
                {"TemplateBody": json.dumps(template)},
                {"StackName": stack, "TemplateStage": "Original"},
            )

    def pipeline_state(self, statuses: dict[str, str | None], execution: str = "exec-42") -> None:
        actions = [
            {
                "actionName": name,
                **({"latestExecution": {"status": status, "token": f"token-{name}"}} if status else {}),
            }
            for name, status in statuses.items()
        ]
        actions.append({"actionName": "ChangeClassifier", "latestExecution": {"status": "InProgress"}})
        self.codepipeline.add_response(
            "get_pipeline_state",
            {
                "pipelineName": PIPELINE,
                "stageStates": [
                    {"stageName": "Build", "latestExecution": {"pipelineExecutionId": "old", "status": "Succeeded"}},
                    {
                        "stageName": STAGE,
                        "actionStates": actions,
                        "latestExecution": {"pipelineExecutionId": execution, "status": "InProgress"},
                    },
                ],
            },
            {"name": PIPELINE},
        )

    def audit_items(self) -> list[dict[str, Any]]:
        return sorted(self.table.scan()["Items"], key=lambda i: i["sk"])


class StubbedClients(Clients):
    def __init__(self, codepipeline: Any, dynamodb: Any, cloudformation: Any) -> None:
        super().__init__(codepipeline=codepipeline, dynamodb=dynamodb)
        self._cloudformation = cloudformation
        self.regions: list[str | None] = []

    def cloudformation_for(self, job: Any) -> Any:
        def client(region: str | None) -> Any:
            self.regions.append(region)
            return self._cloudformation

        return client


# ---- stateful fakes, for retries and fault injection -----------------------------------------------
# CodePipeline's approvals and job results and CloudFormation's templates have no moto model usable here, and a
# Stubber scripts one fixed sequence of calls, which a retry after a fault changes. These fakes answer through
# botocore's own `before-call` hook (as the Stubber does), so each call still goes through the client: its
# parameters are validated against the service model, and tests/fault_injection.py counts and fails it.
# One session for every run: mock_aws resets boto3's default session, and a new session loads each service model
# again (~0.1 s per client), which would be most of a fault-injection run.
SESSION = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


_CLIENTS: dict[str, Any] = {}
_ANSWERS: dict[str, Callable[[str, dict[str, Any]], tuple[Any, dict[str, Any]]]] = {}


def shared(name: str, make: Callable[[], Any]) -> Any:
    """A client (or resource) made once per process: making one costs ~20 ms, a run makes a dozen."""
    if name not in _CLIENTS:
        _CLIENTS[name] = make()
    return _CLIENTS[name]


def answering(service: str, operation: str, answer: Callable[[str, dict[str, Any]], tuple[Any, dict[str, Any]]]) -> Any:
    """A `service` client with `answer(operation name, API parameters)` behind `operation` ("*": all of them).
    One client per (service, operation), answered by the latest `answer` (one fake at a time, tests run serially)."""
    name = f"fake:{service}:{operation}"
    _ANSWERS[name] = answer

    def make() -> Any:
        client = SESSION.client(service)
        event = client.meta.service_model.service_id.hyphenize() + ("" if operation == "*" else f".{operation}")

        def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["fake_params"] = dict(params)  # the API parameters; before-call only sees the HTTP request

        def respond(model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
            return _ANSWERS[name](model.name, context["fake_params"])

        client.meta.events.register(f"before-parameter-build.{event}", keep)
        client.meta.events.register(f"before-call.{event}", respond)
        return client

    return shared(name, make)


def _answer(status: int, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    return AWSResponse("https://fake", status, {}, None), {**body, "ResponseMetadata": {"HTTPStatusCode": status}}


def _error(code: str, message: str, status: int = 400) -> tuple[Any, dict[str, Any]]:
    return _answer(status, {"Error": {"Code": code, "Message": message}})


class FakePipeline:
    """The approval stage while the classifier's job runs: its approvals (InProgress until answered) and the
    job's reports. A second report of a closed job is refused (InvalidJobStateException), as CodePipeline does."""

    def __init__(self, statuses: dict[str, str] | None = None, execution: str = "exec-42") -> None:
        self.statuses = dict(statuses or {a: "InProgress" for a in APPROVALS})
        self.execution = execution
        self.approved: list[str] = []  # accepted PutApprovalResult, in order
        self.reports: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # job id -> accepted reports
        self.failing: dict[str, list[str]] = {}  # operation -> error codes its next calls fail with
        self.calls: list[str] = []

    def fail(self, operation: str, *codes: str) -> None:
        """The next len(codes) calls of `operation` fail with these codes (as botocore raises them, retries spent)."""
        self.failing.setdefault(operation, []).extend(codes)

    def _dispatch(self, operation: str, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        self.calls.append(operation)
        if self.failing.get(operation):
            return _error(self.failing[operation].pop(0), f"{operation} failed (test)", 400)
        return getattr(self, "_" + operation)(params)  # type: ignore[no-any-return]

    def client(self) -> Any:
        return answering("codepipeline", "*", self._dispatch)

    def _GetPipelineState(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        actions = [
            {
                "actionName": name,
                "latestExecution": {"status": status, **({"token": f"token-{name}"} if status == "InProgress" else {})},
            }
            for name, status in self.statuses.items()
        ]
        actions.append({"actionName": "ChangeClassifier", "latestExecution": {"status": "InProgress"}})
        return _answer(
            200,
            {
                "pipelineName": params["name"],
                "stageStates": [
                    {
                        "stageName": STAGE,
                        "actionStates": actions,
                        "latestExecution": {"pipelineExecutionId": self.execution, "status": "InProgress"},
                    }
                ],
            },
        )

    def _PutApprovalResult(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        action = params["actionName"]
        if self.statuses.get(action) != "InProgress" or params["token"] != f"token-{action}":
            return _error("ApprovalAlreadyCompletedException", f"{action} is not waiting")
        self.statuses[action] = "Succeeded"
        self.approved.append(action)
        return _answer(200, {"approvedAt": "2026-03-01T12:00:00Z"})

    def _report(self, job: str, kind: str, details: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if self.reports.get(job):
            return _error("InvalidJobStateException", f"job {job} is already {self.reports[job][0][0]}")
        self.reports.setdefault(job, []).append((kind, details))
        return _answer(200, {})

    def _PutJobSuccessResult(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return self._report(params["jobId"], "success", params.get("executionDetails", {}))

    def _PutJobFailureResult(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return self._report(params["jobId"], "failure", params["failureDetails"])

    def outcome(self, job: str = "job-1") -> str | None:
        """ "success" / "failure" once reported, else None."""
        reports = self.reports.get(job) or []
        return reports[0][0] if reports else None


class FakeCloudFormation:
    """GetTemplate of the deployed stacks (None: the stack does not exist)."""

    def __init__(self, deployed: dict[str, dict[str, Any] | None]) -> None:
        self.deployed = deployed

    def client(self) -> Any:
        return answering("cloudformation", "GetTemplate", lambda operation, params: self._get_template(params))

    def _get_template(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        template = self.deployed.get(params["StackName"])
        if template is None:
            return _error("ValidationError", f"Stack with id {params['StackName']} does not exist")
        return _answer(200, {"TemplateBody": json.dumps(template)})


def unchanged_deployment() -> dict[str, dict[str, Any] | None]:
    return {stack: as_deployed(synthesized(stack)) for stack in WATCHED}
