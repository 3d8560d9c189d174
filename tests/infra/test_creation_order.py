"""Resources that check their role's permissions when they are created wait for that role's policies.

CloudFormation creates a role and a policy attached to it as separate resources, possibly in parallel with
whatever uses the role. Some services check the role at creation and fail if the policy is not there yet:
- SageMaker CreateModel checks that the execution role can read the model data and pull the image
  ("Could not access model data", aws/aws-cdk#10064).
- Lambda checks that the execution role may manage ENIs for a function in a VPC and send to its dead-letter
  queue (Lambda Developer Guide, "Giving Lambda functions access to resources in an Amazon VPC" — execution
  role permissions; "Capturing records of Lambda asynchronous invocations" — DLQ permissions).
- CloudTrail CreateTrail checks the CloudWatch Logs role ("InvalidCloudWatchLogsRoleArnException: Access
  denied. Verify in IAM that the role has adequate permissions").
- API Gateway's account setting checks its CloudWatch role ("The role ARN does not have required permissions").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.app_model import Ref, StageModel, load_stages

Resource = dict[str, Any]


def checked_roles(resource: Resource) -> list[Any]:
    """The role references `resource`'s service checks at creation."""
    props = resource.get("Properties", {})
    kind = resource["Type"]
    if kind == "AWS::SageMaker::Model":
        return [props["ExecutionRoleArn"]]
    if kind == "AWS::Lambda::Function" and ("VpcConfig" in props or "DeadLetterConfig" in props):
        return [props["Role"]]
    if kind == "AWS::CloudTrail::Trail" and "CloudWatchLogsRoleArn" in props:
        return [props["CloudWatchLogsRoleArn"]]
    if kind == "AWS::ApiGateway::Account":
        return [props["CloudWatchRoleArn"]]
    return []


def dependencies(stage: StageModel, ref: Ref) -> set[Ref]:
    """Everything `ref` waits for in its stack: DependsOn and references, transitively."""
    seen: set[Ref] = set()
    pending = [ref]
    while pending:
        current = pending.pop()
        resource = stage.resource(current)
        direct = [Ref(current.stack, d) for d in resource.get("DependsOn", [])]
        direct += [r for r in stage.targets(current.stack, resource.get("Properties", {})) if r.stack == current.stack]
        for dependency in direct:
            if dependency not in seen and dependency.logical_id in stage.templates[current.stack]["Resources"]:
                seen.add(dependency)
                pending.append(dependency)
    return seen


def premature(stage: StageModel) -> Iterator[tuple[Ref, Ref | None]]:
    """(resource, policy it does not wait for); (resource, None) for each resource checked."""
    for ref, resource in stage.resources():
        for role_value in checked_roles(resource):
            role = stage.target(ref.stack, role_value)
            if role is None or stage.resource(role)["Type"] != "AWS::IAM::Role":
                continue  # an imported role: its policies exist before this stack
            waits_for = dependencies(stage, ref)
            yield ref, None
            for policy, _ in stage.policies_of_role(role):
                if policy.stack == ref.stack and policy not in waits_for:
                    yield ref, policy


@pytest.fixture(scope="module")
def stages(synthesized) -> list[StageModel]:
    return load_stages(synthesized.outdir)


def test_resources_that_check_their_role_wait_for_its_policies(stages) -> None:
    checked, problems = set(), []
    for stage in stages:
        for resource, policy in premature(stage):
            checked.add(stage.resource(resource)["Type"])
            if policy is not None:
                problems.append(f"{stage.name}: {resource.logical_id} does not wait for {policy.logical_id}")
    assert {"AWS::SageMaker::Model", "AWS::Lambda::Function", "AWS::ApiGateway::Account"} <= checked
    assert not problems, "\n".join(problems)
