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

REGION = "eu-west-1"
CDK_OUT = Path(__file__).parent / "cdk_out"
ARTIFACT_BUCKET, ARTIFACT_KEY = "pipeline-artifacts", "mlapi-delivery/Synth_Outp/abc.zip"
AUDIT_TABLE, PIPELINE, STAGE = "approval-audit", "mlapi-delivery", "prod"
LOCK_TABLE, LOCK_NAME = "decision-locks", "mlapi-delivery-change-classifier"
APPROVALS = ["ModelApproval", "OperationsApproval"]
WATCHED = {"mlapi-prod-inference": "assembly-prod/prodInference18B729AF.template.json",
           "mlapi-prod-data": "assembly-prod/prodData007C6C9D.template.json"}


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
    user_parameters = {"pipeline": PIPELINE, "approval_stage": STAGE, "approval_actions": APPROVALS,
                       "watched_stacks": list(WATCHED), "audit_table": AUDIT_TABLE, **(parameters or {})}
    return {"CodePipeline.job": {"id": job_id, "accountId": "123456789012", "data": {
        "actionConfiguration": {"configuration": {"FunctionName": "mlapi-change-classifier",
                                                  "UserParameters": json.dumps(user_parameters)}},
        "inputArtifacts": [{"name": "Synth_Output", "revision": None, "location": {
            "type": "S3", "s3Location": {"bucketName": ARTIFACT_BUCKET, "objectKey": ARTIFACT_KEY}}}],
        "outputArtifacts": [],
        "artifactCredentials": {"accessKeyId": "testing", "secretAccessKey": "testing", "sessionToken": "testing"},
    }}}


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
                "get_template", "ValidationError", f"Stack with id {stack} does not exist", 400,
                expected_params={"StackName": stack, "TemplateStage": "Original"})
        else:
            self.cloudformation.add_response("get_template", {"TemplateBody": json.dumps(template)},
                                             {"StackName": stack, "TemplateStage": "Original"})

    def pipeline_state(self, statuses: dict[str, str | None], execution: str = "exec-42") -> None:
        actions = [{"actionName": name, **({"latestExecution": {"status": status, "token": f"token-{name}"}}
                                           if status else {})} for name, status in statuses.items()]
        actions.append({"actionName": "ChangeClassifier", "latestExecution": {"status": "InProgress"}})
        self.codepipeline.add_response("get_pipeline_state", {"pipelineName": PIPELINE, "stageStates": [
            {"stageName": "Build", "latestExecution": {"pipelineExecutionId": "old", "status": "Succeeded"}},
            {"stageName": STAGE, "actionStates": actions,
             "latestExecution": {"pipelineExecutionId": execution, "status": "InProgress"}}]}, {"name": PIPELINE})

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
