"""Run-order check: every pipeline step runs after the deploy that creates what it reads or writes.

CodePipeline runs a stage's actions by `RunOrder` and the stages one after the other ("CodePipeline pipeline
structure reference": "actions with the same integer run in parallel"), so a step's position is (stage, run
order). The walk below takes each CodeBuild step in that order, reads what it touches from its role's statements
(and, when the role may `sts:AssumeRole` into a role the pipeline deploys, that role's statements too) and from its
script arguments (`--table`, `--bucket`, `--artifacts-bucket`), and asserts that each named resource is, by then:
- created by a CloudFormation deploy action (`CHANGE_SET_EXECUTE`) that ran earlier, or by the pipeline stack itself
  (deployed by hand with `cdk deploy` before the first run, README "Deploy");
- or declared below as pre-existing (README's setup) or as read-if-present by a script that treats its absence as
  "nothing deployed yet" (each with the test that shows the script does so).

Resources are compared as ARNs resolved for the synthesized account and region (tests/infra/cfn_resolve.py).
An ARN with a wildcard left after normalisation (alarms by prefix, endpoint configs by prefix) names no single
resource and is not checked here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn_resolve import Resolver, Stack, UnresolvableError, load_assembly
from tests.infra.conftest import Synthesized

# SageMaker's model package group ARN (Service Authorization Reference, "Actions, resources, and condition keys for
# Amazon SageMaker AI": model-package-group/${ModelPackageGroupName}); the resolver's table lacks the type.
GROUP_ARN = "arn:{p}:sagemaker:{r}:{a}:model-package-group/{name}"

# (step, ARN glob, why it may run before the resource exists, the test that shows the script copes).
READ_IF_PRESENT = [
    *(
        (
            "Synth",
            pattern,
            "reads the live production model's lineage and captured traffic to train on; a first run has none "
            "and builds from the bundled dataset",
            "tests/scripts/test_retraining_run.py",
        )
        for pattern in (
            "arn:*:dynamodb:*:table/*-releases",
            "arn:*:s3:::*-artifacts-*",
            "arn:*:s3:::*-capture-*",
            "arn:*:kms:*:alias/*/data",
        )
    ),
    (
        "Synth",
        "arn:*:iam::*:role/*-steps-synth",
        "reads production through its Synth role, which the first run's StepAccess stage creates after Synth: a push "
        "run that cannot assume it builds the bundled dataset (the model gate, after StepAccess, cannot skip)",
        "tests/infra/test_pipeline_stack.py::test_the_synth_commands_choose_the_build_a_run_can_make",
    ),
    (
        "ModelGate",
        "arn:*:dynamodb:*:table/*-releases",
        "the gate compares with the live release; on a first run there is none and it judges thresholds alone",
        "tests/scripts/test_model_gate.py",
    ),
    (
        "ModelGate",
        "arn:*:s3:::*-artifacts-*",
        "the live release's published baseline and contract, absent before the first production deploy",
        "tests/scripts/test_model_gate.py",
    ),
    (
        "ModelGate",
        "arn:*:kms:*:alias/*/data",
        "decrypts the live release's baseline when there is one",
        "tests/scripts/test_model_gate.py",
    ),
    (
        "AutoscalingBeforeDeploy",
        "arn:*:sagemaker:*:endpoint/*",
        "suspends scaling of the endpoint being updated; before the first deploy there is no endpoint",
        "tests/scripts/test_autoscaling_guard.py",
    ),
]
# Named in a step's policy, created outside this app before the first run (README "Deploy").
PREEXISTING = [
    ("arn:*:iam::*:role/cdk-*", "CDK bootstrap roles (`cdk bootstrap --trust`)"),
    ("arn:*:codeconnections:*:connection/*", "the source connection, authorised in the console"),
    ("arn:*:codestar-connections:*:connection/*", "the source connection, authorised in the console"),
    # "CodeBuild creates the log group and log stream for you" on a build's first run (CodeBuild User Guide,
    # "LogsConfig"); report groups the same (CDK Pipelines' generated grant).
    ("arn:*:logs:*:log-group:/aws/codebuild/*", "created by CodeBuild on the project's first build"),
    ("arn:*:codebuild:*:report-group/*", "created by CodeBuild on the first report"),
    # "Service-linked roles" (IAM User Guide): the service creates its own role on first use (or the step does, with
    # iam:CreateServiceLinkedRole); the template cannot own it.
    ("arn:*:iam::*:role/aws-service-role/*", "service-linked roles, created by their service"),
]
# API Gateway's collection paths (`/restapis`, `/apikeys`) name a listing, not a resource anything creates.
NOT_A_RESOURCE = re.compile(r"^arn:[^:]+:apigateway:[^:]*::/(restapis|apikeys)$")


@dataclass(frozen=True)
class Action:
    """One pipeline action at its place in the run."""

    stage: int
    run_order: int
    stage_name: str
    name: str
    configuration: dict[str, Any]
    provider: str

    @property
    def position(self) -> tuple[int, int]:
        return (self.stage, self.run_order)

    @property
    def step(self) -> str:
        """The step's own name: CDK Pipelines names a stack's steps `<stack>.<step>`."""
        return self.name.split(".")[-1]

    @property
    def label(self) -> str:
        return f"{self.stage_name}/{self.name}"


@dataclass
class Walk:
    """The pipeline's actions, the stacks it deploys and what each creates."""

    actions: list[Action]
    pipeline: Stack
    created: dict[str, tuple[int, int] | None]  # ARN -> position of the deploy creating it (None: pipeline stack)
    roles: dict[str, list[dict[str, Any]]]  # deployed role ARN -> its statements, resolved
    stack_by_template: dict[str, Stack]


