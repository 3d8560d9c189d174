"""Offline model of what a Lambda function's code can import: its runtime, its layers, its image build.

Used by tests/infra/test_lambda_packaging.py. Nothing here reaches the network: the runtime's and the
layers' packages are linked from the distributions installed in this interpreter's environment (.venv).

Sources (re-check them when a runtime or a layer changes):
- Runtime packages: "Building Lambda functions with Python" (https://docs.aws.amazon.com/lambda/latest/dg/
  lambda-python.html): "Your code runs in an environment that includes the SDK for Python (Boto3)"; section
  "Runtime-included SDK versions". The SDK is boto3 and what it requires (botocore, s3transfer, jmespath,
  python-dateutil, six, urllib3).
- Search path: "Working with .zip file archives for Python Lambda functions" (python-package.html), section
  "Dependency search path and runtime-included libraries": the deployment package (/var/task) first, then
  the layers (/opt/python/lib/python3.x/site-packages, /opt/python), then the runtime's libraries
  (/var/runtime, /var/lang/lib/python3.x/site-packages); the AWS base images hold the SDK the same way.
- Layer layout: "Packaging your layer content" (packaging-layers.html): a Python layer's modules are under
  `python/` or `python/lib/python3.x/site-packages/` in the layer archive.
- Powertools v3 layer: Powertools docs "Installation — Lambda Layer" (https://docs.aws.amazon.com/powertools/
  python/latest/getting-started/install/#lambda-layer): "a .zip file archive that contains pre-packaged
  dependencies", published as AWSLambdaPowertoolsPythonV3-{python_version}-{arch} by account 017000801446.
  Its build (aws-powertools/powertools-lambda-python, layer_v3/docker/Dockerfile) runs
  `pip install -t /asset/python "aws-lambda-powertools[all]"` and then removes boto3, botocore, s3transfer,
  dateutil, urllib3, six and jmespath "already available in Lambda Runtime".
- Reserved environment variables: "Working with Lambda environment variables" (configuration-envvars.html),
  section "Defined runtime environment variables".
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What each managed runtime provides besides the standard library (see the module docstring).
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {"python3.13": ("boto3",)}

POWERTOOLS_DOC = "https://docs.aws.amazon.com/powertools/python/latest/getting-started/install/#lambda-layer"
# The layer build deletes these after `pip install`: the runtime provides them.
POWERTOOLS_REMOVED = frozenset({"boto3", "botocore", "s3transfer", "python-dateutil", "urllib3", "six", "jmespath"})


@dataclass(frozen=True)
class PublicLayer:
    """A published layer the test knows the contents of, matched by ARN."""

    name: str
    arn: re.Pattern[str]
    versions: frozenset[int]  # layer versions whose contents were checked against the source below
    requirement: str  # what the layer build installs
    removed: frozenset[str]  # distributions the layer build deletes again
    source: str


PUBLIC_LAYERS = (
    PublicLayer(
        name="Powertools for AWS Lambda (Python) v3",
        arn=re.compile(
            r"^arn:aws[a-z-]*:lambda:[^:]+:017000801446:layer:"
            r"AWSLambdaPowertoolsPythonV3-(?P<python>python3\d+)-(?P<arch>x86_64|arm64):(?P<version>\d+)$"
        ),
        versions=frozenset({27}),
        requirement="aws-lambda-powertools[all]",
        removed=POWERTOOLS_REMOVED,
        source=POWERTOOLS_DOC,
    ),
)

# Removed from the standard library; the test interpreter (3.11) still has them, the runtime does not.
# "What's New In Python 3.12" (distutils, imp, asynchat, asyncore, smtpd) and "What's New In Python 3.13"
# (PEP 594 dead batteries, lib2to3), docs.python.org.
REMOVED_STDLIB = {
    (3, 12): frozenset({"distutils", "imp", "asynchat", "asyncore", "smtpd"}),
    (3, 13): frozenset(
        {
            "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap", "msilib", "nis",
            "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
            "lib2to3",
        }
    ),
}  # fmt: skip


class PackagingError(Exception):
    """The function's packaging cannot be modelled or is wrong; the message says what to change."""


