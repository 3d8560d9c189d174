"""Let an endpoint update change the instance type although its variant is registered with autoscaling.

SageMaker rejects an UpdateEndpoint that changes the instance type of a variant registered with Application
Auto Scaling. Around such a deploy:

    python -m scripts.autoscaling_guard before --template cdk.out/.../<inference stack>.template.json
    (cdk deploy / the pipeline's deploy actions)
    python -m scripts.autoscaling_guard after --template <the same template>

`before` deregisters the scalable target only when the deployed instance type differs from the template's;
`after` registers it again with exactly the template's capacity, scaling policies and schedules (same names,
so CloudFormation's resources match the live state again), including the template's RoleARN. Both are no-ops
otherwise. Exit 0 on success, 1 on an AWS error, 2 on a template without an endpoint (or a RoleARN it cannot
resolve).

The template's RoleARN is usually `Fn::GetAtt [<role>, Arn]` of a role in the same stack: `after` resolves it
with CloudFormation DescribeStackResource on the stack (`--stack-name`, default: the cloud assembly's
manifest.json beside the template), or takes `--role-arn`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError


@dataclass(frozen=True)
class DesiredScaling:
    """What the synthesized template wants: the endpoint, its variant's instance type and its autoscaling."""

    endpoint_name: str
    instance_type: str | None
    target: dict[str, Any] | None
    policies: list[dict[str, Any]]
    role_path: str = "/"

    @classmethod
    def from_template(cls, template: dict[str, Any]) -> DesiredScaling:
        resources = template.get("Resources", {})

        def of_type(resource_type: str) -> list[tuple[str, dict[str, Any]]]:
            return [(k, r.get("Properties", {})) for k, r in resources.items() if r.get("Type") == resource_type]

        endpoints = of_type("AWS::SageMaker::Endpoint")
        if len(endpoints) != 1:
            raise ValueError(f"expected one AWS::SageMaker::Endpoint in the template, found {len(endpoints)}")
        [(_, config)] = of_type("AWS::SageMaker::EndpointConfig") or [("", {})]
        variants = config.get("ProductionVariants", [{}])
        targets = of_type("AWS::ApplicationAutoScaling::ScalableTarget")
        target_id, target = targets[0] if targets else ("", None)
        policies = [
            p
            for _, p in of_type("AWS::ApplicationAutoScaling::ScalingPolicy")
            if p.get("ScalingTargetId") == {"Ref": target_id}
        ]
        role = (target or {}).get("RoleARN")
        getatt = role.get("Fn::GetAtt") if isinstance(role, dict) else None
        role_path = "/"
        if isinstance(getatt, list) and getatt[0] in resources:
            role_path = resources[getatt[0]].get("Properties", {}).get("Path", "/")
        return cls(endpoints[0][1]["EndpointName"], variants[0].get("InstanceType"), target, policies, role_path)

    @property
    def role_arn(self) -> Any:
        """The template's RoleARN as written (a string, or an intrinsic such as Fn::GetAtt), or None."""
        return (self.target or {}).get("RoleARN")


def deployed_instance_type(sagemaker: Any, endpoint_name: str) -> str | None:
    """The instance type the endpoint runs now, or None when it does not exist (first deploy)."""
    try:
        config_name = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":  # SageMaker's "could not find endpoint"
            return None
        raise
    variants = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    return variants[0].get("InstanceType")


def is_registered(autoscaling: Any, target: dict[str, Any]) -> bool:
    found = autoscaling.describe_scalable_targets(
        ServiceNamespace=target["ServiceNamespace"],
        ResourceIds=[target["ResourceId"]],
        ScalableDimension=target["ScalableDimension"],
    )["ScalableTargets"]
    return bool(found)


def before(desired: DesiredScaling, sagemaker: Any, autoscaling: Any) -> str:
    if desired.target is None or desired.instance_type is None:
        return "no autoscaling in the template: nothing to do"
    current = deployed_instance_type(sagemaker, desired.endpoint_name)
    if current is None or current == desired.instance_type:
        return f"instance type unchanged ({current or 'new endpoint'}): nothing to do"
    if not is_registered(autoscaling, desired.target):
        return f"instance type {current} -> {desired.instance_type}; target already deregistered"
    autoscaling.deregister_scalable_target(
        ServiceNamespace=desired.target["ServiceNamespace"],
        ResourceId=desired.target["ResourceId"],
        ScalableDimension=desired.target["ScalableDimension"],
    )
    return f"instance type {current} -> {desired.instance_type}: deregistered {desired.target['ResourceId']}"


