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


def job_id(event: Any) -> str | None:
    """The job id, when the event is a CodePipeline job at all (a non-string id cannot be reported either)."""
    job = event.get("CodePipeline.job") if isinstance(event, dict) else None
    identifier = job.get("id") if isinstance(job, dict) else None
    return identifier if isinstance(identifier, str) and identifier else None


def _names(raw: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list of names; a bare string is refused, since tuple("ModelApproval") would be its characters."""
    value = raw.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise JobError(
            f'UserParameters.{key} must be a JSON list of names, e.g. ["ModelApproval"], '
            f"not {type(value).__name__} {json.dumps(value, default=str)[:100]}"
        )
    if not value:
        raise JobError("UserParameters: approval_actions and watched_stacks must not be empty")
    return tuple(value)


def _text(raw: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise JobError(f"UserParameters.{key} must be a non-empty string, not {json.dumps(value, default=str)[:100]}")
    return value


def parse_parameters(text: Any) -> Parameters:
    """UserParameters, checked key by key: a wrong type is a ConfigurationError naming the key."""
    try:
        raw = json.loads(text)
    except (TypeError, ValueError) as error:
        raise JobError(f"malformed CodePipeline job event or UserParameters: {error!r}") from None
    if not isinstance(raw, dict):
        raise JobError(f"UserParameters must be a JSON object, not {type(raw).__name__}")
    required = {key: _text(raw, key, required=True) for key in ("pipeline", "approval_stage", "audit_table")}
    return Parameters(
        pipeline=str(required["pipeline"]),
        approval_stage=str(required["approval_stage"]),
        approval_actions=_names(raw, "approval_actions"),
        watched_stacks=_names(raw, "watched_stacks"),
        audit_table=str(required["audit_table"]),
        audit_pk=_text(raw, "audit_pk", required=False) or "",
        assembly=_text(raw, "assembly", required=False),
        cfn_role_arn=_text(raw, "cfn_role_arn", required=False),
    )


def parse_job(event: dict[str, Any]) -> Job:
    try:
        job = event["CodePipeline.job"]
        data = job["data"]
        parameters = parse_parameters(data["actionConfiguration"]["configuration"]["UserParameters"])
        artifact = data["inputArtifacts"][0]
        location = artifact["location"]["s3Location"]
        credentials = data["artifactCredentials"]
        strings = {
            "job id": job["id"],
            "bucketName": location["bucketName"],
            "objectKey": location["objectKey"],
            **{k: credentials[k] for k in ("accessKeyId", "secretAccessKey", "sessionToken")},
        }
        wrong = sorted(k for k, v in strings.items() if not isinstance(v, str) or not v)
        if wrong:
            raise JobError(f"malformed CodePipeline job event: {', '.join(wrong)} must be non-empty strings")
        revision = artifact.get("revision")
        return Job(
            id=job["id"],
            parameters=parameters,
            artifact_bucket=location["bucketName"],
            artifact_key=location["objectKey"],
            artifact_revision=revision if isinstance(revision, str) else None,
            credentials={
                "aws_access_key_id": credentials["accessKeyId"],
                "aws_secret_access_key": credentials["secretAccessKey"],
                "aws_session_token": credentials["sessionToken"],
            },
        )
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise JobError(f"malformed CodePipeline job event or UserParameters: {error!r}") from None