# --------------------------------------------------------------------------- distributions


def python_version(runtime: str) -> tuple[int, int]:
    match = re.fullmatch(r"python(\d)\.(\d+)", runtime)
    if not match:
        raise PackagingError(f"{runtime!r} is not a Python runtime identifier")
    return int(match[1]), int(match[2])


def target_markers(runtime: str, architecture: str) -> dict[str, str]:
    """PEP 508 marker environment of the Lambda runtime (Amazon Linux, CPython)."""
    major, minor = python_version(runtime)
    return {
        "python_version": f"{major}.{minor}",
        "python_full_version": f"{major}.{minor}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "aarch64" if architecture == "arm64" else "x86_64",
    }


@dataclass
class Closure:
    distributions: dict[str, importlib.metadata.Distribution] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)


def distribution_closure(requirements: list[str], markers: Mapping[str, str]) -> Closure:
    """The installed distributions `requirements` need, transitively, on the target platform."""
    closure = Closure()
    seen: set[tuple[str, str]] = set()
    queue = [Requirement(r) for r in requirements]
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        extras = {""} | set(requirement.extras)
        if all((name, extra) in seen for extra in extras):
            continue
        seen.update((name, extra) for extra in extras)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            closure.missing.add(name)
            continue
        closure.distributions[name] = distribution
        for line in distribution.requires or []:
            dependency = Requirement(line)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({**markers, "extra": extra}) for extra in extras):
                queue.append(dependency)
    return closure


def link_distributions(distributions: Mapping[str, importlib.metadata.Distribution], target: Path) -> None:
    """Symlink every file each distribution installed (its RECORD) under `target`, as a site-packages."""
    target.mkdir(parents=True, exist_ok=True)
    for name, distribution in distributions.items():
        if distribution.files is None:
            raise PackagingError(f"{name} has no RECORD of its files; reinstall it with pip")
        for relative in distribution.files:
            if relative.parts[0] == "..":
                continue  # console scripts
            # Bytecode is linked too: the interpreter checks it against the (linked) source and skips compiling.
            source = Path(str(distribution.locate_file(relative)))
            destination = target / relative
            if source.is_file() and not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.symlink_to(source)


# --------------------------------------------------------------------------- the synthesized assembly


@dataclass(frozen=True)
class Function:
    """One AWS::Lambda::Function of a synthesized template, with what the packaging check needs."""

    stack: str
    logical_id: str
    package_type: str  # "Zip" or "Image"
    runtime: str | None
    handler: str | None
    code_dir: Path | None  # the asset directory (zip) or the image's build context
    layers: tuple[str | Path, ...]  # public layer ARNs, or directories of layers built in the assembly
    environment: Mapping[str, str]  # the template's variables, intrinsics replaced by placeholders
    architecture: str
    function_name: str
    region: str
    tracing: bool
    memory_mb: int = 128
    dockerfile: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    image_command: tuple[str, ...] | None = None
    image_entry_point: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return f"{self.stack}/{self.logical_id}"


@dataclass(frozen=True)
class Asset:
    """Where an asset's source is in the assembly (from the stack's asset manifest)."""

    path: Path
    dockerfile: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackContext:
    name: str
    template: Path
    account: str
    region: str
    assets: Mapping[str, Asset] = field(default_factory=dict)  # by S3 object key and by image tag

    def asset(self, code: Mapping[str, Any], metadata: Mapping[str, Any]) -> Asset | None:
        """The asset behind a function's or layer's Code: the S3 key or image tag names it in the manifest."""
        if "aws:asset:path" in metadata:  # set when synthesized by the CDK CLI
            path = (self.template.parent / metadata["aws:asset:path"]).resolve()
            return Asset(path, metadata.get("aws:asset:dockerfile-path"))
        key = code.get("S3Key")
        uri = code.get("ImageUri")
        if isinstance(uri, dict) and "Fn::Sub" in uri:
            uri = uri["Fn::Sub"]
        if isinstance(key, str) and key in self.assets:
            return self.assets[key]
        if isinstance(uri, str) and uri.rsplit(":", 1)[-1] in self.assets:
            return self.assets[uri.rsplit(":", 1)[-1]]
        return None


