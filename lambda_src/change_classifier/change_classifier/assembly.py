"""Synthesized templates of the watched stacks, read from the zipped cloud assembly (cdk.out)."""

from __future__ import annotations

import json
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Any

from .job import JobError


@dataclass(frozen=True)
class SynthesizedStack:
    stack_name: str
    template_path: str  # inside the zip
    region: str | None  # None when the assembly is environment-agnostic
    template: dict[str, Any]


def _region(environment: str | None) -> str | None:
    # "aws://123456789012/eu-west-1"; "unknown-region" means environment-agnostic.
    region = (environment or "").rsplit("/", 1)[-1]
    return None if not region or region.startswith("unknown") else region


def synthesized_stacks(
    archive: zipfile.ZipFile, watched: tuple[str, ...], assembly: str | None = None
) -> list[SynthesizedStack]:
    """The watched stacks' templates, from the (nested) assembly manifests of the archive.

    A stack name can occur in more than one nested assembly: an app that adds its own stages and a
    pipeline with stages of the same names synthesizes assembly-prod/ and assembly-Pipeline-prod/,
    whose templates differ (construct paths reach Name tags and logical ids). Only the pipeline's
    one is deployed, so `assembly` (the nested assembly directory) must then say which.
    """
    manifests = [
        n
        for n in archive.namelist()
        if posixpath.basename(n) == "manifest.json"
        and (assembly is None or posixpath.dirname(n).strip("/") == assembly.strip("/"))
    ]
    if not manifests:
        raise JobError(f"no manifest.json for assembly {assembly!r} in the input artifact")
    found: list[SynthesizedStack] = []
    for manifest_path in manifests:
        try:
            manifest = json.loads(archive.read(manifest_path))
        except ValueError as error:
            raise JobError(f"{manifest_path} in the input artifact is not JSON: {error}") from None
        base = posixpath.dirname(manifest_path)
        artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
        if not isinstance(artifacts, dict | None):
            raise JobError(f"{manifest_path}: `artifacts` is a {type(artifacts).__name__}, not an object")
        for artifact_id, artifact in (artifacts or {}).items():
            if not isinstance(artifact, dict) or artifact.get("type") != "aws:cloudformation:stack":
                continue
            raw_properties = artifact.get("properties")
            properties: dict[str, Any] = raw_properties if isinstance(raw_properties, dict) else {}
            name = properties.get("stackName", artifact_id)
            if name not in watched:
                continue
            if not isinstance(properties.get("templateFile"), str):
                raise JobError(f"{manifest_path}: stack {name} has no templateFile")
            path = posixpath.join(base, properties["templateFile"])
            try:
                template = json.loads(archive.read(path))
            except (KeyError, ValueError) as error:
                raise JobError(f"template {path} of stack {name} is missing or not JSON: {error}") from None
            if not isinstance(template, dict):
                raise JobError(f"template {path} of stack {name} is a JSON {type(template).__name__}, not an object")
            found.append(SynthesizedStack(name, path, _region(artifact.get("environment")), template))
    missing = sorted(set(watched) - {s.stack_name for s in found})
    if missing:
        raise JobError(f"watched stack(s) {', '.join(missing)} not found in the synthesized cloud assembly")
    for name in watched:
        places = sorted(posixpath.dirname(s.template_path) or "." for s in found if s.stack_name == name)
        if len(places) > 1:
            raise JobError(
                f"stack {name} is synthesized in several assemblies ({', '.join(places)}): "
                "set UserParameters.assembly to the one the pipeline deploys"
            )
    return sorted(found, key=lambda s: watched.index(s.stack_name))  # in the order the user listed them
