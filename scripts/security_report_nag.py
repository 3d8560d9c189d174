"""cdk-nag side of the security report: rule catalogue per pack, failed and acknowledged findings.

cdk-nag v3 reports only failures (`validation-report.json`). What each pack *contains* is read from the installed
cdk_nag package itself (the jsii bundle ships the pack and rule sources), so the report can say, per pack:

- rules in the pack: every rule the pack applies (cdk-nag calls each of them on every CfnResource);
- applicable rules: rules whose resource type (the `node instanceof CfnX` / `cfnResourceType` test at the top of
  the rule) occurs in the stack — the only rules that could return COMPLIANT or NON_COMPLIANT there;
- failed: rules with a finding in `validation-report.json`;
- acknowledged: rules with at least one acknowledgement on a resource of the stack;
- passed = applicable - failed - acknowledged (a rule acknowledged on one resource and compliant on the others
  counts as acknowledged, not passed).
"""

from __future__ import annotations

import importlib.util
import json
import re
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKS = ("AwsSolutions", "HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321", "Serverless")
PACK_SOURCES = {
    "AwsSolutions": "aws-solutions.js",
    "HIPAA.Security": "hipaa-security.js",
    "NIST.800.53.R5": "nist-800-53-r5.js",
    "PCI.DSS.321": "pci-dss-321.js",
    "Serverless": "serverless.js",
}
# Acknowledgements that CDK itself writes (e.g. literal AZs); reported apart from the project's own.
CDK_OWN_PREFIX = "CloudFormation-Validate::"
ACK_METADATA_TYPE = "aws:cdk:acknowledged-rules"
# CDK module suffix -> CloudFormation service, where lower-casing without dashes does not give it.
_SERVICE_ALIASES = {"sam": "serverless"}


@dataclass(frozen=True)
class NagRule:
    pack: str
    rule_id: str  # e.g. AwsSolutions-IAM5, HIPAA.Security-S3BucketLoggingEnabled
    level: str  # error | warning
    resource_types: tuple[tuple[str, str], ...]  # (service, resource) lower-case, e.g. ("s3", "bucket")


def pack_of(rule_id: str) -> str | None:
    for pack in sorted(PACKS, key=len, reverse=True):
        if rule_id.startswith(pack + "-"):
            return pack
    return None


def base_rule(rule_id: str) -> str:
    """`AwsSolutions-IAM5[Resource::*]` -> `AwsSolutions-IAM5`."""
    return rule_id.split("[", 1)[0]


def _cdk_nag_bundle() -> Path:
    # located without importing cdk_nag (an import would start the jsii runtime)
    spec = importlib.util.find_spec("cdk_nag")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("cdk_nag is not installed")
    bundles = sorted((Path(spec.origin).parent / "_jsii").glob("cdk-nag@*.jsii.tgz"))
    if not bundles:
        raise FileNotFoundError("cdk_nag jsii bundle not found next to the installed cdk_nag package")
    return bundles[-1]


_APPLY_RULE = re.compile(r"this\.applyRule\(\{(?P<body>.*?)\n\s*\}\);", re.S)
_RULE_REF = re.compile(r"rule:\s*(?P<module>[a-z0-9_]+)\.(?P<name>[A-Za-z0-9_]+)")
_SUFFIX = re.compile(r"ruleSuffixOverride:\s*'(?P<suffix>[^']+)'")
_LEVEL = re.compile(r"level:\s*nag_rules_1\.NagMessageLevel\.(?P<level>[A-Z]+)")
_INSTANCEOF = re.compile(r"node instanceof (?P<module>aws_[a-z0-9_]+)_1\.Cfn(?P<cls>[A-Za-z0-9]+)")
_CFN_TYPE = re.compile(r"cfnResourceType\s*===\s*'AWS::(?P<service>[A-Za-z0-9]+)::(?P<resource>[A-Za-z0-9]+)'")