def _asset_manifest(path: Path) -> dict[str, Asset]:
    manifest = json.loads(path.read_text())
    assets = {}
    for entry in manifest.get("files", {}).values():
        if entry["source"].get("packaging") == "zip":
            for destination in entry["destinations"].values():
                assets[destination["objectKey"]] = Asset((path.parent / entry["source"]["path"]).resolve())
    for entry in manifest.get("dockerImages", {}).values():
        source = entry["source"]
        if "directory" not in source:
            continue  # an image built by an executable: nothing to replay
        for destination in entry["destinations"].values():
            assets[destination["imageTag"]] = Asset(
                (path.parent / source["directory"]).resolve(), source.get("dockerFile"), source.get("buildArgs", {})
            )
    return assets


def stack_templates(outdir: Path) -> Iterator[tuple[StackContext, dict[str, Any]]]:
    """Every stack template of the cloud assembly and of its nested assemblies (stages)."""
    pending, visited = [Path(outdir)], set()
    while pending:
        directory = pending.pop().resolve()
        if directory in visited:
            continue
        visited.add(directory)
        artifacts = json.loads((directory / "manifest.json").read_text()).get("artifacts", {})
        assets: dict[str, Asset] = {}
        for artifact in artifacts.values():
            if artifact["type"] == "cdk:asset-manifest":
                assets |= _asset_manifest(directory / artifact["properties"]["file"])
        for artifact_id, artifact in artifacts.items():
            properties = artifact.get("properties", {})
            if artifact["type"] == "cdk:cloud-assembly":
                pending.append(directory / properties["directoryName"])
            elif artifact["type"] == "aws:cloudformation:stack":
                _, _, account, region = (artifact.get("environment") or "aws:///").split("/", 3)
                context = StackContext(
                    name=artifact.get("displayName", artifact_id),
                    template=directory / properties["templateFile"],
                    account=account if account.isdigit() else "123456789012",
                    region=region if re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region) else "eu-west-1",
                    assets=assets,
                )
                yield context, json.loads(context.template.read_text())


def lambda_functions(outdir: Path) -> list[Function]:
    return [
        function for context, template in stack_templates(outdir) for function in template_functions(context, template)
    ]


def template_functions(context: StackContext, template: dict[str, Any]) -> Iterator[Function]:
    resources = template.get("Resources", {})
    resolver = Placeholders(context)
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties, metadata = resource.get("Properties", {}), resource.get("Metadata", {})
        asset = context.asset(properties.get("Code", {}), metadata)
        image = properties.get("ImageConfig") or {}
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        yield Function(
            stack=context.name,
            logical_id=logical_id,
            package_type=properties.get("PackageType", "Zip"),
            runtime=properties.get("Runtime"),
            handler=properties.get("Handler"),
            code_dir=asset.path if asset else None,
            layers=tuple(_layer(layer, resources, context, resolver) for layer in properties.get("Layers") or []),
            environment={key: resolver.resolve(value) for key, value in variables.items()},
            architecture=(properties.get("Architectures") or ["x86_64"])[0],
            function_name=resolver.resolve(properties.get("FunctionName", logical_id)),
            region=context.region,
            tracing=(properties.get("TracingConfig") or {}).get("Mode") == "Active",
            memory_mb=int(properties.get("MemorySize", 128)),
            dockerfile=asset.dockerfile if asset else None,
            build_args=asset.build_args if asset else {},
            image_command=tuple(image["Command"]) if image.get("Command") else None,
            image_entry_point=tuple(image["EntryPoint"]) if image.get("EntryPoint") else None,
        )


