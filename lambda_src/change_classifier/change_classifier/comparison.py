"""Compares each watched stack's synthesized template with the template CloudFormation has deployed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from .assembly import SynthesizedStack
from .template_diff import differences, tag_value

MODEL_TYPE = "AWS::SageMaker::Model"


@dataclass
class StackComparison:
    stack: str
    template: str
    region: str | None
    changed: bool
    reasons: list[str] = field(default_factory=list)
    model_hash: str | None = None

    def to_item(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def deployed_template(cloudformation: Any, stack_name: str) -> dict[str, Any] | None:
    """The stack's current template, or None if the stack does not exist (yet)."""
    try:
        body = cloudformation.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", "")
        if error.response.get("Error", {}).get("Code") == "ValidationError" and "does not exist" in message:
            return None
        raise
    # botocore decodes JSON bodies itself; a string left over is YAML, which CDK never deploys.
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {"__unparseable__": body}
    return dict(body)


def compare(stack: SynthesizedStack, cloudformation_for: Callable[[str | None], Any]) -> StackComparison:
    deployed = deployed_template(cloudformation_for(stack.region), stack.stack_name)
    new_hash = tag_value(stack.template, MODEL_TYPE, "model-hash")
    result = StackComparison(stack.stack_name, stack.template_path, stack.region, changed=True, model_hash=new_hash)
    if deployed is None:
        result.reasons = ["stack does not exist yet"]
        return result
    old_hash = tag_value(deployed, MODEL_TYPE, "model-hash")
    if new_hash != old_hash:
        result.reasons.append(f"model hash {old_hash} -> {new_hash}")
    result.reasons += differences(stack.template, deployed)
    result.changed = bool(result.reasons)
    return result
