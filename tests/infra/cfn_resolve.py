"""Resolve CloudFormation intrinsics in synthesized templates to representative concrete values.

Linters that only read strings (parliament, ARN checks, policy simulators) cannot evaluate `Ref`, `Fn::GetAtt`,
`Fn::Join`, `Fn::Sub` or `Fn::ImportValue`. `Resolver` turns them into what CloudFormation would produce for a
representative account, region and partition: a `Ref` or `Fn::GetAtt` gives the value documented for the resource
type ("Return values" in the CloudFormation resource reference: e.g. `Ref` of an `AWS::S3::Bucket` is its name, of
an `AWS::SQS::Queue` its URL, of an `AWS::SNS::Topic` its ARN), built from the resource's own name property when it
has one and from a generated name when it has not. `load_assembly` reads every stack of a cloud assembly, nested
stage assemblies included, and wires `Fn::ImportValue` to the exporting stack of the same assembly.

Anything the tables below do not know raises `UnresolvableError`: a new resource type or attribute must be added
here rather than linted as a made-up string.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PARTITION = "aws"


class UnresolvableError(ValueError):
    """An intrinsic this module cannot give a representative value for."""


@dataclass(frozen=True)
class Environment:
    """The pseudo parameters a template is resolved in."""

    account: str = ACCOUNT
    region: str = REGION
    partition: str = PARTITION
    url_suffix: str = "amazonaws.com"
    stack_name: str = "stack"

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/"
                f"{_uuid(self.stack_name)}"
            ),
        }
        if name not in values:
            raise UnresolvableError(f"pseudo parameter {name}")
        return values[name]


class _NoValue:
    """`Ref AWS::NoValue`: the property or list item is removed."""


NO_VALUE = _NoValue()

# The property that holds a resource's physical name, when the template may set it.
NAME_PROPERTY = {
    "AWS::CloudTrail::Trail": "TrailName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CodeBuild::Project": "Name",
    "AWS::CodePipeline::Pipeline": "Name",
    "AWS::CodeStarConnections::Connection": "ConnectionName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::ECS::TaskDefinition": "Family",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::Role": "RoleName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SageMaker::Endpoint": "EndpointName",
    "AWS::SageMaker::EndpointConfig": "EndpointConfigName",
    "AWS::SageMaker::Model": "ModelName",
    "AWS::SageMaker::MonitoringSchedule": "MonitoringScheduleName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::SSM::Parameter": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::ApiGateway::Stage": "StageName",
}

# ARN formats ("Amazon Resource Names (ARNs)" / each service's resource types in the Service Authorization
# Reference). {p} partition, {r} region, {a} account, {name} physical name, {id} physical id, {path} IAM path.
ARN_FORMAT = {
    "AWS::CloudTrail::Trail": "arn:{p}:cloudtrail:{r}:{a}:trail/{name}",
    "AWS::CloudWatch::Alarm": "arn:{p}:cloudwatch:{r}:{a}:alarm:{name}",
    "AWS::CodeBuild::Project": "arn:{p}:codebuild:{r}:{a}:project/{name}",
    "AWS::CodePipeline::Pipeline": "arn:{p}:codepipeline:{r}:{a}:{name}",
    "AWS::CodeStarConnections::Connection": "arn:{p}:codeconnections:{r}:{a}:connection/{id}",
    "AWS::DynamoDB::Table": "arn:{p}:dynamodb:{r}:{a}:table/{name}",
    "AWS::ECR::Repository": "arn:{p}:ecr:{r}:{a}:repository/{name}",
    "AWS::ECS::Cluster": "arn:{p}:ecs:{r}:{a}:cluster/{name}",
    "AWS::ECS::TaskDefinition": "arn:{p}:ecs:{r}:{a}:task-definition/{name}:1",
    "AWS::Events::EventBus": "arn:{p}:events:{r}:{a}:event-bus/{name}",
    "AWS::Events::Rule": "arn:{p}:events:{r}:{a}:rule/{name}",
    "AWS::IAM::ManagedPolicy": "arn:{p}:iam::{a}:policy{path}{name}",
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role{path}{name}",
    "AWS::KMS::Key": "arn:{p}:kms:{r}:{a}:key/{id}",
    "AWS::KMS::Alias": "arn:{p}:kms:{r}:{a}:{name}",
    "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{name}",
    # GetAtt Arn of a log group ends in ":*" (AWS::Logs::LogGroup return values).
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{name}:*",
    "AWS::S3::Bucket": "arn:{p}:s3:::{name}",
    "AWS::SNS::Topic": "arn:{p}:sns:{r}:{a}:{name}",
    "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{name}",
    # SageMaker lower-cases names in ARNs.
    "AWS::SageMaker::Endpoint": "arn:{p}:sagemaker:{r}:{a}:endpoint/{lname}",
    "AWS::SageMaker::EndpointConfig": "arn:{p}:sagemaker:{r}:{a}:endpoint-config/{lname}",
    "AWS::SageMaker::Model": "arn:{p}:sagemaker:{r}:{a}:model/{lname}",
    "AWS::SageMaker::MonitoringSchedule": "arn:{p}:sagemaker:{r}:{a}:monitoring-schedule/{lname}",
    "AWS::SecretsManager::Secret": "arn:{p}:secretsmanager:{r}:{a}:secret:{name}-AbCdEf",
    "AWS::SSM::Parameter": "arn:{p}:ssm:{r}:{a}:parameter/{name}",
    "AWS::StepFunctions::StateMachine": "arn:{p}:states:{r}:{a}:stateMachine:{name}",
    "AWS::WAFv2::WebACL": "arn:{p}:wafv2:{r}:{a}:regional/webacl/{name}/{id}",
}

# Types whose Ref is the ARN; whose Ref is a generated id; the rest return their name.
REF_IS_ARN = {
    "AWS::CodeStarConnections::Connection",
    "AWS::IAM::ManagedPolicy",
    "AWS::SNS::Topic",
    "AWS::SageMaker::Endpoint",
    "AWS::SageMaker::EndpointConfig",
    "AWS::SageMaker::Model",
    "AWS::SageMaker::MonitoringSchedule",
    "AWS::SecretsManager::Secret",
    "AWS::StepFunctions::StateMachine",
    "AWS::ECS::TaskDefinition",
}
ID_PREFIX = {
    "AWS::EC2::VPC": "vpc-",
    "AWS::EC2::Subnet": "subnet-",
    "AWS::EC2::SecurityGroup": "sg-",
    "AWS::EC2::RouteTable": "rtb-",
    "AWS::EC2::VPCEndpoint": "vpce-",
    "AWS::EC2::InternetGateway": "igw-",
    "AWS::EC2::NatGateway": "nat-",
    "AWS::ApiGateway::RestApi": "",
    "AWS::ApiGateway::Deployment": "",
    "AWS::ApiGateway::ApiKey": "",
    "AWS::ApiGateway::UsagePlan": "",
    "AWS::ApiGateway::Resource": "",
}


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _uuid(*parts: str) -> str:
    return str(uuid.UUID(_digest(*parts)[:32]))


@dataclass
class Resolver:
    """Resolves the intrinsics of one template; `imports` maps an export name to its (resolved) value."""

    template: Mapping[str, Any]
    environment: Environment = field(default_factory=Environment)
    imports: Callable[[str], Any] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    _resolving: set[str] = field(default_factory=set, repr=False)

    @property
    def resources(self) -> Mapping[str, Any]:
        return self.template.get("Resources", {})

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic replaced; `AWS::NoValue` items and keys dropped."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg)
        items = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not NO_VALUE}

    def resolve_str(self, value: Any) -> str:
        resolved = self.resolve(value)
        if not isinstance(resolved, str):
            raise UnresolvableError(f"expected a string, got {resolved!r} from {value!r}")
        return resolved

    # --- Ref and GetAtt -------------------------------------------------------------------------------------

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            return self.environment.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.template.get("Parameters", {}):
            return self._parameter(name)
        resource = self._resource(name)
        kind = resource["Type"]
        if kind in REF_IS_ARN:
            return self.arn(name)
        if kind == "AWS::SQS::Queue":
            env = self.environment
            return f"https://sqs.{env.region}.{env.url_suffix}/{env.account}/{self.physical_name(name)}"
        if kind == "AWS::KMS::Key":
            return self.physical_id(name)
        if kind in ID_PREFIX:
            return self.physical_id(name)
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        kind = self._resource(logical_id)["Type"]
        env = self.environment
        if attribute in ("Arn", "TopicArn") or (kind == "AWS::IAM::ManagedPolicy" and attribute == "PolicyArn"):
            return self.arn(logical_id)
        name_attributes = {
            "AWS::SNS::Topic": "TopicName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::SageMaker::Endpoint": "EndpointName",
            "AWS::SageMaker::EndpointConfig": "EndpointConfigName",
            "AWS::SageMaker::Model": "ModelName",
            "AWS::CodeStarConnections::Connection": "ConnectionName",
        }
        if name_attributes.get(kind) == attribute:
            return self.physical_name(logical_id)
        special: dict[tuple[str, str], Callable[[], Any]] = {
            ("AWS::SQS::Queue", "QueueUrl"): lambda: self.ref(logical_id),
            ("AWS::KMS::Key", "KeyId"): lambda: self.physical_id(logical_id),
            ("AWS::IAM::Role", "RoleId"): lambda: "AROA" + self.physical_id(logical_id)[:17].upper(),
            ("AWS::S3::Bucket", "DomainName"): lambda: f"{self.physical_name(logical_id)}.s3.{env.url_suffix}",
            ("AWS::S3::Bucket", "RegionalDomainName"): (
                lambda: f"{self.physical_name(logical_id)}.s3.{env.region}.{env.url_suffix}"
            ),
            ("AWS::EC2::VPC", "DefaultSecurityGroup"): lambda: "sg-" + _digest(logical_id, "default")[:17],
            ("AWS::EC2::VPC", "CidrBlock"): lambda: self.resolve(
                self._props(logical_id).get("CidrBlock", "10.0.0.0/16")
            ),
            ("AWS::EC2::VPC", "VpcId"): lambda: self.physical_id(logical_id),
            ("AWS::EC2::SecurityGroup", "GroupId"): lambda: self.physical_id(logical_id),
            ("AWS::EC2::Subnet", "SubnetId"): lambda: self.physical_id(logical_id),
            ("AWS::DynamoDB::Table", "StreamArn"): lambda: f"{self.arn(logical_id)}/stream/2024-01-01T00:00:00.000",
            ("AWS::ApiGateway::RestApi", "RootResourceId"): lambda: _digest(logical_id, "root")[:10],
            ("AWS::ApiGateway::RestApi", "RestApiId"): lambda: self.physical_id(logical_id),
            ("AWS::WAFv2::WebACL", "Id"): lambda: self.physical_id(logical_id),
        }
        if (kind, attribute) not in special:
            raise UnresolvableError(f"Fn::GetAtt {logical_id}.{attribute} of {kind}")
        return special[(kind, attribute)]()

    def arn(self, logical_id: str) -> str:
        kind = self._resource(logical_id)["Type"]
        if kind not in ARN_FORMAT:
            raise UnresolvableError(f"ARN of {logical_id} ({kind})")
        env = self.environment
        props = self._props(logical_id)
        name = self.physical_name(logical_id) if "{name}" in ARN_FORMAT[kind] or "{lname}" in ARN_FORMAT[kind] else ""
        if kind == "AWS::Events::Rule" and props.get("EventBusName") not in (None, "default"):
            name = f"{self.resolve_str(props['EventBusName']).split('/')[-1]}/{name}"
        return ARN_FORMAT[kind].format(
            p=env.partition,
            r=env.region,
            a=env.account,
            name=name,
            lname=name.lower(),
            id=self.physical_id(logical_id),
            path=self.resolve(props.get("Path", "/")),
        )

    def physical_name(self, logical_id: str) -> str:
        """The name property when the template sets one, else a name of the form CloudFormation generates."""
        kind = self._resource(logical_id)["Type"]
        prop = NAME_PROPERTY.get(kind)
        props = self._props(logical_id)
        if prop and prop in props:
            return self._guarded(logical_id, lambda: self.resolve_str(props[prop]))
        # CloudFormation generates "<stack>-<logical id>-<random>" (the "Name type" page); S3 wants lower case.
        generated = f"{self.environment.stack_name}-{logical_id}-{_digest(logical_id)[:12].upper()}"
        if kind == "AWS::S3::Bucket":
            return generated.lower()[:63]
        if kind == "AWS::Logs::LogGroup":
            return f"/aws/generated/{generated}"
        return generated[:64]

    def physical_id(self, logical_id: str) -> str:
        kind = self._resource(logical_id)["Type"]
        if kind == "AWS::KMS::Key" or kind.startswith("AWS::CodeStarConnections::") or kind.startswith("AWS::WAFv2"):
            return _uuid(self.environment.stack_name, logical_id)
        return ID_PREFIX.get(kind, "") + _digest(self.environment.stack_name, logical_id)[:17]

    # --- functions ------------------------------------------------------------------------------------------

    def _function(self, name: str, arg: Any) -> Any:
        handlers: dict[str, Callable[[Any], Any]] = {
            "Fn::GetAtt": self._get_att,
            "Fn::Join": self._join,
            "Fn::Sub": self._sub,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::ImportValue": self._import,
            "Fn::If": self._if,
            "Fn::GetAZs": lambda region: [f"{self.resolve(region) or self.environment.region}{z}" for z in "abc"],
            "Fn::Base64": lambda v: base64.b64encode(self.resolve_str(v).encode()).decode(),
            "Fn::FindInMap": self._find_in_map,
            "Fn::ToJsonString": lambda v: json.dumps(self.resolve(v), separators=(",", ":")),
            "Fn::Length": lambda v: len(self.resolve(v)),
            "Fn::Equals": lambda v: self.resolve(v[0]) == self.resolve(v[1]),
            "Fn::And": lambda v: all(self.resolve(c) for c in v),
            "Fn::Or": lambda v: any(self.resolve(c) for c in v),
            "Fn::Not": lambda v: not self.resolve(v[0]),
            "Condition": self._condition,
        }
        if name not in handlers:
            raise UnresolvableError(f"{name} {arg!r}")
        return handlers[name](arg)

    def _get_att(self, arg: Any) -> Any:
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return self.get_att(logical_id, self.resolve_str(attribute))

    def _join(self, arg: list[Any]) -> str:
        separator, parts = arg
        values = self.resolve(parts)
        if not all(isinstance(v, str) for v in values):
            raise UnresolvableError(f"Fn::Join of non-strings {values!r}")
        return self.resolve_str(separator).join(values)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        values = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in values:
                return str(values[token])
            if "." in token and not token.startswith("AWS::"):
                return str(self.get_att(*token.split(".", 1)))
            return str(self.ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _select(self, arg: list[Any]) -> Any:
        index, values = arg
        return self.resolve(values)[int(self.resolve(index))]

    def _split(self, arg: list[Any]) -> list[str]:
        separator, text = arg
        return self.resolve_str(text).split(self.resolve_str(separator))

    def _import(self, arg: Any) -> Any:
        name = self.resolve_str(arg)
        if self.imports is None:
            raise UnresolvableError(f"Fn::ImportValue {name} (no exports given)")
        return self.imports(name)

    def _if(self, arg: list[Any]) -> Any:
        condition, when_true, when_false = arg
        return self.resolve(when_true if self._condition(condition) else when_false)

    def _condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise UnresolvableError(f"condition {name}")
        return bool(self._guarded(f"Condition:{name}", lambda: self.resolve(conditions[name])))

    def _find_in_map(self, arg: list[Any]) -> Any:
        mapping, top, second = (self.resolve(a) for a in arg[:3])
        return self.template["Mappings"][mapping][top][second]

    # --- helpers --------------------------------------------------------------------------------------------

    def _parameter(self, name: str) -> Any:
        spec = self.template["Parameters"][name]
        if "Default" not in spec or str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
            raise UnresolvableError(f"parameter {name} ({spec.get('Type')}): pass a value in `parameters`")
        return spec["Default"]

    def _resource(self, logical_id: str) -> Mapping[str, Any]:
        if logical_id not in self.resources:
            raise UnresolvableError(f"no resource or parameter {logical_id}")
        return self.resources[logical_id]

    def _props(self, logical_id: str) -> Mapping[str, Any]:
        return self._resource(logical_id).get("Properties", {})

    def _guarded(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self._resolving:
            raise UnresolvableError(f"circular reference through {key}")
        self._resolving.add(key)
        try:
            return compute()
        finally:
            self._resolving.discard(key)


@dataclass
class Stack:
    """One stack of a cloud assembly: its template file, name and a resolver wired to its assembly's exports."""

    path: Path
    stack_name: str
    template: dict[str, Any]
    resolver: Resolver