@lru_cache(maxsize=1)
def rule_catalogue() -> dict[str, tuple[NagRule, ...]]:
    """Every rule of the five packs, read from the installed cdk_nag package (offline)."""
    bundle = _cdk_nag_bundle()
    with tarfile.open(bundle) as tar:
        sources = {
            member.name.removeprefix("package/"): tar.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
            and member.name.endswith(".js")
            and (member.name.startswith("package/lib/packs/") or member.name.startswith("package/lib/rules/"))
        }
    rule_files = {Path(name).stem: text for name, text in sources.items() if name.startswith("lib/rules/")}
    catalogue: dict[str, tuple[NagRule, ...]] = {}
    for pack, filename in PACK_SOURCES.items():
        rules = []
        for match in _APPLY_RULE.finditer(sources[f"lib/packs/{filename}"]):
            body = match.group("body")
            ref = _RULE_REF.search(body)
            if ref is None:
                continue
            suffix = _SUFFIX.search(body)
            level = _LEVEL.search(body)
            rule_source = rule_files.get(ref.group("name"), "")
            types = {
                (
                    _SERVICE_ALIASES.get(m.group("module")[4:], m.group("module")[4:].replace("_", "")),
                    m.group("cls").lower(),
                )
                for m in _INSTANCEOF.finditer(rule_source)
            } | {(m.group("service").lower(), m.group("resource").lower()) for m in _CFN_TYPE.finditer(rule_source)}
            rules.append(
                NagRule(
                    pack=pack,
                    rule_id=f"{pack}-{suffix.group('suffix') if suffix else ref.group('name')}",
                    level=(level.group("level").lower() if level else "error"),
                    resource_types=tuple(sorted(types)),
                )
            )
        catalogue[pack] = tuple(rules)
    return catalogue


def cfn_type_key(cfn_type: str) -> tuple[str, str] | None:
    parts = cfn_type.split("::")
    if len(parts) != 3:
        return None
    return parts[1].lower(), parts[2].lower()


@dataclass
class Acknowledgement:
    rule_id: str
    reason: str
    construct_path: str  # where acknowledge() was called
    resources: list[str] = field(default_factory=list)  # logical ids of the stack's resources it covers


def acknowledgements_from_metadata(metadata_file: Path) -> list[Acknowledgement]:
    """Acknowledgements at the construct where they were made (the stack's `*.metadata.json`)."""
    if not metadata_file.exists():
        return []
    found = []
    for path, entries in json.loads(metadata_file.read_text()).items():
        for entry in entries:
            if entry.get("type") != ACK_METADATA_TYPE or not isinstance(entry.get("data"), dict):
                continue
            for qualified, reason in entry["data"].items():
                rule_id = re.sub(r"^annotation::", "", qualified, flags=re.I)
                found.append(Acknowledgement(rule_id=rule_id, reason=str(reason), construct_path=path.lstrip("/")))
    return found