def pipeline_actions(template: dict[str, Any]) -> list[Action]:
    [pipeline] = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return [
        Action(
            stage=index,
            run_order=action.get("RunOrder", 1),
            stage_name=stage["Name"],
            name=action["Name"],
            configuration=action.get("Configuration", {}),
            provider=action["ActionTypeId"]["Provider"],
        )
        for index, stage in enumerate(pipeline["Properties"]["Stages"])
        for action in stage["Actions"]
    ]


def normalise(arn: str) -> str:
    """The resource an ARN in a policy stands for: a bucket for its objects, a table for its indexes."""
    arn = re.sub(r"^(arn:[^:]+:s3:::[^/]+)/.*$", r"\1", arn)
    arn = re.sub(r"^(arn:[^:]+:dynamodb:[^:]+:[^:]+:table/[^/]+)/.*$", r"\1", arn)
    return arn


def statement_resources(statement: dict[str, Any], resolver: Resolver) -> list[str]:
    """The resources a statement names, resolved; a key known by alias only becomes the alias."""
    if statement.get("Effect", "Allow") != "Allow":
        return []
    resources = statement.get("Resource", [])
    resolved = [normalise(resolver.resolve_str(r)) for r in (resources if isinstance(resources, list) else [resources])]
    aliases: list[str] = []
    for condition in statement.get("Condition", {}).values():
        value = condition.get("kms:ResourceAliases")
        if value is not None:
            aliases += value if isinstance(value, list) else [value]
    if aliases:
        keys = [r for r in resolved if re.fullmatch(r"arn:[^:]+:kms:[^:]+:[^:]+:key/\*", r)]
        prefixes = {r.rsplit(":", 1)[0] for r in keys}
        resolved = [r for r in resolved if r not in keys]
        resolved += [f"{prefix}:{alias}" for prefix in prefixes for alias in aliases]
    return resolved


def _created_arns(stack: Stack) -> list[str]:
    arns = []
    for logical_id, resource in stack.template.get("Resources", {}).items():
        try:
            if resource["Type"] == "AWS::SageMaker::ModelPackageGroup":
                env = stack.resolver.environment
                name = stack.resolver.resolve_str(resource["Properties"]["ModelPackageGroupName"])
                arns.append(GROUP_ARN.format(p=env.partition, r=env.region, a=env.account, name=name))
            else:
                arns.append(normalise(stack.resolver.arn(logical_id)))
        except UnresolvableError:
            continue  # a type without an ARN format: nothing a policy names by ARN
    return arns


