"""Account separation (issue 13): the whole app with three environment accounts, a fourth for the pipeline and
production in a second region, synthesized offline once for this module.

- no context lookup is left in any cloud assembly manifest (`missing`), and every nag pack passes (the synth
  raises on any unacknowledged finding);
- every statement a pipeline step's own role holds names the pipeline's account, or is sts:AssumeRole on one of
  the environments' step roles;
- every statement of an environment's step role names that environment's account and region;
- every step that acts in an environment assumes that environment's role, through its AWS profile, in its region;
- CDK's cross-region support stack (CodePipeline's artifact bucket in the second region) is hardened like every
  other bucket and key.

IAM User Guide, "AWS global condition context keys" (aws:PrincipalArn); AWS SDKs and Tools Reference Guide, "Assume
role credential provider" (credential_source = EcsContainer).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from stacks.app_builder import build_stages

PIPELINE, DEV, STAGING, PROD = "111111111111", "444444444444", "222222222222", "333333333333"
HOME, SECOND = "eu-west-1", "eu-central-1"
ENVIRONMENTS = {"staging": (STAGING, HOME), "prod": (PROD, SECOND)}
# Pipeline-account steps: they read only the pipeline, or reach production's model registry through its group's
# resource policy (SageMaker Developer Guide, Model Registry cross-account; ml_constructs/model_registry.py).
PIPELINE_SIDE = {"UnitTests", "SecurityScans", "ApprovalShortcuts", "ModelPackageApproval"}
REGISTRY_ACTIONS = {"sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"}


@dataclass
class Separated:
    outdir: Path
    pipeline: dict[str, Any]
    step_access: dict[str, dict[str, Any]]  # environment -> its StepAccess template


def _context(cdk_context: dict[str, Any]) -> dict[str, Any]:
    context = copy.deepcopy(cdk_context)
    platform = context["ml-platform"]
    for name, account in (("dev", DEV), ("staging", STAGING), ("prod", PROD)):
        platform["environments"][name]["account"] = account
    platform["environments"]["prod"]["region"] = SECOND
    platform["environments"]["prod"]["network"]["availability_zones"] = [f"{SECOND}{z}" for z in "abc"]
    platform["pipeline"]["account"] = PIPELINE
    return context


@pytest.fixture(scope="module")
def separated(cdk_context: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Separated:
    outdir = tmp_path_factory.mktemp("cdk.out.separated")
    app = App(context=_context(cdk_context), outdir=str(outdir))
    # No default account or region: every account comes from the config, as a real multi-account deployment.
    build_stages(app, default_account=None, default_region=None)
    assembly = app.synth()  # raises on any unacknowledged nag finding, in every stage and stack
    [pipeline] = [s.template for s in assembly.stacks if s.stack_name == "mlapi-pipeline"]
    directory = outdir / "assembly-Pipeline-StepAccess"
    manifest = json.loads((directory / "manifest.json").read_text()) if directory.is_dir() else {"artifacts": {}}
    step_access = {
        artifact["displayName"].split("/")[-1]: json.loads(
            (directory / artifact["properties"]["templateFile"]).read_text()
        )
        for artifact in manifest["artifacts"].values()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    return Separated(outdir, pipeline, step_access)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policies_of(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    resources = template["Resources"]
    statements = []
    for resource in resources.values():
        attached = resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        if attached and {"Ref": role_id} in resource["Properties"].get("Roles", []):
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    for arn in resources[role_id]["Properties"].get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and arn.get("Ref") in resources:
            statements += resources[arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _steps(separated: Separated) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, step name, CodeBuild project properties) of every CodeBuild step the pipeline runs."""
    resources = separated.pipeline["Resources"]
    [pipeline] = [r for r in resources.values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    found = []
    for stage in pipeline["Properties"]["Stages"]:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Provider"] == "CodeBuild":
                project = resources[action["Configuration"]["ProjectName"]["Ref"]]["Properties"]
                found.append((stage["Name"], action["Name"].split(".")[-1], project))
    return found


def _accounts_named(value: Any) -> set[str]:
    """The 12-digit account ids a (resolved or Fn::Join) resource names."""
    return set(re.findall(r"(?<!\d)\d{12}(?!\d)", json.dumps(value)))


def _bootstrap_or_self(resource: Any) -> Any:
    """'bootstrap' for a CDK bootstrap role (of any configured account) or the self-mutation's own-account
    pattern; the resource otherwise."""
    text = resource["Fn::Sub"].replace("${AWS::Partition}", "aws") if isinstance(resource, dict) else resource
    if isinstance(text, str) and re.fullmatch(
        r"arn:aws:iam::\d{12}:role/cdk-hnb659fds-[a-z-]+-\d{12}-[a-z0-9-]+", text
    ):
        return "bootstrap"
    return "bootstrap" if text == f"arn:*:iam::{PIPELINE}:role/*" else text


def _env_roles(separated: Separated) -> dict[str, str]:
    """Environment role ARN -> its environment."""
    found = {}
    for environment, template in separated.step_access.items():
        account = ENVIRONMENTS[environment][0]
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::IAM::Role":
                found[f"arn:aws:iam::{account}:role/{resource['Properties']['RoleName']}"] = environment
    return found


def test_no_context_lookup_is_left_in_any_manifest(separated: Separated) -> None:
    manifests = list(separated.outdir.rglob("manifest.json"))
    assert len(manifests) >= 7  # the app, dev/staging/prod, the pipeline's two stages and StepAccess
    for path in manifests:
        assert "missing" not in json.loads(path.read_text()), path


def test_every_nag_pack_is_clean_with_a_second_region(separated: Separated) -> None:
    report = separated.outdir / "validation-report.json"
    if report.exists():
        plugins = json.loads(report.read_text())["pluginReports"]
        assert [v["ruleName"] for p in plugins for v in p.get("violations", [])] == []
    support = [p for p in separated.outdir.glob("cross-region-stack-*.template.json")]
    assert [p.name for p in support] == [f"cross-region-stack-{PIPELINE}_{SECOND}.template.json"]


def test_the_cross_region_artifact_bucket_is_versioned_logged_and_its_key_rotated(separated: Separated) -> None:
    [path] = separated.outdir.glob("cross-region-stack-*.template.json")
    resources = json.loads(path.read_text())["Resources"]
    buckets = {k: r for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    [replication] = [r for k, r in buckets.items() if k.startswith("CrossRegionCodePipelineReplicationBucket")]
    assert replication["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LoggingConfiguration" in replication["Properties"]
    [key] = [r for r in resources.values() if r["Type"] == "AWS::KMS::Key"]
    assert key["Properties"]["EnableKeyRotation"] is True


def test_pipeline_step_roles_hold_only_the_pipeline_account_or_assume_an_environment_role(
    separated: Separated,
) -> None:
    env_roles = _env_roles(separated)
    problems = []
    for stage, step, project in _steps(separated):
        role_id = project["ServiceRole"]["Fn::GetAtt"][0]
        for statement in _policies_of(separated.pipeline, role_id):
            actions = set(_as_list(statement["Action"]))
            resources = _as_list(statement.get("Resource", []))
            if actions == {"sts:AssumeRole"}:
                # CDK's own: asset publishing and self-mutation assume the bootstrap roles (`cdk bootstrap --trust`).
                targets = [_bootstrap_or_self(r) for r in resources]
                if not all(t in env_roles or t == "bootstrap" for t in targets):
                    problems.append(f"{stage}/{step} assumes {resources}")
                continue
            others = _accounts_named(resources) - {PIPELINE}
            registry = step in PIPELINE_SIDE and actions <= REGISTRY_ACTIONS
            if others and not registry:
                problems.append(f"{stage}/{step}: {sorted(actions)} on {resources}")
    assert not problems, "\n".join(problems)


def test_every_environment_role_statement_names_that_environments_account_and_region(separated: Separated) -> None:
    assert set(separated.step_access) == set(ENVIRONMENTS)
    for environment, template in separated.step_access.items():
        account, region = ENVIRONMENTS[environment]
        roles = [k for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
        assert roles
        for role_id in roles:
            statements = _policies_of(template, role_id)
            assert statements, role_id
            for statement in statements:
                for resource in _as_list(statement["Resource"]):
                    assert isinstance(resource, str), (environment, resource)  # literal: every account configured
                    service, arn_region, arn_account = resource.split(":")[2:5] if resource != "*" else ("*", "", "")
                    if resource == "*":
                        continue  # DescribeScalableTargets: no resource-level permissions
                    if service == "s3":
                        assert f"-{account}-{region}" in resource, (environment, resource)
                    elif service == "apigateway":  # API Gateway ARNs name the region, not the account
                        assert arn_region == region and arn_account == "", (environment, resource)
                    elif service == "iam":  # a global service: the account only
                        assert arn_account == account, (environment, resource)
                    else:
                        assert (arn_region, arn_account) == (region, account), (environment, resource)
            [trust] = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert trust["Principal"] == {"AWS": f"arn:aws:iam::{PIPELINE}:root"}
            assert trust["Condition"]["ArnEquals"]["aws:PrincipalArn"].startswith(f"arn:aws:iam::{PIPELINE}:role/")


def test_every_step_that_acts_in_an_environment_assumes_its_role_in_its_region(separated: Separated) -> None:
    env_roles = _env_roles(separated)
    checked = 0
    for stage, step, project in _steps(separated):
        if stage not in ("Build", "Checks", "staging", "prod") or step in PIPELINE_SIDE:
            continue
        # Synth (retraining and lineage builds) and Checks read production: the live model.
        environment = "staging" if stage == "staging" else "prod"
        variables = {v["Name"]: v["Value"] for v in project["Environment"].get("EnvironmentVariables", [])}
        role = variables.get("STEP_ACCESS_ROLE_ARN")
        assert env_roles.get(role) == environment, (stage, step, role)
        commands = json.loads(project["Source"]["BuildSpec"])["phases"]["build"]["commands"]
        [config] = [c for c in commands if c.startswith("printf")]
        _, region = ENVIRONMENTS[environment]
        assert "credential_source = EcsContainer" in config and f"region = {region}" in config, (stage, step)
        [export] = [c for c in commands if c.startswith("export AWS_CONFIG_FILE=")]
        if "AWS_PROFILE=" in export:
            assert f"AWS_PROFILE={environment} AWS_REGION={region} AWS_DEFAULT_REGION={region}" in export, (stage, step)
        else:  # the script picks the profile for the environment's clients (RegisterRelease, Synth's retrain)
            assert any(f"--environment-profile {environment} --environment-region {region}" in c for c in commands)
        for command in (c for c in commands if "scripts.smoke_test" in c):
            assert f".execute-api.{region}.amazonaws.com/" in command, (stage, step)
        checked += 1
    assert checked >= 15
