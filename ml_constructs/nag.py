"""cdk-nag v3 wiring: every rule pack on the app, and acknowledgements kept next to their construct."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, App, Aspects, Stack, Stage, Token, Validations
from cdk_nag import (
    AwsSolutionsChecks,
    HIPAASecurityChecks,
    NIST80053R5Checks,
    PCIDSS321Checks,
    ServerlessChecks,
    WriteNagSuppressionsToCloudFormationAspect,
)
from constructs import IConstruct

RULE_PACKS = (AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks, ServerlessChecks)


def add_rule_packs(app: App) -> None:
    """Run all five packs at synth; any unacknowledged finding fails `app.synth()`.

    Acknowledgements are also written into each resource's template metadata (`cdk_nag.rules_to_suppress`),
    so that reviewers and the synth summary read them from the templates.
    """
    for pack in RULE_PACKS:
        Validations.of(app).add_plugins(pack(app, verbose=True))
    # The pipeline stack's acknowledgements stay in its metadata only: copied onto each of its resources they
    # would push its template past CloudFormation's 1 MB limit.


def record_acknowledgements_in_templates(scope: Stage) -> None:
    """Copy acknowledgements into template metadata. Aspects do not cross into nested stages, and CDK
    Pipelines synthesizes its stages when they are added, so every stage calls this in its constructor."""
    Aspects.of(scope).add(WriteNagSuppressionsToCloudFormationAspect())


def acknowledge(construct: IConstruct, rule_ids: Iterable[str], reason: str) -> None:
    """Record a deliberate trade-off for `rule_ids` on `construct` (and its children)."""
    Validations.of(construct).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in rule_ids))


def wildcard_finding(stack: Stack, resource: str) -> str:
    """The id cdk-nag gives an IAM5 wildcard finding on `resource` (unresolved pseudo parameters in <>)."""
    for token, printed in (
        (stack.account, "<AWS::AccountId>"),
        (stack.partition, "<AWS::Partition>"),
        (stack.region, "<AWS::Region>"),
    ):
        if Token.is_unresolved(token):
            resource = resource.replace(token, printed)
    return f"AwsSolutions-IAM5[Resource::{resource}]"
