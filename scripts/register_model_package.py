"""Model packages in the project's SageMaker Model Registry: every build registers one, the pipeline's model
approval (or a data scientist in the registry) approves or rejects it, and production refuses one that is not
Approved.

    python -m scripts.register_model_package register --group mlapi-models \
        --assembly cdk.out/assembly-Pipeline-prod --metadata gate/metadata.json --gate-report gate/model-gate.json \
        --metrics-bucket mlapi-prod-registry-ACCOUNT-REGION --account ACCOUNT --region REGION [--arn-out FILE]
    python -m scripts.register_model_package registry-decision --package-arn ARN --pipeline P --stage prod \
        --action DataScienceApproval --execution-id ID
    python -m scripts.register_model_package override --pipeline P --stage prod --actions A,B,C --execution-id ID \
        --override "$EMERGENCY_OVERRIDE" --reason "$EMERGENCY_REASON"
    python -m scripts.register_model_package approve --package-arn ARN --pipeline P --stage prod \
        --action DataScienceApproval --execution-id ID
    python -m scripts.register_model_package check --package-arn ARN [--assembly DIR --account A --region R]

The group and the metrics bucket (`model-registry/` in `<prod prefix>-registry-<account>-<region>`, encrypted with
`alias/<prod prefix>/registry`) are the registry's own (ml_constructs/model_registry.py), deployed with production's
step roles before the pipeline's Checks wave runs `register` — not with production's data stack, which deploys later.

`register` is idempotent: a build (source commit + model content hash) already in the group returns that package
(found by its `build` metadata property), never a second one. Exit codes: 0 done, 1 refused (the package is
rejected or not approved, an override without a reason), 2 usage or unreadable input, 3 AWS error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from model_container.card import BINARY, MULTICLASS, REGRESSION, CardError, ModelCard

# ApprovalDescription prefix of every decision the pipeline writes: the registry trigger ignores its own echo.
PIPELINE_MARKER = "[pipeline]"
BUILD_KEY = "build"
LOOKUP_LIMIT = 100
APPROVED, REJECTED, PENDING = "Approved", "Rejected", "PendingManualApproval"
# CodePipeline PutApprovalResult: summary up to 512 characters; SageMaker ApprovalDescription up to 1024.
SUMMARY_MAX, DESCRIPTION_MAX = 512, 1024
_SETTLED = {"ApprovalAlreadyCompletedException", "InvalidApprovalTokenException"}
# CustomerMetadataProperties keys and values: letters, digits, spaces and _.:/=+-@ (API reference,
# CustomerMetadataMap), values up to 256 characters.
_METADATA_UNSAFE = re.compile(r"[^\w .:/=+\-@]")
# Model package model card content as the SDK's integration test registers it (sagemaker-python-sdk,
# tests/integ/sagemaker/workflow/test_model_registration.py, test_model_registration_with_model_card_json): the
# ModelPackageModelCard schema has no model_package_details, and model_overview has model_creator and
# model_artifact only (API reference, ModelPackageModelCard). Its intended_uses.risk_rating is one of these (model
# card JSON schema, "Model cards" in the SageMaker Developer Guide); a model card that gives none is "Unknown".
RISK_RATINGS = ("High", "Medium", "Low", "Unknown")
# CreateModelPackage `Task` (API reference): CLASSIFICATION or REGRESSION for our tasks.
REGISTRY_TASK = {BINARY: "CLASSIFICATION", MULTICLASS: "CLASSIFICATION", REGRESSION: "REGRESSION"}
# The model quality statistics the registry shows (ModelMetrics.ModelQuality.Statistics) in the format Model Monitor
# writes them (SageMaker Developer Guide, "Model quality metrics and Amazon CloudWatch monitoring"): one
# "<problem>_metrics" object of {"value": x, "standard_deviation": ...} per metric. Model Monitor's names where they
# mean the same (roc_auc is its "auc"); macro_f1 and min_class_recall are ours, under the same object.
STATISTICS_KEY = {
    BINARY: "binary_classification_metrics",
    MULTICLASS: "multiclass_classification_metrics",
    REGRESSION: "regression_metrics",
}
MONITOR_NAMES = {"roc_auc": "auc"}
# CustomerMetadataProperties: at most 50 entries (API reference, CustomerMetadataMap).
METADATA_MAX = 50


class RegistryInputError(Exception):
    """An input file or argument the registry step cannot work with (exit 2)."""


class Refused(Exception):
    """The registry says no: rejected, not approved, or an override that does not qualify (exit 1)."""


# ---- what a build registers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Build:
    """One build of the model, as production would deploy it (the pipeline's synthesized inference template)."""

    commit: str
    content_sha256: str
    model_name: str
    model_version: str
    task: str
    image: str
    model_data_url: str
    environment: dict[str, str]
    instance_types: tuple[str, ...]
    metadata: dict[str, Any]
    gate: dict[str, Any]

    @property
    def key(self) -> str:
        """The build's identity in the registry: source commit and model content hash."""
        return f"{self.commit}:{self.content_sha256}"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RegistryInputError(f"cannot read {what} {path}: {error}") from None


def resolve(value: Any, pseudo: dict[str, str]) -> str:
    """A template string or `Fn::Sub` of pseudo parameters (the asset URIs CDK writes) as the deploy sees it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) not in pseudo:
                raise RegistryInputError(f"cannot resolve ${{{match.group(1)}}} in {value}")
            return pseudo[match.group(1)]

        return re.sub(r"\$\{([^}]+)\}", substitute, value["Fn::Sub"])
    raise RegistryInputError(f"cannot resolve {json.dumps(value)} (not a string or a Fn::Sub of pseudo parameters)")


def _inference_resources(assembly: Path) -> dict[str, list[dict[str, Any]]]:
    templates = sorted(assembly.glob("*Inference*.template.json"))
    if len(templates) != 1:
        raise RegistryInputError(f"{assembly}: expected one *Inference*.template.json, found {len(templates)}")
    resources = _read_json(templates[0], "inference template").get("Resources", {})
    found: dict[str, list[dict[str, Any]]] = {}
    for resource in resources.values():
        found.setdefault(resource.get("Type", ""), []).append(resource.get("Properties", {}))
    return found


def deployed_container(assembly: Path, *, account: str, region: str, partition: str = "aws") -> dict[str, Any]:
    """Image, model data URL, environment, instance types and tags of the model the inference template deploys."""
    resources = _inference_resources(assembly)
    models = resources.get("AWS::SageMaker::Model", [])
    configs = resources.get("AWS::SageMaker::EndpointConfig", [])
    if len(models) != 1 or len(configs) != 1 or "PrimaryContainer" not in models[0]:
        raise RegistryInputError(f"{assembly}: expected one SageMaker model (PrimaryContainer) and endpoint config")
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    pseudo = {"AWS::AccountId": account, "AWS::Region": region, "AWS::Partition": partition, "AWS::URLSuffix": suffix}
    container = models[0]["PrimaryContainer"]
    variants = configs[0].get("ProductionVariants", [])
    return {
        "image": resolve(container["Image"], pseudo),
        "model_data_url": resolve(container["ModelDataUrl"], pseudo),
        "environment": {k: str(v) for k, v in container.get("Environment", {}).items()},
        "instance_types": tuple(v["InstanceType"] for v in variants if isinstance(v.get("InstanceType"), str)),
        "tags": {t["Key"]: t["Value"] for t in configs[0].get("Tags", [])},
    }


def load_build(
    assembly: Path, metadata_path: Path, gate_path: Path, *, account: str, region: str, partition: str = "aws"
) -> Build:
    """The build the gate passed, checked to be the model the production template deploys."""
    metadata = _read_json(metadata_path, "model metadata")
    try:
        card = ModelCard.from_dict(metadata, str(metadata_path))
    except CardError as error:
        raise RegistryInputError(f"{metadata_path}: {error}") from None
    gate = _read_json(gate_path, "model gate report")
    if gate.get("passed") is not True:
        raise RegistryInputError(f"{gate_path}: the model gate did not pass; a failed build is not registered")
    deployed = deployed_container(assembly, account=account, region=region, partition=partition)
    sha = str(metadata.get("content_sha256", ""))
    tag = deployed["tags"].get("model-hash", "")
    if not re.fullmatch(r"[0-9a-f]{64}", sha) or not tag or not sha.startswith(tag):
        raise RegistryInputError(
            f"the gate judged model {sha or '(no content_sha256)'} but production deploys model-hash {tag or '?'}"
        )
    recorded = _mapping(metadata.get("lineage")).get("code_commit") or metadata.get("training_commit")
    tagged = deployed["tags"].get("commit")
    commit = str(tagged if tagged and tagged != "unknown" else recorded or "unknown")
    return Build(
        commit=commit,
        content_sha256=sha,
        model_name=card.name,
        model_version=card.version,
        task=card.task,
        image=deployed["image"],
        model_data_url=deployed["model_data_url"],
        environment=deployed["environment"],
        instance_types=deployed["instance_types"],
        metadata=metadata,
        gate=gate,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def lineage(metadata: dict[str, Any]) -> dict[str, str]:
    """Where the model came from, as the build recorded it: metadata.json `lineage` (model_container/build_model.py:
    code commit, dataset URI and content hash, parameters, parent version of a retraining run). A build without a
    snapshot records none of it, and the registry then says so rather than guess."""
    record = _mapping(metadata.get("lineage"))
    dataset = _mapping(record.get("dataset"))
    parameters = _mapping(record.get("parameters"))

    def first(*values: Any) -> str:
        return next((str(v) for v in values if v not in (None, "")), "not recorded by this build")

    return {
        "dataset-uri": first(dataset.get("uri"), dataset.get("snapshot_uri")),
        "dataset-sha256": first(dataset.get("content_sha256")),
        "dataset-rows": first(dataset.get("rows")),
        "parent-version": first(record.get("parent_version")),
        "parameters": first(", ".join(f"{k}={v}" for k, v in sorted(parameters.items()))),
        "seed": first(parameters.get("seed"), metadata.get("seed")),
        "training-rows": first(metadata.get("training_rows")),
        "algorithm": first(metadata.get("algorithm")),
    }


def metadata_value(value: Any) -> str:
    """A CustomerMetadataProperties value: the allowed characters only, at most 256 of them."""
    return re.sub(r"\s+", " ", _METADATA_UNSAFE.sub(" ", str(value))).strip()[:256] or "-"


def entity_description(text: str, limit: int = 1024) -> str:
    """Text as an EntityDescription takes it (ModelPackageDescription: length 0-1024, pattern
    `[\\p{L}\\p{M}\\p{Z}\\p{S}\\p{N}\\p{P}]*`, SageMaker API reference, CreateModelPackage,
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html): every other character
    (Unicode category C: control characters such as a newline or tab, format, private use) becomes a space, runs of
    whitespace one space, at most `limit` characters. botocore checks no pattern, so a card's free text would
    otherwise pass every check and be refused by CreateModelPackage after the gate."""
    kept = "".join(" " if unicodedata.category(char).startswith("C") else char for char in text)
    return re.sub(r"\s+", " ", kept).strip()[:limit]


def task_metrics(build: Build) -> dict[str, float]:
    """The gate's recomputed holdout metrics of the build's task (model_container/card.py METRICS), in order."""
    found = build.gate.get("holdout_metrics", {})
    names = ModelCard.from_dict(build.metadata).metrics
    return {name: float(found[name]) for name in names if isinstance(found.get(name), int | float)}


def customer_metadata(build: Build) -> dict[str, str]:
    properties = {
        BUILD_KEY: build.key,
        "commit": build.commit,
        "model-sha256": build.content_sha256,
        "model-name": build.model_name,
        "model-version": build.model_version,
        "task": build.task,
        **lineage(build.metadata),
        **{f"holdout-{name}": value for name, value in task_metrics(build).items()},
        "retraining": str(build.gate.get("trigger", {}).get("retraining", False)).lower(),
    }
    return {key: metadata_value(value) for key, value in list(properties.items())[:METADATA_MAX]}


def quality_statistics(build: Build) -> dict[str, Any]:
    """ModelMetrics.ModelQuality.Statistics of the build: its holdout metrics as Model Monitor reports them."""
    metrics = {MONITOR_NAMES.get(name, name): value for name, value in task_metrics(build).items()}
    if build.task == REGRESSION and "rmse" in metrics:
        metrics["mse"] = metrics["rmse"] ** 2  # Model Monitor reports both
    rows = build.gate.get("holdout_rows") or build.gate.get("holdout_metrics", {}).get("rows")
    return {
        "version": 0.0,
        "dataset": {"item_count": rows, "evaluation": "the model gate's holdout (scripts/model_gate.py)"},
        STATISTICS_KEY[build.task]: {
            name: {"value": value, "standard_deviation": "NaN"} for name, value in metrics.items()
        },
    }


def _outputs(card: ModelCard) -> str:
    if card.task == REGRESSION:
        target = card.target
        unit = f" ({target['unit']})" if target.get("unit") else ""
        return f"predicts {target['name']}{unit}"
    return f"classifies into {', '.join(card.label_names)}"


def model_card(build: Build) -> dict[str, Any]:
    """SageMaker model card content of the package, from our model card (metadata.json)."""
    card = ModelCard.from_dict(build.metadata)
    facts = lineage(build.metadata)
    task_words = card.task.replace("_", " ")
    thresholds = build.gate.get("thresholds") or card.acceptance
    risk = str(card.raw.get("risk_rating", "Unknown"))
    intended: dict[str, Any] = {
        "purpose_of_model": f"{card.name} {card.version}: {task_words}; {_outputs(card)} from {card.width} features",
        "intended_uses": str(card.raw.get("intended_use") or card.description),
        "risk_rating": risk if risk in RISK_RATINGS else "Unknown",
    }
    if card.raw.get("risk_explanation"):
        intended["explanations_for_risk_rating"] = str(card.raw["risk_explanation"])
    return {
        "model_overview": {"model_creator": "delivery pipeline", "model_artifact": [build.model_data_url]},
        "intended_uses": intended,
        "evaluation_details": [
            {
                "name": "model gate holdout",
                "evaluation_observation": "; ".join(build.gate.get("failures", [])) or "passed every threshold",
                "datasets": [facts["dataset-uri"]] if facts["dataset-uri"].startswith("s3://") else [],
                "metric_groups": [
                    {
                        "name": f"{task_words} metrics",
                        "metric_data": [
                            {"name": name, "type": "number", "value": value, **_threshold_note(thresholds, name)}
                            for name, value in task_metrics(build).items()
                        ],
                    }
                ],
            }
        ],
        "additional_information": {
            "custom_details": {
                "model_name": card.name,
                "model_version": card.version,
                "task": card.task,
                "features": str(card.width),
                **({"labels": ", ".join(card.label_names)} if card.is_classifier else {}),
                **({"target": card.target["name"]} if card.task == REGRESSION else {}),
                "commit": build.commit,
                **{key.replace("-", "_"): value for key, value in facts.items()},
            }
        },
    }


def _threshold_note(thresholds: dict[str, Any], name: str) -> dict[str, str]:
    bound = thresholds.get(name)
    if not isinstance(bound, dict) or not bound:
        return {}
    ((side, limit),) = bound.items()
    return {"notes": f"acceptance {side} {limit}"}


def create_request(
    group: str, build: Build, metrics_uri: str, metrics_digest: str, generated_by: str
) -> dict[str, Any]:
    """The CreateModelPackage request (API reference, CreateModelPackage) of a build, pending manual approval."""
    container: dict[str, Any] = {"Image": build.image, "ModelDataUrl": build.model_data_url}
    if build.environment:
        container["Environment"] = build.environment
    specification: dict[str, Any] = {
        "Containers": [container],
        "SupportedContentTypes": ["application/json", "text/csv"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    if build.instance_types:
        specification["SupportedRealtimeInferenceInstanceTypes"] = list(build.instance_types)
    card = ModelCard.from_dict(build.metadata)
    suffix = entity_description(f" (commit {build.commit})", 128)
    description = entity_description(f"{card.name} {card.version} ({card.task.replace('_', ' ')}): {card.description}")
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description[: 1024 - len(suffix) - 1] + " " + suffix,
        "InferenceSpecification": specification,
        "ModelApprovalStatus": PENDING,
        "MetadataProperties": {"CommitId": build.commit, "GeneratedBy": generated_by[:1024]},
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri, "ContentDigest": metrics_digest}
            }
        },
        "CustomerMetadataProperties": customer_metadata(build),
        "Domain": "MACHINE_LEARNING",
        "Task": REGISTRY_TASK[build.task],
        "ModelCard": {
            "ModelCardContent": json.dumps(model_card(build), sort_keys=True),
            "ModelCardStatus": "PendingReview",
        },
        # Retries of one build within SageMaker's idempotency window return the same package.
        "ClientToken": hashlib.sha256(f"{group}/{build.key}".encode()).hexdigest()[:36],
    }


# ---- the registry --------------------------------------------------------------------------------------------
def packages(sagemaker: Any, group: str, limit: int = LOOKUP_LIMIT) -> Iterator[dict[str, Any]]:
    """The group's versions, newest first, at most `limit` of them (each described)."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageType": "Versioned",
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": min(limit, 100),
    }
    seen = 0
    while seen < limit:
        page = sagemaker.list_model_packages(**request)
        for summary in page.get("ModelPackageSummaryList", []):
            if seen >= limit:
                return
            seen += 1
            yield sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if not page.get("NextToken"):
            return
        request["NextToken"] = page["NextToken"]


