"""How pipeline steps reach an environment: narrowly scoped roles in its account and region — one per step, holding
exactly that step's statements — that only the step's named role in the pipeline may assume, used through an AWS
config profile.

IAM User Guide, "AWS global condition context keys" — aws:PrincipalArn: "the ARN of the principal that made the
request ... for an IAM role, the role ARN" (not the session); a trust policy that names the pipeline account as
principal and the step role's ARN in an `ArnEquals aws:PrincipalArn` condition lets exactly that role assume it, and
does not need them to exist when the policy is saved (a role ARN in `Principal` does: IAM stores its unique id).

AWS SDKs and Tools Reference Guide, "Assume role credential provider": `credential_source = EcsContainer` with
`role_arn` makes the SDK (and the AWS CLI, "Use an IAM role in the AWS CLI") get the source credentials from the
container credential provider — which CodeBuild supplies — and call AssumeRole itself, refreshing as needed.
`AWS_CONFIG_FILE` and `AWS_PROFILE`, exported in the build's shell, select that profile for both `aws` and boto3 in
the step's scripts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import Stack, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from constructs import Construct

# Where a step writes its profile; absolute, so a command that changes directory still finds it.
CONFIG_FILE = "/tmp/pipeline-steps/aws-config"
ROLE_NAME_LIMIT = 64


def _limited(name: str) -> str:
    """`name`, or (past IAM's 64 characters) its start and a hash of the whole."""
    if len(name) <= ROLE_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: ROLE_NAME_LIMIT - 9]}-{digest}"


