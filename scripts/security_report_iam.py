"""IAM review from the synthesized templates: every role, who may assume it, what it may do and on what.

The wildcard rule: an identity-policy statement with `Resource: "*"` is accepted only for actions AWS offers no
resource scoping for (`STAR_ONLY_ACTIONS`), some of them only with a condition (`STAR_ACTIONS_NEEDING_CONDITION`);
anything else on `*` is a violation. `iam:PassRole` always needs a specific resource and a condition.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

# Actions that support no resource-level permission (IAM "Service Authorization Reference": resource type
# column empty), and which the platform needs: VPC-attached Lambdas and SageMaker manage ENIs, X-Ray segments,
# the ECR login token, and log-delivery APIs of services that write logs on the account's behalf.
STAR_ONLY_ACTIONS = (
    "ec2:Describe*",
    "ec2:CreateNetworkInterface",  # Lambda / SageMaker VPC access (AWSLambdaVPCAccessExecutionRole uses *)
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "ecr:GetAuthorizationToken",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",  # Step Functions logging (vended log delivery); no resource type
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "codepipeline:PutJobSuccessResult",  # custom/Lambda pipeline actions report their job result; no resource type
    "codepipeline:PutJobFailureResult",
    "lambda:ListFunctions",  # list action, no resource type (CDK Pipelines' Lambda invoke action)
    "application-autoscaling:DescribeScalableTargets",  # no resource type (scripts/autoscaling_guard.py)
)
# Control-plane calls that CDK Pipelines' own roles make on "*" (it cannot know the names in advance:
# its asset projects, the stacks it deploys, the bootstrap buckets it checks). Accepted only in roles
# under the pipeline's generated constructs (`GENERATED_PIPELINE_PATHS`), never in the platform's stacks.
CDK_PIPELINES_STAR_ACTIONS = (
    "codebuild:StartBuild",
    "codebuild:StopBuild",
    "codebuild:BatchGetBuilds",
    "cloudformation:DescribeStacks",
    "s3:ListBucket",
)
GENERATED_PIPELINE_PATHS = ("/Delivery/Pipeline/", "/Delivery/CodePipeline/")
# action -> condition keys of which one must be present for `*` to be accepted
STAR_ACTIONS_NEEDING_CONDITION = {
    "cloudwatch:PutMetricData": ("cloudwatch:namespace",),
    # ENI permission APIs are only accepted when pinned to the platform's VPC/subnets
    "ec2:CreateNetworkInterfacePermission": ("ec2:Vpc", "ec2:Subnet", "ec2:AuthorizedService"),
    "ec2:DeleteNetworkInterfacePermission": ("ec2:Vpc", "ec2:Subnet", "ec2:AuthorizedService"),
}


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """A readable form of a CloudFormation value: `Ref X`, `X.Arn`, `import:NAME`, joins inlined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"${{{arg}}}"
        if fn == "Fn::GetAtt":
            return "${" + (".".join(arg) if isinstance(arg, list) else str(arg)) + "}"
        if fn == "Fn::Join":
            separator, parts = arg
            return separator.join(render(p) for p in parts)
        if fn == "Fn::Sub":
            return arg if isinstance(arg, str) else render(arg[0])
        if fn == "Fn::ImportValue":
            return "${import:" + render(arg).split(":")[-1] + "}"
        if fn == "Fn::Select":
            return f"${{select {arg[0]} of {render(arg[1])}}}"
        if fn == "Fn::Split":
            return f"${{split {render(arg[1])}}}"
        if fn == "Fn::If":
            return f"${{if {arg[0]}: {render(arg[1])} | {render(arg[2])}}}"
    return json.dumps(value, sort_keys=True)