def load_assembly(outdir: Path, *, account: str = ACCOUNT, region: str = REGION) -> list[Stack]:
    """Every stack of the cloud assembly at `outdir` and of the stage assemblies nested in it."""
    stacks: list[Stack] = []
    _load(Path(outdir), stacks, account, region)
    return stacks


def _load(directory: Path, stacks: list[Stack], account: str, region: str) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    here: list[Stack] = []
    for artifact in manifest.get("artifacts", {}).values():
        props = artifact.get("properties", {})
        if artifact["type"] == "cdk:cloud-assembly":
            _load(directory / props["directoryName"], stacks, account, region)
        elif artifact["type"] == "aws:cloudformation:stack":
            env = _environment(artifact.get("environment", ""), account, region)
            path = directory / props["templateFile"]
            template = json.loads(path.read_text())
            name = props.get("stackName") or path.name.removesuffix(".template.json")
            resolver = Resolver(template, environment=Environment(account=env[0], region=env[1], stack_name=name))
            here.append(Stack(path=path, stack_name=name, template=template, resolver=resolver))
    exports = _exports(here)
    for stack in here:
        stack.resolver.imports = exports
    stacks.extend(here)


def _environment(spec: str, account: str, region: str) -> tuple[str, str]:
    # "aws://123456789012/eu-west-1"; CDK writes "unknown-account" / "unknown-region" for agnostic stacks.
    match = re.fullmatch(r"aws://([^/]+)/([^/]+)", spec)
    if not match:
        return account, region
    found_account, found_region = match.groups()
    return (
        found_account if found_account.isdigit() else account,
        found_region if not found_region.startswith("unknown") else region,
    )


def _exports(stacks: list[Stack]) -> Callable[[str], Any]:
    """`Fn::ImportValue` for the stacks of one assembly: the exporting output's value, resolved in its stack."""
    table: dict[str, tuple[Stack, Any]] = {}
    for stack in stacks:
        for output in stack.template.get("Outputs", {}).values():
            if "Export" in output:
                table[stack.resolver.resolve_str(output["Export"]["Name"])] = (stack, output["Value"])

    def lookup(name: str) -> Any:
        if name not in table:
            raise UnresolvableError(f"Fn::ImportValue {name}: no stack of the assembly exports it")
        stack, value = table[name]
        return stack.resolver.resolve(value)

    return lookup
