"""Custom-named resources can be replaced: every create-only property they are given is part of their name.

CloudFormation replaces a resource when a create-only property changes, and cannot create the replacement
under the same custom name (CloudFormation User Guide, "Name type"; the resource schemas' `createOnlyProperties`,
which cfn-lint ships, say which properties those are).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.model_endpoint import ModelEndpoint, ModelRelease
from platform_config import EndpointSettings, ModelSource

DIGEST = re.compile(r"-[0-9a-f]{8}$")
# Types whose name carries a digest of every create-only property (ml_constructs/physical_names.py).
DIGESTED = {
    "AWS::SageMaker::Model": "ModelName",
    "AWS::SageMaker::EndpointConfig": "EndpointConfigName",
    "AWS::SageMaker::DataQualityJobDefinition": "JobDefinitionName",
    "AWS::SageMaker::ModelQualityJobDefinition": "JobDefinitionName",
}
# Names unique only within a parent resource: a new parent is a new name space, so the parent reference may
# change. Any other create-only property must keep the value the code gives it.
SCOPED_TO_PARENT = {
    "AWS::ApiGateway::Model": ("Name", "RestApiId"),
    "AWS::ApiGateway::Stage": ("StageName", "RestApiId"),
    "AWS::ApplicationAutoScaling::ScalingPolicy": ("PolicyName", "ScalingTargetId"),
}
# (type, create-only property) -> the one value the code sets; changing it needs a new name, so this fails.
FIXED = {
    ("AWS::Lambda::Function", "PackageType"): {"Zip", "Image"},
    ("AWS::WAFv2::WebACL", "Scope"): {"REGIONAL"},
    ("AWS::ApiGateway::Model", "ContentType"): {"application/json"},
    ("AWS::EC2::VPCEndpoint", "VpcEndpointType"): {"Gateway", "Interface"},
}
# Create-only properties ending in "Name" that name another resource, not this one.
NOT_A_NAME = {
    ("AWS::EC2::VPCEndpoint", "ServiceName"),
    ("AWS::EC2::FlowLog", "LogGroupName"),
    ("AWS::Lambda::EventInvokeConfig", "FunctionName"),
    ("AWS::Lambda::Permission", "FunctionName"),
}


def create_only(resource_type: str) -> list[str]:
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("eu-west-1", resource_type).schema
    return [p.split("/")[2] for p in schema.get("createOnlyProperties", []) if p.count("/") == 2]


def name_properties(resource_type: str, properties: dict[str, Any]) -> list[str]:
    return [
        p
        for p in create_only(resource_type)
        if (p.endswith("Name") or p == "Name") and p in properties and (resource_type, p) not in NOT_A_NAME
    ]


def named_resources(synthesized) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in sorted(Path(synthesized.outdir).rglob("*.template.json")):
        for logical_id, resource in json.loads(path.read_text())["Resources"].items():
            if resource["Type"].startswith("Custom::") or resource["Type"] == "AWS::CloudFormation::CustomResource":
                continue
            yield f"{path.name}:{logical_id}", resource["Type"], resource.get("Properties", {})


def test_every_custom_named_resource_is_replaceable(synthesized) -> None:
    checked, problems = 0, []
    for where, resource_type, properties in named_resources(synthesized):
        names = name_properties(resource_type, properties)
        if not names:
            continue
        checked += 1
        others = [p for p in create_only(resource_type) if p in properties and p not in names]
        if resource_type in DIGESTED:
            if not DIGEST.search(str(properties[DIGESTED[resource_type]])):
                problems.append(f"{where}: {resource_type} name lacks the create-only digest")
            continue
        parent = SCOPED_TO_PARENT.get(resource_type, (None, None))[1]
        for prop in others:
            if prop == parent:
                continue
            allowed = FIXED.get((resource_type, prop))
            if allowed is None or properties[prop] not in list(allowed):
                problems.append(
                    f"{where}: {resource_type} is custom-named ({', '.join(names)}) and sets create-only {prop}="
                    f"{properties[prop]!r}: derive the name from it (physical_names.py) or fix the value here"
                )
    assert checked > 50
    assert not problems, "\n".join(problems)


# --- the endpoint's names change with every input that replaces the model or the endpoint config ----------


TWO_INSTANCES = EndpointSettings(initial_instance_count=2, min_capacity=2, max_capacity=4)


@dataclasses.dataclass(frozen=True)
class Inputs:
    settings: EndpointSettings = TWO_INSTANCES
    source: ModelSource = dataclasses.field(default_factory=ModelSource)
    other_package: bool = False  # another build's model.tar.gz (the same card)
    version: str | None = None
    subnet_group: str = "inference"
    security_group: str = "a"
    key: str = "a"


def names(inputs: Inputs, index: int, app: App, other_package: Path | None = None) -> tuple[str, str]:
    stack = Stack(app, f"Case{index}", env={"account": "123456789012", "region": "eu-west-1"})
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        availability_zones=["eu-west-1a", "eu-west-1b"],
        subnet_configuration=[
            ec2.SubnetConfiguration(name=n, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)
            for n in ("inference", "other")
        ],
    )
    groups = {n: ec2.SecurityGroup(stack, f"Sg{n}", vpc=vpc) for n in ("a", "b")}
    keys = {n: kms.Key(stack, f"Key{n}") for n in ("a", "b")}
    release = ModelRelease.from_metadata_dir(inputs.source.artifact_dir)
    source = inputs.source
    if inputs.other_package:
        assert other_package is not None
        source = dataclasses.replace(source, artifact_dir=str(other_package))
    if inputs.version:
        release = dataclasses.replace(release, version=inputs.version)
    endpoint = ModelEndpoint(
        stack,
        "Model",
        endpoint_name="mlapi-test-endpoint",
        settings=inputs.settings,
        source=source,
        release=release,
        vpc=vpc,
        subnets=ec2.SubnetSelection(subnet_group_name=inputs.subnet_group),
        security_group=groups[inputs.security_group],
        data_key=keys[inputs.key],
        capture_bucket=s3.Bucket(stack, "Capture"),
        capture_bucket_name="capture-bucket",
        logs=LogPolicy(keys["a"], 30, RemovalPolicy.DESTROY),
    )
    return str(endpoint.model.model_name), str(endpoint.endpoint_config.endpoint_config_name)


BASE = Inputs()
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/serving:1"
# (what changes, the inputs, whether the model is replaced; the endpoint config always is)
CHANGES = [
    ("serving image", dataclasses.replace(BASE, source=ModelSource(image_uri=IMAGE)), True),
    ("model data", dataclasses.replace(BASE, other_package=True), True),
    ("model version (environment)", dataclasses.replace(BASE, version="1.0.1"), True),
    ("subnets", dataclasses.replace(BASE, subnet_group="other"), True),
    ("security group", dataclasses.replace(BASE, security_group="b"), True),
    (
        "instance type",
        dataclasses.replace(BASE, settings=dataclasses.replace(BASE.settings, instance_type="ml.c6i.xlarge")),
        False,
    ),
    (
        "instance count",
        dataclasses.replace(BASE, settings=dataclasses.replace(BASE.settings, initial_instance_count=3)),
        False,
    ),
    (
        "capture percent",
        dataclasses.replace(BASE, settings=dataclasses.replace(BASE.settings, data_capture_percent=20)),
        False,
    ),
    (
        "startup health check",
        dataclasses.replace(
            BASE, settings=dataclasses.replace(BASE.settings, startup_health_check_timeout_seconds=900)
        ),
        False,
    ),
    ("data key", dataclasses.replace(BASE, key="b"), False),
]


@pytest.fixture(scope="module")
def endpoint_names(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    # Another package: the build's files with a different model.tar.gz (the endpoint's model data is its asset).
    other = tmp_path_factory.mktemp("other-package")
    for file in Path(ModelSource().artifact_dir).iterdir():
        if file.is_file():
            (other / file.name).write_bytes(file.read_bytes())
    (other / "model.tar.gz").write_bytes((other / "model.tar.gz").read_bytes() + b"another build")
    app = App()
    cases = [("base", BASE, None), *CHANGES]
    return {label: names(inputs, index, app, other) for index, (label, inputs, *_) in enumerate(cases)}


@pytest.mark.parametrize(("change", "replaces_model"), [(label, model) for label, _, model in CHANGES])
def test_each_replacing_change_gives_new_names(endpoint_names, change: str, replaces_model: bool) -> None:
    base_model, base_config = endpoint_names["base"]
    model, config = endpoint_names[change]
    assert config != base_config, f"{change} replaces the endpoint config but keeps its name"
    assert (model != base_model) == replaces_model
    assert len(model) <= 63 and len(config) <= 63  # SageMaker's limit on both names


def test_the_same_inputs_give_the_same_names() -> None:
    app = App()
    assert names(BASE, 0, app) == names(BASE, 1, app)