def resolve_role_arn(desired: DesiredScaling, cloudformation: Any, stack_name: str | None) -> str | None:
    """The template's RoleARN as a string: a literal, or `Fn::GetAtt [role, Arn]` of a role in the stack, whose
    physical name CloudFormation returns (DescribeStackResource) and whose partition and account the stack ARN
    gives."""
    role = desired.role_arn
    if role is None or isinstance(role, str):
        return role
    getatt = role.get("Fn::GetAtt") if isinstance(role, dict) else None
    if not (isinstance(getatt, list) and len(getatt) == 2 and getatt[1] == "Arn"):
        raise ValueError(f"cannot resolve the scalable target's RoleARN {json.dumps(role)}: pass --role-arn")
    if not stack_name:
        raise ValueError("the scalable target's RoleARN is a Fn::GetAtt: pass --stack-name or --role-arn")
    detail = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=getatt[0])
    resource = detail["StackResourceDetail"]
    partition, account = resource["StackId"].split(":")[1], resource["StackId"].split(":")[4]
    return f"arn:{partition}:iam::{account}:role{desired.role_path}{resource['PhysicalResourceId']}"


def after(desired: DesiredScaling, autoscaling: Any, role_arn: Callable[[], str | None] | str | None = None) -> str:
    """Register the target again as the template declares it, RoleARN included. Application Auto Scaling API
    reference, RegisterScalableTarget, RoleARN: required only for services without a service-linked role; for a
    service that has one (SageMaker: AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint) Application Auto
    Scaling uses it, creating it if needed. The template names a role, so the restored target names it too, or the
    live target no longer is what CloudFormation declares. `role_arn` is resolved only when registering."""
    target = desired.target
    if target is None or is_registered(autoscaling, target):
        return "autoscaling registered as the template says: nothing to do"
    keys = {
        "ServiceNamespace": target["ServiceNamespace"],
        "ResourceId": target["ResourceId"],
        "ScalableDimension": target["ScalableDimension"],
    }
    role = role_arn() if callable(role_arn) else role_arn
    if role is None and desired.role_arn is not None:
        raise ValueError("the template's RoleARN was not resolved: pass --role-arn or --stack-name")
    extra = {"RoleARN": role} if role else {}
    autoscaling.register_scalable_target(
        **keys, MinCapacity=target["MinCapacity"], MaxCapacity=target["MaxCapacity"], **extra
    )
    for policy in desired.policies:
        autoscaling.put_scaling_policy(
            **keys,
            PolicyName=policy["PolicyName"],
            PolicyType=policy["PolicyType"],
            TargetTrackingScalingPolicyConfiguration=policy["TargetTrackingScalingPolicyConfiguration"],
        )
    for action in target.get("ScheduledActions", []):
        autoscaling.put_scheduled_action(
            **keys,
            ScheduledActionName=action["ScheduledActionName"],
            Schedule=action["Schedule"],
            ScalableTargetAction=action["ScalableTargetAction"],
        )
    with_role = f" and role {role}" if role else ""
    return f"registered {target['ResourceId']} again with {len(desired.policies)} scaling policies{with_role}"


def stack_name_of(template: Path) -> str | None:
    """The stack name the cloud assembly's manifest.json (beside the template) gives the template's stack."""
    manifest = template.parent / "manifest.json"
    if not manifest.is_file():
        return None
    for artifact in json.loads(manifest.read_text()).get("artifacts", {}).values():
        properties = artifact.get("properties", {})
        if artifact.get("type") == "aws:cloudformation:stack" and properties.get("templateFile") == template.name:
            return str(properties.get("stackName") or "") or None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("phase", choices=["before", "after"])
    parser.add_argument("--template", type=Path, required=True, help="the synthesized inference stack template")
    parser.add_argument("--region")
    parser.add_argument("--stack-name", help="the inference stack (default: from the assembly's manifest.json)")
    parser.add_argument("--role-arn", help="the scalable target's role (default: the template's, resolved)")
    args = parser.parse_args(argv)
    try:
        desired = DesiredScaling.from_template(json.loads(args.template.read_text()))
        stack_name = args.stack_name or stack_name_of(args.template)
    except (OSError, ValueError, KeyError) as error:
        print(f"autoscaling_guard: {error}", file=sys.stderr)
        return 2
    session = boto3.Session(region_name=args.region)
    try:
        autoscaling = session.client("application-autoscaling")
        if args.phase == "before":
            print(before(desired, session.client("sagemaker"), autoscaling))
        else:

            def role() -> str | None:
                return args.role_arn or resolve_role_arn(desired, session.client("cloudformation"), stack_name)

            print(after(desired, autoscaling, role))
    except ValueError as error:
        print(f"autoscaling_guard: {error}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:
        print(f"autoscaling_guard: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