def _layer(value: Any, resources: dict[str, Any], context: StackContext, resolver: Placeholders) -> str | Path:
    # A layer version built in this stack (lambda_.LayerVersion with Code.from_asset) is referenced by Ref.
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in resources:
        layer = resources[value["Ref"]]
        if layer["Type"] == "AWS::Lambda::LayerVersion":
            asset = context.asset(layer.get("Properties", {}).get("Content", {}), layer.get("Metadata", {}))
            if asset is None:
                raise PackagingError(f"layer {value['Ref']} has no asset in the assembly")
            return asset.path
    return resolver.resolve(value)


class Placeholders:
    """Resolves CloudFormation intrinsics to stable placeholder strings (values are unknown before deploy)."""

    def __init__(self, context: StackContext) -> None:
        self.pseudo = {
            "AWS::Region": context.region,
            "AWS::AccountId": context.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": context.name,
        }

    def resolve(self, value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            [(function, argument)] = value.items()
            return self._intrinsic(function, argument)
        raise PackagingError(f"cannot resolve {value!r} to a string")

    def _intrinsic(self, function: str, argument: Any) -> str:
        if function == "Ref":
            return self.pseudo.get(argument, f"placeholder-{argument}")
        if function == "Fn::GetAtt":
            return "placeholder-" + (argument if isinstance(argument, str) else ".".join(map(str, argument)))
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(self.resolve(part) for part in parts)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda m: self.resolve(variables[m[1]]) if m[1] in variables else self._intrinsic("Ref", m[1]),
                text,
            )
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items[int(index)]) if isinstance(items, list) else f"placeholder-select-{index}"
        if function == "Fn::If":
            return self.resolve(argument[1])
        if function in {"Fn::ImportValue", "Fn::FindInMap", "Fn::Base64", "Fn::GetAZs"}:
            return f"placeholder-{function.removeprefix('Fn::')}"
        raise PackagingError(f"cannot resolve intrinsic {function}")


# --------------------------------------------------------------------------- runtime and layers


class Environments:
    """Builds, once per session and lazily, the directories of each runtime's and layer's packages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[tuple[str, ...], tuple[Path, set[str]]] = {}
        self._lock = threading.Lock()  # the checks run in threads; each directory is built once

    def runtime_dir(self, runtime: str, architecture: str) -> Path:
        if runtime not in RUNTIME_PACKAGES:
            raise PackagingError(
                f"runtime {runtime} is not described: add what AWS documents it includes to RUNTIME_PACKAGES"
            )
        key = ("runtime", runtime, architecture)
        with self._lock:
            if key in self._built:
                return self._built[key][0]
            closure = distribution_closure(list(RUNTIME_PACKAGES[runtime]), target_markers(runtime, architecture))
            if closure.missing:
                raise PackagingError(f"the {runtime} runtime's {sorted(closure.missing)} are not installed in .venv")
            self._built[key] = (self._link("-".join(key), closure.distributions), set())
        return self._built[key][0]

    def layer_dirs(self, layer: str | Path, runtime: str, architecture: str) -> list[Path]:
        if isinstance(layer, Path):  # built in the assembly: the documented layout of a Python layer
            major, minor = python_version(runtime)
            candidates = [layer / "python", layer / "python" / "lib" / f"python{major}.{minor}" / "site-packages"]
            return [path for path in candidates if path.is_dir()]
        return [self.public_layer_dir(layer, runtime, architecture)]

    def public_layer_dir(self, arn: str, runtime: str, architecture: str) -> Path:
        layer, match = _known_layer(arn)
        if match["python"] != runtime.replace(".", "") or match["arch"] != architecture:
            raise PackagingError(
                f"layer {arn} is built for {match['python']}/{match['arch']}, the function runs "
                f"{runtime}/{architecture}: compiled dependencies would not load"
            )
        key = ("layer", layer.name, match["python"], match["arch"])
        with self._lock:
            if key in self._built:
                return self._built[key][0]
            closure = distribution_closure([layer.requirement], target_markers(runtime, architecture))
            kept = {name: d for name, d in closure.distributions.items() if name not in layer.removed}
            self._built[key] = (self._link(f"layer-{len(self._built)}", kept), closure.missing - layer.removed)
        return self._built[key][0]

    def unmodelled(self) -> dict[str, list[str]]:
        """Layer contents the source documents but .venv does not hold (imports of them fail here only)."""
        return {key[1]: sorted(missing) for key, (_, missing) in self._built.items() if missing}

    def _link(self, name: str, distributions: Mapping[str, importlib.metadata.Distribution]) -> Path:
        target = self.root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        link_distributions(distributions, target)
        return target


def _known_layer(arn: str) -> tuple[PublicLayer, re.Match[str]]:
    for layer in PUBLIC_LAYERS:
        match = layer.arn.match(arn)
        if match and int(match["version"]) in layer.versions:
            return layer, match
        if match:
            raise PackagingError(
                f"{layer.name} layer version {match['version']} ({arn}) is not described: check what it contains "
                f"({layer.source}) and add the version to PUBLIC_LAYERS in tests/infra/lambda_runtime.py"
            )
    raise PackagingError(
        f"layer {arn} is not described: add its contents (with the page that documents them) to PUBLIC_LAYERS "
        "in tests/infra/lambda_runtime.py"
    )


# --------------------------------------------------------------------------- the import check

# Runs with `python -I -S -B`: no site-packages, no PYTHON* variables, no user site, no bytecode written.
BOOTSTRAP = r"""
import importlib, json, sys, traceback
spec = json.loads(sys.argv[1])
stdlib = [p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p]
sys.path[:] = spec["path"] + stdlib
result = {"path": list(sys.path)}
try:
    module = importlib.import_module(spec["module"])
    target = getattr(module, spec["attribute"], None)
    result.update(imported=True, file=getattr(module, "__file__", None), found=hasattr(module, spec["attribute"]),
                  callable=callable(target))
