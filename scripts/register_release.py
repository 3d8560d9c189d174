"""Record the release the pipeline is about to deploy, with who approved it, before the endpoint update.

    python -m scripts.register_release --assembly cdk.out/assembly-Pipeline-prod --pipeline mlapi-pipeline-delivery \
        --stage prod --approvals ModelApproval,OperationsApproval --table mlapi-prod-releases

The release id is the endpoint config name in the synthesized inference template; model version, hash and
commit come from its tags; approvers from the pipeline's approval actions (or `auto-classifier` when the change
classifier approved). Re-running for an already registered release changes nothing (exit 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status
from lambda_src.releases.release_history.timeutil import iso, utcnow


def planned_release(assembly: Path) -> Release:
    """The release the inference template in `assembly` deploys."""
    [template_file] = sorted(assembly.glob("*Inference*.template.json"))
    resources = json.loads(template_file.read_text())["Resources"]
    [config] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SageMaker::EndpointConfig"]
    [endpoint] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SageMaker::Endpoint"]
    tags = {t["Key"]: t["Value"] for t in config.get("Tags", [])}
    return Release(
        release_id=config["EndpointConfigName"],
        endpoint_name=endpoint["EndpointName"],
        status=Status.DEPLOYING,
        registered_at=iso(utcnow()),
        model_version=tags.get("model-version"),
        model_hash=tags.get("model-hash"),
        commit=tags.get("commit"),
    )


def approvers(codepipeline: Any, pipeline: str, stage: str, actions: list[str]) -> list[str]:
    """Who approved each approval action of the stage's current execution."""
    state = codepipeline.get_pipeline_state(name=pipeline)
    found = []
    for stage_state in state.get("stageStates", []):
        if stage_state["stageName"] != stage:
            continue
        for action in stage_state.get("actionStates", []):
            latest = action.get("latestExecution", {})
            if action["actionName"] in actions and latest.get("status") == "Succeeded":
                found.append(f"{action['actionName']}: {latest.get('lastUpdatedBy', 'auto-classifier')}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assembly", type=Path, required=True)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--approvals", required=True, help="comma-separated approval action names")
    parser.add_argument("--table", required=True)
    parser.add_argument("--region")
    args = parser.parse_args(argv)
    try:
        release = planned_release(args.assembly)
    except (OSError, ValueError, KeyError) as error:
        print(f"register_release: no inference template in {args.assembly}: {error}", file=sys.stderr)
        return 2
    session = boto3.Session(region_name=args.region)
    try:
        release.approved_by = approvers(
            session.client("codepipeline"), args.pipeline, args.stage, args.approvals.split(",")
        )
        repository = ReleaseRepository(session.resource("dynamodb").Table(args.table), release.endpoint_name)
        created = repository.register(release)
    except (ClientError, BotoCoreError) as error:
        print(f"register_release: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"release": release.release_id, "approved_by": release.approved_by, "registered": created}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