def find_package(sagemaker: Any, group: str, key: str) -> dict[str, Any] | None:
    """The version registered for build `key`, if any (its `build` metadata property)."""
    return next(
        (p for p in packages(sagemaker, group) if (p.get("CustomerMetadataProperties") or {}).get(BUILD_KEY) == key),
        None,
    )


def register(
    sagemaker: Any, s3: Any, *, group: str, build: Build, metrics_bucket: str, generated_by: str
) -> tuple[str, bool]:
    """(package ARN, created?) for `build`: the existing version when this build is registered already."""
    existing = find_package(sagemaker, group, build.key)
    if existing:
        return existing["ModelPackageArn"], False
    folder = f"model-registry/{group}/{build.content_sha256}/{build.commit}"
    report = json.dumps(build.gate, indent=2, sort_keys=True).encode()
    statistics = json.dumps(quality_statistics(build), indent=2, sort_keys=True).encode()
    # No ServerSideEncryption here: the bucket's default encryption (the registry's key) applies only to requests that
    # name none (S3 User Guide, "Setting default server-side encryption behavior for Amazon S3 buckets").
    for name, body in (("model-gate.json", report), ("model-quality.json", statistics)):
        s3.put_object(Bucket=metrics_bucket, Key=f"{folder}/{name}", Body=body, ContentType="application/json")
    digest = "sha256:" + hashlib.sha256(statistics).hexdigest()
    uri = f"s3://{metrics_bucket}/{folder}/model-quality.json"
    request = create_request(group, build, uri, digest, generated_by)
    return sagemaker.create_model_package(**request)["ModelPackageArn"], True


