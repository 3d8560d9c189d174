"""The synthesized app as data: every stage's templates, with references followed across stacks.

Used by the checks that compare the app with what AWS requires of it (reachability, service principals,
creation order), which must follow a security group or a key from the stack that uses it to the stack that
creates it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Resource = dict[str, Any]


@dataclass(frozen=True)
class Ref:
    """A resource, by stack and logical id."""

    stack: str
    logical_id: str


@dataclass
class StageModel:
    """One cloud assembly (a stage, or the app's top level): its stacks' templates and exports."""

    name: str
    templates: dict[str, dict[str, Any]]
    exports: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    self.exports[output["Export"]["Name"]] = (stack, output["Value"])

    def resources(self, resource_type: str | None = None) -> Iterator[tuple[Ref, Resource]]:
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource_type is None or resource["Type"] == resource_type:
                    yield Ref(stack, logical_id), resource

    def resource(self, ref: Ref) -> Resource:
        return self.templates[ref.stack]["Resources"][ref.logical_id]

    def target(self, stack: str, value: Any) -> Ref | None:
        """The resource a Ref / GetAtt / ImportValue in `stack` points at (None for pseudo parameters)."""
        if isinstance(value, dict):
            if "Ref" in value:
                name = value["Ref"]
                return None if name.startswith("AWS::") else Ref(stack, name)
            if "Fn::GetAtt" in value:
                return Ref(stack, value["Fn::GetAtt"][0])
            if "Fn::ImportValue" in value:
                producer, exported = self.exports[value["Fn::ImportValue"]]
                return self.target(producer, exported)
        return None

    def targets(self, stack: str, value: Any) -> list[Ref]:
        """Every resource referenced anywhere inside `value`."""
        found: list[Ref] = []
        ref = self.target(stack, value)
        if ref is not None:
            return [ref]
        if isinstance(value, dict):
            for item in value.values():
                found += self.targets(stack, item)
        elif isinstance(value, list):
            for item in value:
                found += self.targets(stack, item)
        return found

    def literal(self, stack: str, value: Any) -> Any:
        """`value` with ImportValues replaced by what they export (other intrinsics kept)."""
        if isinstance(value, dict) and "Fn::ImportValue" in value:
            producer, exported = self.exports[value["Fn::ImportValue"]]
            return self.literal(producer, exported)
        return value

    def policies_of_role(self, role: Ref) -> list[tuple[Ref, Resource]]:
        """Managed and inline policies attached to `role`, wherever they are declared."""
        attached = []
        for ref, resource in self.resources():
            if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                roles = resource["Properties"].get("Roles", [])
                if role in self.targets(ref.stack, roles):
                    attached.append((ref, resource))
        role_resource = self.resource(role)
        for arn in role_resource["Properties"].get("ManagedPolicyArns", []):
            policy = self.target(role.stack, arn)
            if policy is not None:
                attached.append((policy, self.resource(policy)))
        return attached

    def statements_of_role(self, role: Ref) -> list[dict[str, Any]]:
        statements = []
        for _, policy in self.policies_of_role(role):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
        for inline in self.resource(role)["Properties"].get("Policies", []):
            statements += inline["PolicyDocument"]["Statement"]
        return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def load_stages(outdir: Path) -> list[StageModel]:
    """Every cloud assembly under `outdir`: the top level and each (nested) stage assembly."""
    stages = []
    for manifest_path in sorted(Path(outdir).rglob("manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        templates = {}
        for artifact in manifest.get("artifacts", {}).values():
            if artifact.get("type") == "aws:cloudformation:stack":
                template_file = manifest_path.parent / artifact["properties"]["templateFile"]
                stack_name = artifact["properties"].get("stackName") or artifact.get("displayName")
                templates[stack_name] = json.loads(template_file.read_text())
        if templates:
            name = manifest_path.parent.name.removeprefix("assembly-") if manifest_path.parent != outdir else "app"
            stages.append(StageModel(name, templates))
    return stages
