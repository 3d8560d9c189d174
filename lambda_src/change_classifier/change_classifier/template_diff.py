"""What counts as a change between a synthesized and a deployed template.

Ignored, because they change without any change in what is deployed or how it behaves:
- template and resource `Metadata` (aws:cdk:path, asset paths, cdk_nag acknowledgements, do-not-refactor);
- the `AWS::CDK::Metadata` resource and its `CDKMetadataAvailable` condition (CDK version analytics);
- the `BootstrapVersion` parameter and `CheckBootstrapVersion` rule (CDK version bookkeeping);
- the `commit` tag: provenance, set to the pipeline's source commit, so it differs on every commit.
Everything else counts, including asset hashes (S3 keys, image tags): CDK fingerprints assets from their
inputs (the image asset's excludes keep tests and docs out), so a changed hash means changed code or model.
"""

from __future__ import annotations

import copy
from typing import Any

IGNORED_TAGS = frozenset({"commit"})
MAX_REASONS = 25


def _strip_tags(properties: dict[str, Any]) -> None:
    tags = properties.get("Tags")
    if isinstance(tags, list):
        properties["Tags"] = [t for t in tags if not (isinstance(t, dict) and t.get("Key") in IGNORED_TAGS)]
    elif isinstance(tags, dict):
        properties["Tags"] = {k: v for k, v in tags.items() if k not in IGNORED_TAGS}


def normalize(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of `template` without the parts that change when nothing deployed changes."""
    result = copy.deepcopy(template)
    result.pop("Metadata", None)
    resources = result.get("Resources") or {}
    for logical_id in list(resources):
        resource = resources[logical_id]
        if resource.get("Type") == "AWS::CDK::Metadata":
            del resources[logical_id]
            continue
        resource.pop("Metadata", None)
        if isinstance(resource.get("Properties"), dict):
            _strip_tags(resource["Properties"])
    for section, key in (
        ("Conditions", "CDKMetadataAvailable"),
        ("Parameters", "BootstrapVersion"),
        ("Rules", "CheckBootstrapVersion"),
    ):
        if isinstance(result.get(section), dict):
            result[section].pop(key, None)
            if not result[section]:
                del result[section]
    return result


def differences(synthesized: dict[str, Any], deployed: dict[str, Any]) -> list[str]:
    """Human-readable list of what differs (empty if nothing relevant does)."""
    new, old = normalize(synthesized), normalize(deployed)
    reasons: list[str] = []
    for section in sorted(set(new) | set(old)):
        new_part, old_part = new.get(section), old.get(section)
        if new_part == old_part:
            continue
        if isinstance(new_part, dict) and isinstance(old_part, dict):
            for key in sorted(set(new_part) | set(old_part)):
                if key not in old_part:
                    reasons.append(f"{section}.{key} added")
                elif key not in new_part:
                    reasons.append(f"{section}.{key} removed")
                elif new_part[key] != old_part[key]:
                    reasons.append(f"{section}.{key} changed")
        else:
            reasons.append(f"{section} changed")
    if len(reasons) > MAX_REASONS:
        reasons = [*reasons[:MAX_REASONS], f"... and {len(reasons) - MAX_REASONS} more"]
    return reasons


def tag_value(template: dict[str, Any], resource_type: str, key: str) -> str | None:
    """The value of tag `key` on the first resource of `resource_type` (e.g. the model's model-hash)."""
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") != resource_type:
            continue
        tags = (resource.get("Properties") or {}).get("Tags") or []
        if isinstance(tags, dict):
            return tags.get(key)
        for tag in tags:
            if isinstance(tag, dict) and tag.get("Key") == key:
                return str(tag.get("Value"))
    return None