def _ref_target(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def statements(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for statement in as_list((document or {}).get("Statement")):
        out.append(
            {
                "effect": statement.get("Effect", "Allow"),
                "actions": [render(a) for a in as_list(statement.get("Action"))],
                "not_actions": [render(a) for a in as_list(statement.get("NotAction"))],
                "resources": [render(r) for r in as_list(statement.get("Resource"))],
                "not_resources": [render(r) for r in as_list(statement.get("NotResource"))],
                "condition": statement.get("Condition"),
            }
        )
    return out


def _condition_keys(condition: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(condition, dict):
        for operator_block in condition.values():
            if isinstance(operator_block, dict):
                keys.update(k.lower() for k in operator_block)
    return keys


def _matches(action: str, patterns: tuple[str, ...] | list[str]) -> bool:
    # the policy action is taken literally: `ec2:*` is NOT covered by the pattern `ec2:Describe*`
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def statement_violations(statement: dict[str, Any], also_allowed: tuple[str, ...] = ()) -> list[str]:
    """Why an Allow statement breaks the wildcard / PassRole rules (empty when it does not)."""
    if statement["effect"] != "Allow":
        return []
    problems = []
    if statement["not_actions"]:
        problems.append(f"Allow with NotAction {statement['not_actions']}")
    if statement["not_resources"]:
        problems.append(f"Allow with NotResource {statement['not_resources']}")
    on_star = "*" in statement["resources"] or statement["not_resources"]
    keys = _condition_keys(statement["condition"])
    for action in statement["actions"]:
        if on_star:
            needed = next((v for k, v in STAR_ACTIONS_NEEDING_CONDITION.items() if k.lower() == action.lower()), None)
            if needed is not None:
                if not keys & {k.lower() for k in needed}:
                    problems.append(f"{action} on * without a condition on {' or '.join(needed)}")
            elif not _matches(action, STAR_ONLY_ACTIONS + also_allowed):
                problems.append(f"{action} on * (AWS supports resource scoping for it, or it is a wildcard action)")
        if fnmatch.fnmatchcase("iam:passrole", action.lower()):
            if on_star or not statement["resources"]:
                problems.append(f"{action} without a specific resource")
            if not statement["condition"]:
                problems.append(f"{action} without a condition (e.g. iam:PassedToService)")
    return problems


def iam_review(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every AWS::IAM::Role of a template with its trust, inline and attached policies."""
    resources = template.get("Resources", {})
    roles: dict[str, dict[str, Any]] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        props = resource.get("Properties", {})
        trust = []
        for statement in as_list(props.get("AssumeRolePolicyDocument", {}).get("Statement")):
            principal = statement.get("Principal", {})
            flat = (
                [("*", "*")]
                if principal == "*"
                else [(kind, render(v)) for kind, values in principal.items() for v in as_list(values)]
            )
            trust.append(
                {
                    "effect": statement.get("Effect", "Allow"),
                    "actions": [render(a) for a in as_list(statement.get("Action"))],
                    "principals": [f"{kind}: {value}" for kind, value in flat],
                    "condition": statement.get("Condition"),
                }
            )
        policies = [
            {
                "name": render(p.get("PolicyName", "")),
                "kind": "inline (Role.Policies)",
                "statements": statements(p.get("PolicyDocument")),
            }
            for p in as_list(props.get("Policies"))
        ]
        for arn in as_list(props.get("ManagedPolicyArns")):
            target = _ref_target(arn)
            if target in resources and resources[target].get("Type") == "AWS::IAM::ManagedPolicy":
                continue  # listed below from the policy itself
            rendered = render(arn)
            policies.append(
                {
                    "name": rendered.split("/")[-1],
                    "kind": "AWS managed" if ":iam::aws:policy/" in rendered else "managed (outside this template)",
                    "arn": rendered,
                    "statements": [],
                }
            )
        roles[logical_id] = {
            "logical_id": logical_id,
            "path": resource.get("Metadata", {}).get("aws:cdk:path", logical_id),
            "trust": trust,
            "policies": policies,
        }
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        props = resource.get("Properties", {})
        attached = [_ref_target(r) for r in as_list(props.get("Roles"))]
        if kind == "AWS::IAM::ManagedPolicy":  # also attached through a role's ManagedPolicyArns
            attached += [
                role_id
                for role_id, role in resources.items()
                if role.get("Type") == "AWS::IAM::Role"
                and any(
                    _ref_target(a) == logical_id for a in as_list(role.get("Properties", {}).get("ManagedPolicyArns"))
                )
            ]
        for role_id in dict.fromkeys(a for a in attached if a):
            if role_id in roles:
                roles[role_id]["policies"].append(
                    {
                        "name": logical_id,
                        "kind": "inline (AWS::IAM::Policy)" if kind == "AWS::IAM::Policy" else "customer managed",
                        "path": resource.get("Metadata", {}).get("aws:cdk:path", logical_id),
                        "statements": statements(props.get("PolicyDocument")),
                    }
                )
    for role in roles.values():
        role["violations"] = [
            f"{policy['name']}: {problem}"
            for policy in role["policies"]
            for statement in policy["statements"]
            for problem in statement_violations(statement, _generated_allowance(policy.get("path", "")))
        ]
        role["aws_managed_policies"] = [p["name"] for p in role["policies"] if p["kind"] == "AWS managed"]
    return sorted(roles.values(), key=lambda r: r["path"])


def _generated_allowance(path: str) -> tuple[str, ...]:
    return CDK_PIPELINES_STAR_ACTIONS if any(part in path for part in GENERATED_PIPELINE_PATHS) else ()