def acknowledgements_in_template(template: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """logical id -> `cdk_nag.rules_to_suppress` entries written into the template."""
    return {
        logical_id: resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress")
    }


def failed_findings(cloud_assembly: Path) -> list[dict[str, Any]]:
    """Every failed finding of every plugin, one row per violating construct."""
    report_file = cloud_assembly / "validation-report.json"
    if not report_file.exists():
        return []
    rows = []
    for plugin in json.loads(report_file.read_text()).get("pluginReports", []):
        plugin_name = plugin.get("summary", {}).get("pluginName") or plugin.get("pluginName", "")
        for violation in plugin.get("violations", []):
            rule_id = violation.get("ruleName", "")
            for construct in violation.get("violatingConstructs", []) or violation.get("violatingResources", []):
                rows.append(
                    {
                        "plugin": plugin_name,
                        "pack": pack_of(rule_id) or plugin_name,
                        "rule_id": rule_id,
                        "severity": violation.get("severity", ""),
                        "description": violation.get("description", ""),
                        "construct_path": str(construct.get("constructPath", "")).lstrip("/"),
                        "template": Path(str(construct.get("templatePath", ""))).name,
                        "logical_id": construct.get("resourceLogicalId", ""),
                    }
                )
    return rows


def stack_nag_section(
    stack: str,
    template_path: Path,
    template: dict[str, Any],
    failures: list[dict[str, Any]],
) -> dict[str, Any]:
    """Per pack: rules in the pack, applicable, failed, acknowledged (with reasons and paths), passed."""
    resources = template.get("Resources", {})
    present_types = {key for r in resources.values() if (key := cfn_type_key(r.get("Type", "")))}
    paths = {lid: r.get("Metadata", {}).get("aws:cdk:path", lid) for lid, r in resources.items()}

    # Which acknowledging construct covers which resources: the template metadata says what each resource
    # carries; the stack metadata file says where acknowledge() was called.
    made = acknowledgements_from_metadata(
        template_path.with_name(template_path.name.replace(".template.json", ".metadata.json"))
    )
    per_resource = acknowledgements_in_template(template)
    by_key: dict[tuple[str, str], Acknowledgement] = {(a.construct_path, a.rule_id): a for a in made}
    for logical_id, rules in per_resource.items():
        resource_path = paths[logical_id]
        for rule in rules:
            owners = [
                a
                for (path, rid), a in by_key.items()
                if rid == rule["id"] and (resource_path == path or resource_path.startswith(path + "/"))
            ]
            if not owners:  # metadata file missing or written by an older CDK: fall back to the resource itself
                a = Acknowledgement(rule_id=rule["id"], reason=rule.get("reason", ""), construct_path=resource_path)
                by_key[(resource_path, rule["id"])] = a
                owners = [a]
            # the nearest acknowledging ancestor wins (the aspect keeps the first it meets walking up)
            max(owners, key=lambda a: len(a.construct_path)).resources.append(logical_id)
    for ack in by_key.values():
        if not ack.resources:  # a stack whose template does not carry the acknowledgements (the pipeline's)
            ack.resources = [lid for lid, path in paths.items() if path.startswith(ack.construct_path + "/")]
    acknowledgements = sorted(by_key.values(), key=lambda a: (a.rule_id, a.construct_path))
    own = [a for a in acknowledgements if not a.rule_id.startswith(CDK_OWN_PREFIX)]
    cdk_own = [a for a in acknowledgements if a.rule_id.startswith(CDK_OWN_PREFIX)]

    stack_failures = (
        [f for f in failures if f["construct_path"].startswith(_stack_path(resources))] if resources else []
    )
    packs = {}
    for pack, pack_rules in rule_catalogue().items():
        failed_ids = {base_rule(f["rule_id"]) for f in stack_failures if f["pack"] == pack}
        acked_ids = {base_rule(a.rule_id) for a in own if pack_of(a.rule_id) == pack}
        applicable = [r for r in pack_rules if set(r.resource_types) & present_types]
        applicable_ids = {r.rule_id for r in applicable}
        packs[pack] = {
            "rules_in_pack": len(pack_rules),
            "applicable": len(applicable),
            "failed": sorted(failed_ids),
            "acknowledged": [
                {
                    "rule_id": a.rule_id,
                    "construct_path": a.construct_path,
                    "reason": a.reason,
                    "resources": [paths.get(lid, lid) for lid in a.resources],
                }
                for a in own
                if pack_of(a.rule_id) == pack
            ],
            "acknowledged_rules": sorted(acked_ids),
            "passed": sorted(applicable_ids - failed_ids - acked_ids),
            "failed_findings": [f for f in stack_failures if f["pack"] == pack],
            # an acknowledgement for a rule that has no resource type here would be stale
            "acknowledged_not_applicable": sorted(acked_ids - applicable_ids),
        }
    return {
        "stack": stack,
        "packs": packs,
        "acknowledgements": len({(a.construct_path, a.rule_id) for a in own}),
        "cdk_acknowledgements": [
            {"rule_id": a.rule_id, "construct_path": a.construct_path, "reason": a.reason} for a in cdk_own
        ],
    }


def _stack_path(resources: dict[str, Any]) -> str:
    """The construct path prefix of a stack, e.g. `dev/Data/` (from any resource's aws:cdk:path)."""
    for resource in resources.values():
        path = resource.get("Metadata", {}).get("aws:cdk:path")
        if path and path.count("/") >= 2:
            return "/".join(path.split("/")[:2]) + "/"
    return "\0"


def budget_pairs(sections: list[dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """env -> distinct (construct path without the env, rule id) of the project's own acknowledgements."""
    pairs: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for section in sections:
        for pack in section["nag"]["packs"].values():
            for ack in pack["acknowledged"]:
                pairs[section["env"]].add((ack["construct_path"], ack["rule_id"]))
    return pairs
