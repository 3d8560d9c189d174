"""Record the release the pipeline is about to deploy, with who approved it, before the endpoint update.

    python -m scripts.register_release --assembly cdk.out/assembly-Pipeline-prod --pipeline mlapi-pipeline-delivery \
        --stage prod --approvals DataScienceApproval,OperationsApproval,ProductApproval --table mlapi-prod-releases \
        [--execution-id ID] [--model-package-arn ARN] [--stages-json JSON] \
        [--emergency-override "$EMERGENCY_OVERRIDE" --emergency-reason "$EMERGENCY_REASON"]

The release id is the endpoint config name in the synthesized inference template; model version, hash and
commit come from its tags; approvers from the pipeline's approval actions (or `auto-classifier` when the change
classifier approved), each with its stage and whether the approver is one of the reviewers the stage expects
(`--stages-json`, default $APPROVAL_STAGES); the model package it deploys (`model_package_arn`, default
$MODEL_PACKAGE_ARN); an emergency override with who started it and why. Re-running for an already registered
release changes nothing (exit 0): a retried step is safe. A release table that does not exist yet (the Data stack
creates it) fails with that said (exit 1), as does any other AWS error, naming what was read or written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status
from lambda_src.releases.release_history.timeutil import iso, utcnow


def planned_release(assembly: Path) -> PipelineRelease:
    """The release the inference template in `assembly` deploys."""
    [template_file] = sorted(assembly.glob("*Inference*.template.json"))
    resources = json.loads(template_file.read_text())["Resources"]
    [config] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SageMaker::EndpointConfig"]
    [endpoint] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SageMaker::Endpoint"]
    tags = {t["Key"]: t["Value"] for t in config.get("Tags", [])}
    return PipelineRelease(
        release_id=config["EndpointConfigName"],
        endpoint_name=endpoint["EndpointName"],
        status=Status.DEPLOYING,
        registered_at=iso(utcnow()),
        model_version=tags.get("model-version"),
        model_hash=tags.get("model-hash"),
        commit=tags.get("commit"),
    )


@dataclass
class PipelineRelease(Release):
    """A release with what the pipeline knows of it: the model package it deploys, each approval with its stage
    and expected reviewers, and an emergency override. ReleaseRepository stores every field; readers that know
    only `Release` ignore these."""

    model_package_arn: str | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)
    emergency_override: dict[str, str] | None = None


def _approved_actions(
    codepipeline: Any, pipeline: str, stage: str, actions: list[str], execution_id: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(action, latestExecution) of each succeeded approval of the stage (of `execution_id`, when given)."""
    state = codepipeline.get_pipeline_state(name=pipeline)
    found = []
    for stage_state in state.get("stageStates", []):
        if stage_state["stageName"] != stage:
            continue
        running = (stage_state.get("latestExecution") or {}).get("pipelineExecutionId")
        if execution_id and running != execution_id:
            continue
        for action in stage_state.get("actionStates", []):
            latest = action.get("latestExecution", {})
            if action["actionName"] in actions and latest.get("status") == "Succeeded":
                found.append((action["actionName"], latest))
    return found


def approvers(
    codepipeline: Any, pipeline: str, stage: str, actions: list[str], execution_id: str | None = None
) -> list[str]:
    """Who approved each approval action of the stage's current execution."""
    return [
        f"{action}: {latest.get('lastUpdatedBy', 'auto-classifier')}"
        for action, latest in _approved_actions(codepipeline, pipeline, stage, actions, execution_id)
    ]


def reviewer_matches(approver: str, reviewer: str) -> bool:
    """An expected reviewer approved: the same user or role, or a session of the expected role."""
    if approver == reviewer:
        return True
    role = re.fullmatch(r"arn:(aws[\w-]*):iam::(\d{12}):role/(?:.*/)?([\w+=,.@-]+)", reviewer)
    session = re.fullmatch(r"arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/.+", approver)
    return bool(role and session and role.groups() == session.groups())


def approval_records(
    codepipeline: Any, pipeline: str, stage: str, stages: list[dict[str, Any]], execution_id: str | None = None
) -> list[dict[str, Any]]:
    """Each approval with its configured stage, approver, comment and whether the approver is expected."""
    by_action = {s["action"]: s for s in stages}
    records = []
    for action, latest in _approved_actions(codepipeline, pipeline, stage, list(by_action), execution_id):
        who = str(latest.get("lastUpdatedBy", "auto-classifier"))
        reviewers = list(by_action[action].get("reviewers", []))
        records.append(
            {
                "stage": by_action[action].get("stage", action),
                "action": action,
                "approved_by": who,
                "summary": str(latest.get("summary", "")),
                "expected_reviewers": reviewers,
                "by_expected_reviewer": any(reviewer_matches(who, r) for r in reviewers) if reviewers else None,
            }
        )
    return records