def describe(sagemaker: Any, arn: str) -> dict[str, Any]:
    return dict(sagemaker.describe_model_package(ModelPackageName=arn))


def decided_by(package: dict[str, Any]) -> str:
    """Who last changed the package, as SageMaker records it (LastModifiedBy), else its approval description."""
    by = package.get("LastModifiedBy") or {}
    return str((by.get("IamIdentity") or {}).get("Arn") or by.get("UserProfileName") or "unknown")


def set_status(sagemaker: Any, package: dict[str, Any], status: str, description: str, who: str) -> None:
    """Approve or reject with who and why. CustomerMetadataProperties go in whole: the build key must survive
    whatever UpdateModelPackage does with the properties it is given."""
    properties = {**(package.get("CustomerMetadataProperties") or {}), "decided-by": metadata_value(who)}
    sagemaker.update_model_package(
        ModelPackageArn=package["ModelPackageArn"],
        ModelApprovalStatus=status,
        ApprovalDescription=description[:DESCRIPTION_MAX],
        CustomerMetadataProperties=properties,
    )


def check_deployable(package: dict[str, Any], deployed: dict[str, Any] | None = None) -> str:
    """Why production may deploy `package`, or Refused."""
    arn, status = package["ModelPackageArn"], package.get("ModelApprovalStatus", "?")
    if status != APPROVED:
        raise Refused(
            f"model package {arn} is {status}, not {APPROVED}: production refuses it. Approve it (the pipeline's "
            f"model approval, or `aws sagemaker update-model-package --model-package-arn {arn} "
            f"--model-approval-status {APPROVED} --approval-description '<who and why>'`) and retry the stage."
        )
    if deployed:
        [container] = package.get("InferenceSpecification", {}).get("Containers", [{}])[:1] or [{}]
        for field, value in (("Image", deployed["image"]), ("ModelDataUrl", deployed["model_data_url"])):
            if container.get(field) != value:
                raise Refused(f"model package {arn} has {field} {container.get(field)!r}; production deploys {value!r}")
    return f"model package {arn} is {APPROVED}: {package.get('ApprovalDescription', '')}"


