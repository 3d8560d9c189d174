"""The CodePipeline job the Lambda invoke action hands over: id, user parameters, input artifact."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class JobError(Exception):
    """The job cannot be classified (reported to CodePipeline with PutJobFailureResult)."""


@dataclass(frozen=True)
class Parameters:
    """UserParameters of the invoke action."""

    pipeline: str
    approval_stage: str
    approval_actions: tuple[str, ...]
    watched_stacks: tuple[str, ...]
    audit_table: str
    audit_pk: str = ""
    assembly: str | None = None  # nested assembly directory the pipeline deploys, e.g. assembly-Pipeline-prod
    cfn_role_arn: str | None = None  # read deployed templates in another account through this role

    @property
    def audit_partition(self) -> str:
        return self.audit_pk or f"PIPELINE#{self.pipeline}"


@dataclass(frozen=True)
class Job:
    id: str
    parameters: Parameters
    artifact_bucket: str
    artifact_key: str
    artifact_revision: str | None
    credentials: dict[str, str] = field(repr=False)


def job_id(event: dict[str, Any]) -> str | None:
    job = event.get("CodePipeline.job")
    return job.get("id") if isinstance(job, dict) else None


def parse_job(event: dict[str, Any]) -> Job:
    try:
        job = event["CodePipeline.job"]
        data = job["data"]
        raw = json.loads(data["actionConfiguration"]["configuration"]["UserParameters"])
        parameters = Parameters(
            pipeline=raw["pipeline"], approval_stage=raw["approval_stage"],
            approval_actions=tuple(raw["approval_actions"]), watched_stacks=tuple(raw["watched_stacks"]),
            audit_table=raw["audit_table"], audit_pk=raw.get("audit_pk", ""),
            assembly=raw.get("assembly"), cfn_role_arn=raw.get("cfn_role_arn"))
        if not parameters.approval_actions or not parameters.watched_stacks:
            raise JobError("UserParameters: approval_actions and watched_stacks must not be empty")
        artifact = data["inputArtifacts"][0]
        location = artifact["location"]["s3Location"]
        credentials = data["artifactCredentials"]
        return Job(id=job["id"], parameters=parameters, artifact_bucket=location["bucketName"],
                   artifact_key=location["objectKey"], artifact_revision=artifact.get("revision"),
                   credentials={"aws_access_key_id": credentials["accessKeyId"],
                                "aws_secret_access_key": credentials["secretAccessKey"],
                                "aws_session_token": credentials["sessionToken"]})
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise JobError(f"malformed CodePipeline job event or UserParameters: {error!r}") from None