def emergency_override(
    codepipeline: Any, pipeline: str, execution_id: str | None, requested: str, reason: str
) -> dict[str, str] | None:
    """Who started this run with EMERGENCY_OVERRIDE=true, and why (the override step already refused a run that
    was not started by a person or has no reason)."""
    if requested.strip().lower() != "true" or not execution_id:
        return None
    execution = codepipeline.get_pipeline_execution(pipelineName=pipeline, pipelineExecutionId=execution_id)
    trigger = execution["pipelineExecution"].get("trigger") or {}
    return {
        "by": str(trigger.get("triggerDetail") or "unknown"),
        "trigger": str(trigger.get("triggerType") or "unknown"),
        "reason": reason.strip(),
        "execution_id": execution_id,
    }


def _table_error(error: ClientError, table: str) -> str:
    details = error.response.get("Error", {})
    if details.get("Code") == "ResourceNotFoundException":
        # DynamoDB API reference, PutItem errors: ResourceNotFoundException, a table that does not exist or is
        # not ACTIVE. The environment's Data stack creates the release history: on a first run this step must
        # come after that stack's deploy.
        return (
            f"release table {table} does not exist (or is not ACTIVE yet): the environment's Data stack creates it, "
            "so RegisterRelease must run after that stack's deploy"
        )
    return f"writing the release to DynamoDB table {table}: {details.get('Code')}: {details.get('Message', '')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assembly", type=Path, required=True)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--approvals", required=True, help="comma-separated approval action names")
    parser.add_argument("--table", required=True)
    parser.add_argument("--region")
    parser.add_argument("--execution-id", help="this run (#{codepipeline.PipelineExecutionId}): its approvals only")
    parser.add_argument("--model-package-arn", default=os.environ.get("MODEL_PACKAGE_ARN"))
    parser.add_argument(
        "--stages-json",
        default=os.environ.get("APPROVAL_STAGES", "[]"),
        help='[{"stage": "data_science", "action": "DataScienceApproval", "reviewers": ["arn:..."]}, ...]',
    )
    parser.add_argument("--emergency-override", default="false", help="#{variables.EMERGENCY_OVERRIDE}")
    parser.add_argument("--emergency-reason", default="", help="#{variables.EMERGENCY_REASON}")
    parser.add_argument("--environment-profile", help="AWS profile for the release table (default: the step's own)")
    parser.add_argument("--environment-region", help="the release table's region (default: --region)")
    args = parser.parse_args(argv)
    try:
        release = planned_release(args.assembly)
    except (OSError, ValueError, KeyError) as error:
        print(f"register_release: no inference template in {args.assembly}: {error}", file=sys.stderr)
        return 2
    try:
        stages = json.loads(args.stages_json)
    except ValueError as error:
        print(f"register_release: --stages-json is not JSON: {error}", file=sys.stderr)
        return 2
    actions = args.approvals.split(",")
    stages = [s for s in stages if s.get("action") in actions] + [
        {"action": a} for a in actions if a not in {s.get("action") for s in stages}
    ]
    # The approvals live in the pipeline's account (the step's own credentials); the release table in the
    # environment's, reached through the profile that assumes the environment's step role (AWS SDKs and Tools
    # Reference Guide, "Assume role credential provider"), when the pipeline passes one.
    pipeline_session = boto3.Session(region_name=args.region)
    session = (
        boto3.Session(profile_name=args.environment_profile, region_name=args.environment_region or args.region)
        if args.environment_profile or args.environment_region
        else pipeline_session
    )
    try:
        codepipeline = pipeline_session.client("codepipeline")
        release.approved_by = approvers(codepipeline, args.pipeline, args.stage, actions, args.execution_id)
        release.approvals = approval_records(codepipeline, args.pipeline, args.stage, stages, args.execution_id)
        release.model_package_arn = args.model_package_arn or None
        release.emergency_override = emergency_override(
            codepipeline, args.pipeline, args.execution_id, args.emergency_override, args.emergency_reason
        )
    except (ClientError, BotoCoreError) as error:
        print(f"register_release: reading the approvals of pipeline {args.pipeline}: {error}", file=sys.stderr)
        return 1
    try:
        repository = ReleaseRepository(session.resource("dynamodb").Table(args.table), release.endpoint_name)
        created = repository.register(release)
    except ClientError as error:
        print(f"register_release: {_table_error(error, args.table)}", file=sys.stderr)
        return 1
    except BotoCoreError as error:
        print(f"register_release: writing the release to DynamoDB table {args.table}: {error}", file=sys.stderr)
        return 1
    summary = {
        "release": release.release_id,
        "approved_by": release.approved_by,
        "model_package_arn": release.model_package_arn,
        "emergency_override": release.emergency_override,
        "registered": created,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