def _role_statements(stack: Stack, role_id: str) -> list[dict[str, Any]]:
    """Inline, attached and default policies of a role, in its own stack."""
    resources = stack.template["Resources"]
    inline = resources[role_id]["Properties"].get("Policies", [])
    statements = [s for policy in inline for s in policy["PolicyDocument"]["Statement"]]
    for resource in resources.values():
        attached = resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        if attached and {"Ref": role_id} in resource["Properties"].get("Roles", []):
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    for arn in resources[role_id]["Properties"].get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn and arn["Ref"] in resources:
            statements += resources[arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def build_walk(outdir: Path, pipeline_template: dict[str, Any]) -> Walk:
    stacks = load_assembly(outdir)
    by_template = {str(s.path.relative_to(outdir)): s for s in stacks}
    [pipeline] = [s for s in stacks if s.template is pipeline_template or s.template == pipeline_template]
    actions = sorted(pipeline_actions(pipeline_template), key=lambda a: a.position)
    created: dict[str, tuple[int, int] | None] = {arn: None for arn in _created_arns(pipeline)}
    roles: dict[str, list[dict[str, Any]]] = {}
    for action in actions:
        if action.provider != "CloudFormation" or action.configuration.get("ActionMode") != "CHANGE_SET_EXECUTE":
            continue
        stack = _deployed_stack(action, actions, by_template)
        for arn in _created_arns(stack):
            created.setdefault(arn, action.position)
        for logical_id, resource in stack.template["Resources"].items():
            if resource["Type"] == "AWS::IAM::Role":
                statements = _role_statements(stack, logical_id)
                roles[stack.resolver.arn(logical_id)] = [_resolved(s, stack.resolver) for s in statements]
    return Walk(actions, pipeline, created, roles, by_template)


def _resolved(statement: dict[str, Any], resolver: Resolver) -> dict[str, Any]:
    resolved = dict(statement)
    resources = statement.get("Resource", [])
    resources = resources if isinstance(resources, list) else [resources]
    resolved["Resource"] = [resolver.resolve_str(r) for r in resources]
    return resolved


def _deployed_stack(execute: Action, actions: list[Action], by_template: dict[str, Stack]) -> Stack:
    """The stack a CHANGE_SET_EXECUTE deploys: the template its stage's CHANGE_SET_REPLACE of that stack names."""
    [prepare] = [
        a
        for a in actions
        if a.stage == execute.stage
        and a.configuration.get("ActionMode") == "CHANGE_SET_REPLACE"
        and a.configuration.get("StackName") == execute.configuration.get("StackName")
    ]
    artifact_path = prepare.configuration["TemplatePath"].split("::", 1)[1]
    return by_template[artifact_path]


def step_commands(walk: Walk, action: Action) -> list[str]:
    project_id = action.configuration["ProjectName"]["Ref"]
    project = walk.pipeline.template["Resources"][project_id]["Properties"]
    buildspec = json.loads(walk.pipeline.resolver.resolve_str(project["Source"]["BuildSpec"]))
    return [c for phase in buildspec.get("phases", {}).values() for c in phase.get("commands", [])]


def step_needs(walk: Walk, action: Action) -> dict[str, str]:
    """ARN -> how the step reaches it (its own role, or the deployed role it assumes)."""
    resources = walk.pipeline.template["Resources"]
    project = resources[action.configuration["ProjectName"]["Ref"]]["Properties"]
    role_id = project["ServiceRole"]["Fn::GetAtt"][0]
    needs: dict[str, str] = {}
    for statement in _role_statements(walk.pipeline, role_id):
        for arn in statement_resources(statement, walk.pipeline.resolver):
            needs.setdefault(arn, "its role")
            actions = statement.get("Action", [])
            if "sts:AssumeRole" in (actions if isinstance(actions, list) else [actions]) and arn in walk.roles:
                for assumed in walk.roles[arn]:
                    for target in statement_resources(assumed, Resolver({"Resources": {}})):
                        needs.setdefault(target, f"assumed role {arn.rsplit('/', 1)[-1]}")
    for arn in _argument_resources(step_commands(walk, action), walk.pipeline.resolver):
        needs.setdefault(arn, "its script arguments")
    return needs


def _argument_resources(commands: list[str], resolver: Resolver) -> list[str]:
    env = resolver.environment
    found = []
    for command in commands:
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        for flag, value in itertools.pairwise(words):
            if flag in ("--bucket", "--artifacts-bucket") and not value.startswith("$"):
                found.append(f"arn:{env.partition}:s3:::{value}")
            elif flag == "--table" and not value.startswith("$"):
                found.append(f"arn:{env.partition}:dynamodb:{env.region}:{env.account}:table/{value}")
    return found


def _owner(arn: str, created: dict[str, Any]) -> str:
    """The created resource `arn` is part of (a pipeline's stage or action is part of the pipeline)."""
    parents = [c for c in created if arn.startswith(c + "/")]
    return max(parents, key=len) if parents else arn


def violations(walk: Walk) -> list[str]:
    found = []
    for action in walk.actions:
        if action.provider != "CodeBuild" or "ProjectName" not in action.configuration:
            continue
        for arn, via in sorted(step_needs(walk, action).items()):
            if "*" in arn or NOT_A_RESOURCE.match(arn):
                continue
            if any(fnmatch.fnmatchcase(arn, pattern) for pattern, _ in PREEXISTING):
                continue
            tolerated = any(
                step == action.step and fnmatch.fnmatchcase(arn, pattern) for step, pattern, _, _ in READ_IF_PRESENT
            )
            arn = _owner(arn, walk.created)
            if arn not in walk.created:
                if not tolerated:
                    found.append(f"{action.label} needs {arn} (through {via}), which no stack of the pipeline creates")
                continue
            created_at = walk.created[arn]
            if created_at is not None and created_at >= action.position and not tolerated:
                found.append(
                    f"{action.label} (stage {action.stage}, run order {action.run_order}) needs {arn} "
                    f"(through {via}) before the deploy that creates it (stage {created_at[0]}, run order "
                    f"{created_at[1]})"
                )
    return found


@pytest.fixture(scope="module")
def walk(synthesized: Synthesized) -> Walk:
    return build_walk(synthesized.outdir, synthesized.templates[("pipeline", "pipeline")])


def test_every_step_runs_after_what_it_needs_exists(walk: Walk) -> None:
    found = violations(walk)
    assert not found, "\n".join(found)


def test_the_walk_sees_the_steps_and_deploys(walk: Walk) -> None:
    """Guards the check itself: it reads every environment step and every deploy."""
    names = {a.step for a in walk.actions}
    assert {"ModelGate", "RegisterRelease", "PublishDriftBaseline", "SmokeAndLoadTests"} <= names
    deployed = {a.configuration.get("StackName") for a in walk.actions if a.provider == "CloudFormation"}
    assert {"mlapi-staging-data", "mlapi-prod-data", "mlapi-prod-inference"} <= deployed
    assert any(arn.endswith(":table/mlapi-prod-releases") for arn in walk.created)
    register = next(a for a in walk.actions if a.step == "RegisterRelease")
    assert any(arn.endswith(":table/mlapi-prod-releases") for arn in step_needs(walk, register))
    gate = next(a for a in walk.actions if a.step == "ModelGate")
    arguments = _argument_resources(step_commands(walk, gate), walk.pipeline.resolver)
    assert any(arn.endswith(":table/mlapi-prod-releases") for arn in arguments), arguments


def test_a_step_moved_before_its_deploy_is_caught(walk: Walk) -> None:
    """The check fails when a step that writes a table runs before the deploy that creates the table."""
    register = next(a for a in walk.actions if a.step == "RegisterRelease")
    first = Action(0, 0, "Source", register.name, register.configuration, register.provider)
    moved = dataclasses.replace(walk, actions=[first if a is register else a for a in walk.actions])
    assert any("RegisterRelease" in v and "mlapi-prod-releases" in v for v in violations(moved))