# ---- the pipeline's approvals --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApprovalContext:
    """Where the approvals of this run are: pipeline, stage, and this run's execution id."""

    pipeline: str
    stage: str
    execution_id: str


def stage_actions(codepipeline: Any, context: ApprovalContext) -> dict[str, dict[str, Any]]:
    """{action: latestExecution} of the stage, only while the stage runs this execution."""
    state = codepipeline.get_pipeline_state(name=context.pipeline)
    stage = next((s for s in state.get("stageStates", []) if s.get("stageName") == context.stage), None)
    if stage is None:
        raise RegistryInputError(f"pipeline {context.pipeline} has no stage {context.stage}")
    if (stage.get("latestExecution") or {}).get("pipelineExecutionId") != context.execution_id:
        return {}
    return {a["actionName"]: a.get("latestExecution") or {} for a in stage.get("actionStates", [])}


def wait_for_pending(
    codepipeline: Any,
    context: ApprovalContext,
    actions: list[str],
    *,
    attempts: int,
    delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """{action: token} of `actions` once all are InProgress in this execution; {} if they are not in time (an
    approval settled meanwhile, by a person or the change classifier)."""
    for attempt in range(attempts):
        latest = stage_actions(codepipeline, context)
        tokens = {a: latest[a]["token"] for a in actions if latest.get(a, {}).get("status") == "InProgress"}
        if len(tokens) == len(actions) and all(tokens.values()):
            return tokens
        if any(latest.get(a, {}).get("status") in ("Succeeded", "Failed") for a in actions):
            return {}
        if attempt + 1 < attempts:
            sleep(delay)
    return {}


def answer(codepipeline: Any, context: ApprovalContext, tokens: dict[str, str], status: str, summary: str) -> dict:
    """PutApprovalResult for each action; one answered first by someone else is reported as settled."""
    results = {}
    for action, token in tokens.items():
        try:
            codepipeline.put_approval_result(
                pipelineName=context.pipeline,
                stageName=context.stage,
                actionName=action,
                result={"summary": summary[:SUMMARY_MAX], "status": status},
                token=token,
            )
            results[action] = status.lower()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in _SETTLED:
                raise
            results[action] = f"already settled: {code}"
    return results


def registry_decision(
    sagemaker: Any, codepipeline: Any, context: ApprovalContext, *, arn: str, action: str, attempts: int, delay: float
) -> dict[str, Any]:
    """A package already approved or rejected in the registry answers the model approval of this run."""
    package = describe(sagemaker, arn)
    status = package.get("ModelApprovalStatus")
    if status not in (APPROVED, REJECTED):
        return {"package": arn, "status": status, "answered": False, "reason": "pending: left for the reviewers"}
    tokens = wait_for_pending(codepipeline, context, [action], attempts=attempts, delay=delay)
    if not tokens:
        return {"package": arn, "status": status, "answered": False, "reason": f"{action} is not pending"}
    summary = f"{status} in the model registry by {decided_by(package)}: {package.get('ApprovalDescription', '')}"
    result = "Approved" if status == APPROVED else "Rejected"
    return {"package": arn, "status": status, "answered": answer(codepipeline, context, tokens, result, summary)}


def emergency_requester(codepipeline: Any, context: ApprovalContext) -> str:
    """The principal that started this execution with StartPipelineExecution: only a person's explicit start may
    carry an emergency override (a push, a schedule or an event may not)."""
    execution = codepipeline.get_pipeline_execution(
        pipelineName=context.pipeline, pipelineExecutionId=context.execution_id
    )["pipelineExecution"]
    trigger = execution.get("trigger") or {}
    if trigger.get("triggerType") != "StartPipelineExecution" or not trigger.get("triggerDetail"):
        raise Refused(
            f"EMERGENCY_OVERRIDE is set but execution {context.execution_id} was started by "
            f"{trigger.get('triggerType', 'an unknown trigger')}: an override must be started by a person "
            "(aws codepipeline start-pipeline-execution --variables ...)"
        )
    return str(trigger["triggerDetail"])


def override(
    codepipeline: Any,
    context: ApprovalContext,
    *,
    requested: str,
    reason: str,
    actions: list[str],
    attempts: int,
    delay: float,
) -> dict[str, Any]:
    """EMERGENCY_OVERRIDE=true with a reason: approve every approval of this run as `EMERGENCY OVERRIDE by <who>:
    <why>`; the release history records both (scripts/register_release.py)."""
    if requested.strip().lower() != "true":
        return {"override": False}
    reason = reason.strip()
    if len(reason) < 10:
        raise Refused("EMERGENCY_OVERRIDE=true needs EMERGENCY_REASON: why, in at least 10 characters")
    who = emergency_requester(codepipeline, context)
    tokens = wait_for_pending(codepipeline, context, actions, attempts=attempts, delay=delay)
    summary = f"EMERGENCY OVERRIDE by {who}: {reason}"
    answered = answer(codepipeline, context, tokens, "Approved", summary) if tokens else {}
    return {"override": True, "by": who, "reason": reason, "answered": answered}


def approval_result(codepipeline: Any, context: ApprovalContext, action: str) -> tuple[str, str]:
    """(who, summary) of `action`'s approval in this execution, from the approval result CodePipeline records."""
    latest = stage_actions(codepipeline, context).get(action, {})
    if latest.get("status") != "Succeeded":
        raise Refused(f"{action} of execution {context.execution_id} is {latest.get('status', 'not run')}")
    return str(latest.get("lastUpdatedBy") or "unknown"), str(latest.get("summary") or "")


def approve(sagemaker: Any, codepipeline: Any, context: ApprovalContext, *, arn: str, action: str) -> dict[str, Any]:
    """After the model approval: the package becomes Approved with its approver, unless the registry decided."""
    package = describe(sagemaker, arn)
    status = package.get("ModelApprovalStatus")
    if status == REJECTED:
        raise Refused(f"model package {arn} was rejected in the registry: {package.get('ApprovalDescription', '')}")
    who, summary = approval_result(codepipeline, context, action)
    if status == APPROVED:
        return {"package": arn, "status": APPROVED, "changed": False, "by": decided_by(package), "summary": summary}
    description = (
        f"{PIPELINE_MARKER} {action} approved by {who} in {context.pipeline} execution {context.execution_id}: "
        f"{summary}"
    )
    set_status(sagemaker, package, APPROVED, description, who)
    return {"package": arn, "status": APPROVED, "changed": True, "by": who, "summary": summary}


# ---- command line --------------------------------------------------------------------------------------------
def _context(args: argparse.Namespace) -> ApprovalContext:
    return ApprovalContext(args.pipeline, args.stage, args.execution_id)


def _run(args: argparse.Namespace, session: boto3.Session) -> dict[str, Any]:
    sagemaker = session.client("sagemaker")
    if args.command == "register":
        build = load_build(
            args.assembly,
            args.metadata,
            args.gate_report,
            account=args.account,
            region=args.region,
            partition=args.partition,
        )
        arn, created = register(
            sagemaker,
            session.client("s3"),
            group=args.group,
            build=build,
            metrics_bucket=args.metrics_bucket,
            generated_by=args.generated_by,
        )
        if args.arn_out:
            args.arn_out.write_text(arn + "\n")
        return {"package": arn, "created": created, "build": build.key, "status": PENDING if created else "existing"}
    if args.command == "check":
        deployed = (
            deployed_container(args.assembly, account=args.account, region=args.region, partition=args.partition)
            if args.assembly
            else None
        )
        return {
            "package": args.package_arn,
            "deployable": check_deployable(describe(sagemaker, args.package_arn), deployed),
        }
    codepipeline = session.client("codepipeline")
    if args.command == "registry-decision":
        return registry_decision(
            sagemaker,
            codepipeline,
            _context(args),
            arn=args.package_arn,
            action=args.action,
            attempts=args.wait_attempts,
            delay=args.wait_seconds,
        )
    if args.command == "override":
        return override(
            codepipeline,
            _context(args),
            requested=args.override,
            reason=args.reason,
            actions=[a for a in args.actions.split(",") if a],
            attempts=args.wait_attempts,
            delay=args.wait_seconds,
        )
    return approve(sagemaker, codepipeline, _context(args), arn=args.package_arn, action=args.action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", help="the registry's region")
    assembly = argparse.ArgumentParser(add_help=False)
    assembly.add_argument("--account", help="the account production deploys to (resolves asset URIs)")
    assembly.add_argument("--partition", default="aws")
    commands = parser.add_subparsers(dest="command", required=True)
    register_cmd = commands.add_parser(
        "register", parents=[common, assembly], help="register this build (PendingManualApproval), idempotently"
    )
    register_cmd.add_argument("--assembly", type=Path, required=True, help="the production stage assembly")
    register_cmd.add_argument("--group", required=True)
    register_cmd.add_argument("--metadata", type=Path, required=True, help="the gated build's metadata.json")
    register_cmd.add_argument("--gate-report", type=Path, required=True, help="scripts/model_gate.py --report")
    register_cmd.add_argument("--metrics-bucket", required=True, help="bucket for the gate report (ModelMetrics)")
    register_cmd.add_argument("--generated-by", default="delivery pipeline", help="MetadataProperties.GeneratedBy")
    register_cmd.add_argument("--arn-out", type=Path, help="also write the package ARN here")
    check_cmd = commands.add_parser("check", parents=[common, assembly], help="exit 1 unless the package is Approved")
    check_cmd.add_argument("--package-arn", required=True)
    check_cmd.add_argument("--assembly", type=Path, help="also require the package to describe this deploy's model")
    for name in ("registry-decision", "override", "approve"):
        sub = commands.add_parser(name, parents=[common])
        sub.add_argument("--pipeline", required=True)
        sub.add_argument("--stage", required=True)
        sub.add_argument("--execution-id", required=True, help="#{codepipeline.PipelineExecutionId}")
        sub.add_argument("--wait-attempts", type=int, default=20)
        sub.add_argument("--wait-seconds", type=float, default=3.0)
        if name == "override":
            sub.add_argument("--actions", required=True, help="every approval action, comma-separated")
            sub.add_argument("--override", default="false", help="#{variables.EMERGENCY_OVERRIDE}")
            sub.add_argument("--reason", default="", help="#{variables.EMERGENCY_REASON}")
        else:
            sub.add_argument("--package-arn", required=True)
            sub.add_argument("--action", required=True, help="the model approval action")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "assembly", None) and not (args.account and args.region):
        print("register_model_package: --assembly needs --account and --region (asset URIs)", file=sys.stderr)
        return 2
    try:
        summary = _run(args, boto3.Session(region_name=args.region))
    except RegistryInputError as error:
        print(f"register_model_package: {error}", file=sys.stderr)
        return 2
    except Refused as error:
        print(f"register_model_package: REFUSED {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"register_model_package: {error}", file=sys.stderr)
        return 3
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