def _slug(step_id: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", step_id).lower()


def env_role_name(env_prefix: str, step_id: str) -> str:
    """A step's role in the environment: `<env prefix>-steps-<step>`."""
    return _limited(f"{env_prefix}-steps-{_slug(step_id)}")


def step_role_name(pipeline_prefix: str, scope: str, step_id: str) -> str:
    """A step's CodeBuild role name, known before it exists (the environment role's trust names it)."""
    return _limited(f"{pipeline_prefix}-{scope}-{_slug(step_id)}")


@dataclass
class StepGrant:
    """What one step does in an environment: its pipeline-side role, its role there, and the statements that role
    holds (with the prefix-scoped resources among them, one IAM5 acknowledgement each)."""

    step_id: str
    step_role: str
    role_name: str
    statements: list[iam.PolicyStatement]
    wildcards: list[str]


@dataclass
class EnvironmentAccess:
    """One environment as the pipeline's steps see it: where it is, and one role per step that reaches it, each
    holding exactly that step's statements (built with `arn`, in the environment's own account and region) and
    assumable only by that step's role in the pipeline account."""

    name: str
    prefix: str
    account: str
    region: str
    partition: str
    pipeline_account: str
    grants: list[StepGrant] = field(default_factory=list)

    @property
    def profile(self) -> str:
        return self.name

    def arn(self, service: str, resource: str) -> str:
        """An ARN in this environment's account and region (not str.format: an unresolved token holds braces)."""
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    def role_arn(self, role_name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{role_name}"

    def grant(
        self, step_id: str, step_role: str, statements: list[iam.PolicyStatement], wildcards: Sequence[str]
    ) -> StepGrant:
        if not statements:
            raise ValueError(f"{step_id} reaches {self.name} but needs nothing there")
        grant = StepGrant(
            step_id, step_role, env_role_name(self.prefix, step_id), statements, list(dict.fromkeys(wildcards))
        )
        if any(g.role_name == grant.role_name for g in self.grants):
            raise ValueError(f"{self.name}: two steps named {step_id}")
        self.grants.append(grant)
        return grant

    def profile_commands(self, *, use_profile: bool = True) -> list[str]:
        """Write the profile and select it in the build's shell (buildspec 0.2 runs a phase's commands in one shell),
        not in the project's environment: CodeBuild's own artifact upload keeps the step role. With `use_profile`
        every client of the step uses the profile in the environment's region (AWS_REGION/AWS_DEFAULT_REGION,
        which CodeBuild sets to the pipeline's, outrank a profile's region); without, the script picks the profile
        per client (its own flags) and the step keeps the pipeline's region."""
        lines = [
            f"[profile {self.profile}]",
            "role_arn = $STEP_ACCESS_ROLE_ARN",
            "credential_source = EcsContainer",
            "role_session_name = $STEP_ACCESS_SESSION",
            f"region = {self.region}",
        ]
        body = "\\n".join(lines)
        commands = [f"mkdir -p $(dirname {CONFIG_FILE})", f'printf "{body}\\n" > {CONFIG_FILE}']
        if use_profile:
            commands.append(
                f"export AWS_CONFIG_FILE={CONFIG_FILE} AWS_PROFILE={self.profile} "
                f"AWS_REGION={self.region} AWS_DEFAULT_REGION={self.region}"
            )
        else:
            commands.append(f"export AWS_CONFIG_FILE={CONFIG_FILE}")
        return commands

    @staticmethod
    def step_env() -> dict[str, str]:
        """The session name the profile's AssumeRole uses: this run's execution id (CloudTrail names the run)."""
        return {"STEP_ACCESS_SESSION": "pipeline-#{codepipeline.PipelineExecutionId}"}


class StepRoles(Construct):
    """The pipeline's CodeBuild step roles that reach an environment: named (the environment role's trust
    condition names them), holding only sts:AssumeRole on their role there (CodeBuild adds its own logs, reports
    and artifact grants when the project uses the role)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.roles: dict[str, iam.Role] = {}

    def role(self, name: str, access: EnvironmentAccess, target_arn: str) -> iam.Role:
        if name in self.roles:
            raise ValueError(f"step role {name!r} is defined twice")
        role = iam.Role(
            self,
            name,
            role_name=name,
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"Pipeline step reaching {access.name}",
        )
        role.add_to_policy(iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[target_arn]))
        self.roles[name] = role
        return role


class EnvironmentStepRoles(Construct):
    """One role per step in the environment (`roles`, by step id): assumable only by that step's named role in the
    pipeline account, holding the step's statements in a customer managed policy (`policies`)."""

    def __init__(self, scope: Construct, construct_id: str, *, access: EnvironmentAccess) -> None:
        super().__init__(scope, construct_id)
        if not access.grants:
            raise ValueError(f"no pipeline step reaches {access.name}")
        stack = Stack.of(self)
        self.roles: dict[str, iam.Role] = {}
        self.policies: dict[str, iam.ManagedPolicy] = {}
        for grant in access.grants:
            trusted = f"arn:{stack.partition}:iam::{access.pipeline_account}:role/{grant.step_role}"
            role = iam.Role(
                self,
                grant.step_id,
                role_name=grant.role_name,
                assumed_by=iam.AccountPrincipal(access.pipeline_account).with_conditions(
                    {"ArnEquals": {"aws:PrincipalArn": trusted}}
                ),
                description=f"What the delivery pipeline's {grant.step_id} step does in {access.name}",
            )
            policy = iam.ManagedPolicy(self, f"{grant.step_id}Policy", statements=grant.statements)
            role.add_managed_policy(policy)
            self.roles[grant.step_id], self.policies[grant.step_id] = role, policy


def environment_step(
    step_id: str,
    *,
    access: EnvironmentAccess,
    roles: StepRoles,
    pipeline_prefix: str,
    input: pipelines.IFileSetProducer,
    commands: Sequence[str],
    statements: list[iam.PolicyStatement],
    wildcards: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    additional_inputs: Mapping[str, pipelines.IFileSetProducer] | None = None,
    primary_output_directory: str | None = None,
    partial_build_spec: codebuild.BuildSpec | None = None,
    pipeline_statements: Sequence[iam.PolicyStatement] = (),
    use_profile: bool = True,
    environment_variables: Mapping[str, codebuild.BuildEnvironmentVariable] | None = None,
) -> pipelines.CodeBuildStep:
    """A step that acts in `access`'s environment: `statements` go to the environment's role, the step's own
    named role may only assume it (plus `pipeline_statements`, on the pipeline account's own resources, for a
    step whose script also reads the pipeline). With `use_profile` every client of the step uses the profile;
    without, the script picks it per client (its own flags) and the step keeps the pipeline's region."""
    name = step_role_name(pipeline_prefix, access.name, step_id)
    grant = access.grant(step_id, name, statements, wildcards)
    target = access.role_arn(grant.role_name)
    role = roles.role(name, access, target)
    for statement in pipeline_statements:
        role.add_to_policy(statement)
    return pipelines.CodeBuildStep(
        step_id,
        input=input,
        additional_inputs=dict(additional_inputs) if additional_inputs else None,
        commands=[*access.profile_commands(use_profile=use_profile), *commands],
        env={**access.step_env(), **(env or {})},
        primary_output_directory=primary_output_directory,
        partial_build_spec=partial_build_spec,
        role=role,
        # The role's ARN may hold the account token: the project's environment resolves it, a command would not.
        build_environment=codebuild.BuildEnvironment(
            environment_variables={
                **(environment_variables or {}),
                "STEP_ACCESS_ROLE_ARN": codebuild.BuildEnvironmentVariable(value=target),
            }
        ),
    )