except BaseException as exc:
    result.update(imported=False, error="".join(traceback.format_exception(exc)))
with open(sys.argv[2], "w") as out:
    json.dump(result, out)
"""


@dataclass(frozen=True)
class ImportResult:
    label: str
    problems: tuple[str, ...]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def split_handler(handler: str) -> tuple[str, str]:
    """Lambda's Python handler setting: `path/to/module.function` or `package.module.function`."""
    module, _, attribute = handler.rpartition(".")
    if not module or not attribute:
        raise PackagingError(f"handler {handler!r} is not <module>.<function>")
    return module.replace("/", "."), attribute


def runtime_environment(function: Function, task_root: Path) -> dict[str, str]:
    """The variables Lambda defines (reserved ones with placeholder values) plus the function's own."""
    runtime = function.runtime or "image"
    reserved = {
        "_HANDLER": function.handler or "",
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "placeholder-log-stream",
        "AWS_ACCESS_KEY_ID": "placeholder-access-key",
        "AWS_SECRET_ACCESS_KEY": "placeholder-secret-key",
        "AWS_SESSION_TOKEN": "placeholder-session-token",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        # Not documented as reserved, but set so that nothing probes the instance metadata service.
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if function.tracing:
        reserved |= {"AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"}
    return {**reserved, **function.environment}


def import_handler(
    *, label: str, handler: str, task_root: Path, path: list[Path], environment: Mapping[str, str], runtime: str
) -> ImportResult:
    """Imports the handler's module in a fresh interpreter whose sys.path is `path` plus the stdlib only."""
    module, attribute = split_handler(handler)
    problems = removed_stdlib_imports(task_root, runtime)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        spec = {"path": [str(p) for p in path], "module": module, "attribute": attribute}
        process = subprocess.run(
            [sys.executable, "-I", "-S", "-B", "-c", BOOTSTRAP, json.dumps(spec), str(out)],
            env=dict(environment),
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if not out.exists():
            return ImportResult(label, (*problems, f"the interpreter exited {process.returncode}"), process.stderr)
        result = json.loads(out.read_text())
    if not result["imported"]:
        last = result["error"].strip().splitlines()[-1]
        return ImportResult(label, (*problems, f"import {module} failed: {last}"), result["error"])
    if not result["found"]:
        problems.append(f"{module} has no attribute {attribute!r}")
    elif not result["callable"]:
        problems.append(f"{module}.{attribute} is not callable")
    file = result.get("file")
    if file is None or not Path(file).resolve().is_relative_to(task_root.resolve()):
        problems.append(f"{module} was imported from {file}, not from the function's code ({task_root})")
    return ImportResult(label, tuple(problems), f"sys.path: {result['path']}")


def removed_stdlib_imports(code: Path, runtime: str) -> list[str]:
    """Imports, in the function's own modules, of stdlib modules the runtime's Python no longer has."""
    version = python_version(runtime)
    removed = frozenset().union(*(names for since, names in REMOVED_STDLIB.items() if since <= version))
    problems = []
    for source in sorted(code.rglob("*.py")):
        if source.is_symlink():
            continue  # a distribution linked in by the model, not the function's own code
        for node in ast.walk(ast.parse(source.read_bytes(), filename=str(source))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            problems.extend(
                f"{source.relative_to(code)}:{node.lineno} imports {name}, removed from Python before {runtime}"
                for name in names
                if name.split(".")[0] in removed
            )
    return problems


def check_zip_function(function: Function, environments: Environments) -> ImportResult:
    """The handler imports from the asset, the declared layers and the runtime's packages, nothing else."""
    try:
        if function.code_dir is None or not function.code_dir.is_dir():
            raise PackagingError("its code is not an asset directory of the assembly (asset manifest, aws:asset:path)")
        assert function.runtime and function.handler
        layer_paths = [
            path
            for layer in function.layers
            for path in environments.layer_dirs(layer, function.runtime, function.architecture)
        ]
        # Lambda's order: the deployment package, then the layers, then the runtime's libraries.
        path = [function.code_dir, *layer_paths, environments.runtime_dir(function.runtime, function.architecture)]
        return import_handler(
            label=function.label,
            handler=function.handler,
            task_root=function.code_dir,
            path=path,
            environment=runtime_environment(function, function.code_dir),
            runtime=function.runtime,
        )
    except PackagingError as error:
        return ImportResult(function.label, (str(error),))


# --------------------------------------------------------------------------- container images

AWS_PYTHON_BASE = re.compile(r"^public\.ecr\.aws/lambda/python:(?P<version>3\.\d+)(?:[.-].*)?$")
# Variables the AWS base images define ("Using an AWS base image for Python"; configuration-envvars.html).
BASE_IMAGE_ENV = {"LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime"}
SITE_PACKAGES = "/var/lang/lib/python{version}/site-packages"


@dataclass
class ImageModel:
    """The parts of a Lambda image build that decide what its handler can import."""

    runtime: str
    root: Path  # the image's file system as far as COPY built it
    site_packages: list[str] = field(default_factory=list)  # requirements pip installed into the interpreter
    task_root_packages: list[str] = field(default_factory=list)  # requirements pip installed into /var/task
    command: tuple[str, ...] | None = None
    entry_point: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")


def _instructions(dockerfile: str) -> Iterator[tuple[str, str]]:
    logical = ""
    for line in dockerfile.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        keyword, _, rest = logical.strip().partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def _exec_form(argument: str) -> tuple[str, ...]:
    if argument.startswith("["):
        return tuple(json.loads(argument))
    return ("/bin/sh", "-c", argument)


def build_image_model(
    context: Path, dockerfile: str, root: Path, build_args: Mapping[str, str] | None = None
) -> ImageModel:
    """Replays FROM, ARG, ENV, WORKDIR, COPY, RUN pip install, CMD and ENTRYPOINT of a Lambda Dockerfile."""
    variables = dict(BASE_IMAGE_ENV)
    build_args = build_args or {}
    model: ImageModel | None = None
    workdir = "/var/task"  # the AWS base images' WORKDIR
    for keyword, argument in _instructions((context / dockerfile).read_text()):
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), argument)
        if keyword == "FROM":
            if model is not None:
                raise PackagingError("multi-stage Dockerfiles are not modelled; extend build_image_model")
            base = AWS_PYTHON_BASE.match(expanded.split()[0])
            if not base:
                raise PackagingError(f"base image {expanded!r} is not an AWS Lambda Python base image")
            model = ImageModel(runtime=f"python{base['version']}", root=root)
            model.path("/var/task").mkdir(parents=True, exist_ok=True)
        elif keyword in {"ARG", "ENV"}:
            name, _, value = expanded.replace("=", " ", 1).partition(" ")
            if keyword == "ENV":
                variables[name] = value.strip().strip('"')
            elif name not in variables:  # CDK's buildArgs (asset manifest) override an ARG's default
                variables[name] = build_args.get(name, value.strip().strip('"'))
        elif model is None:
            raise PackagingError(f"{keyword} before FROM")
        elif keyword == "WORKDIR":
            workdir = os.path.join(workdir, expanded)
            model.path(workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            _copy(context, model, expanded, workdir)
        elif keyword == "RUN":
            _run(model, expanded, workdir)
        elif keyword == "CMD":
            model.command = _exec_form(expanded)
        elif keyword == "ENTRYPOINT":
            model.entry_point = _exec_form(expanded)
        elif keyword in {"LABEL", "USER", "EXPOSE", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "VOLUME"}:
            continue
        else:
            raise PackagingError(f"Dockerfile instruction {keyword} is not modelled; extend build_image_model")
    if model is None:
        raise PackagingError("the Dockerfile has no FROM")
    return model


def _copy(context: Path, model: ImageModel, argument: str, workdir: str) -> None:
    words = [w for w in (json.loads(argument) if argument.startswith("[") else shlex.split(argument))]
    if any(w.startswith("--from") for w in words):
        raise PackagingError("COPY --from is not modelled; extend build_image_model")
    *sources, destination = [w for w in words if not w.startswith("--")]
    target = model.path(os.path.join(workdir, destination))
    into_directory = destination.endswith("/") or len(sources) > 1 or target.is_dir()
    for source in sources:
        origin = context / source
        if not origin.exists():
            raise PackagingError(f"COPY {source}: not in the image's build context {context}")
        if origin.is_dir():  # Docker copies a directory's contents, not the directory itself
            shutil.copytree(origin, target, dirs_exist_ok=True)
        else:
            file_target = target / origin.name if into_directory else target
            file_target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, file_target)


def _run(model: ImageModel, argument: str, workdir: str) -> None:
    for command in re.split(r"&&|;", argument):
        words = shlex.split(command)
        if words[:2] in (["pip", "install"], ["pip3", "install"]) or words[:4] == ["python", "-m", "pip", "install"]:
            _pip_install(model, words[words.index("install") + 1 :], workdir)
        elif words:
            model.notes.append(f"RUN {' '.join(words)}: not modelled (its effect on imports is not checked)")


def _pip_install(model: ImageModel, words: list[str], workdir: str) -> None:
    requirements, target = [], None
    iterator = iter(words)
    for word in iterator:
        if word in {"-r", "--requirement"}:
            requirements += _requirements_file(model.path(os.path.join(workdir, next(iterator))))
        elif word in {"-t", "--target"}:
            target = next(iterator)
        elif word.startswith("--target="):
            target = word.split("=", 1)[1]
        elif word in {"-c", "--constraint", "-i", "--index-url", "--extra-index-url"}:
            next(iterator)
        elif not word.startswith("-"):
            requirements.append(word)
    if target is None:
        model.site_packages += requirements
    elif os.path.normpath(target) == BASE_IMAGE_ENV["LAMBDA_TASK_ROOT"]:
        model.task_root_packages += requirements
    else:
        raise PackagingError(f"pip install --target {target}: not on the Python runtime's search path")


def _requirements_file(path: Path) -> list[str]:
    if not path.is_file():
        raise PackagingError(f"pip install -r {path.name}: the file was not copied into the image before")
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip().rstrip("\\").strip()
        if line.startswith("-r "):
            lines += _requirements_file(path.parent / line[3:].strip())
        elif line and not line.startswith(("#", "-")):
            lines.append(line.split(" --hash")[0].strip())
    return lines


@dataclass(frozen=True)
class PreparedImage:
    model: ImageModel
    site_packages: Path
    problems: tuple[str, ...]

    @property
    def task_root(self) -> Path:
        return self.model.path(BASE_IMAGE_ENV["LAMBDA_TASK_ROOT"])


class ImageBuilds:
    """Replays each image build once (several functions share one image asset)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prepared: dict[tuple[Path, str, str, str], PreparedImage] = {}
        self._lock = threading.Lock()

    def prepare(self, function: Function) -> PreparedImage:
        assert function.code_dir is not None
        key = (function.code_dir, function.dockerfile or "Dockerfile", function.architecture, repr(function.build_args))
        with self._lock:
            if key not in self._prepared:
                self._prepared[key] = self._build(function, self.root / f"image{len(self._prepared)}")
            return self._prepared[key]

    @staticmethod
    def _build(function: Function, scratch: Path) -> PreparedImage:
        assert function.code_dir is not None
        dockerfile, architecture = function.dockerfile or "Dockerfile", function.architecture
        model = build_image_model(function.code_dir, dockerfile, scratch / "root", function.build_args)
        markers = target_markers(model.runtime, architecture)
        problems: list[str] = []
        site_packages = scratch / "site-packages"
        for requirements, target in [(model.site_packages, site_packages), (model.task_root_packages, None)]:
            closure = distribution_closure(requirements, markers)
            problems += [
                f"{name} (pip-installed by the Dockerfile) is not in .venv" for name in sorted(closure.missing)
            ]
            problems += _version_mismatches(requirements)
            link_distributions(closure.distributions, target or model.path(BASE_IMAGE_ENV["LAMBDA_TASK_ROOT"]))
        return PreparedImage(model, site_packages, tuple(problems))


def check_image_function(function: Function, environments: Environments, images: ImageBuilds) -> ImportResult:
    """Replays the image build offline, then imports CMD's handler as the base image's runtime would."""
    try:
        dockerfile = function.dockerfile or "Dockerfile"
        if function.code_dir is None or not (function.code_dir / dockerfile).is_file():
            raise PackagingError("no Dockerfile in the image asset's build context")
        if function.image_entry_point:
            raise PackagingError("ImageConfig.EntryPoint overrides the base image's runtime client: not modelled")
        image = images.prepare(function)
        if image.model.entry_point is not None:
            raise PackagingError("the Dockerfile replaces the base image's ENTRYPOINT: not modelled")
        command = function.image_command or image.model.command
        if not command or len(command) != 1:
            raise PackagingError(f'CMD must be ["<module>.<function>"] for the AWS base image, got {command}')
        runtime = image.model.runtime
        result = import_handler(
            label=function.label,
            handler=command[0],
            task_root=image.task_root,
            # /var/task, then the runtime's SDK and what pip installed into the image's interpreter.
            path=[image.task_root, environments.runtime_dir(runtime, function.architecture), image.site_packages],
            environment=runtime_environment(function, image.task_root),
            runtime=runtime,
        )
        detail = "\n".join([*image.model.notes, result.detail])
        return ImportResult(result.label, (*image.problems, *result.problems), detail)
    except PackagingError as error:
        return ImportResult(function.label, (str(error),))


def _version_mismatches(requirements: list[str]) -> list[str]:
    """A pinned requirement must be the version the import check links (the one .venv holds)."""
    problems = []
    for line in requirements:
        requirement = Requirement(line)
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if pins and installed not in pins:
            problems.append(f"the image pins {line}, .venv has {installed}: the check would not model the image")
    return problems
