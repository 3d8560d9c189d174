"""The security report over a fresh synth: no nag failures, IAM wildcards only where AWS allows nothing narrower,
exactly one internet path to the model per environment, acknowledgements within budget, checkov and cfn-lint clean."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts import security_report as sr
from scripts.security_report_iam import statement_violations
from scripts.security_report_nag import PACKS, rule_catalogue

ROOT = Path(__file__).resolve().parents[2]
# One xdist worker synthesizes (and runs checkov) once for the whole module.
pytestmark = pytest.mark.xdist_group("security-report")


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from aws_cdk import App

    from stacks.app_builder import build_stages

    outdir = tmp_path_factory.mktemp("sec-cdk.out")
    # the CDK CLI turns construct-path metadata on; in-process synth must ask for it
    context = {**json.loads((ROOT / "cdk.json").read_text())["context"], "aws:cdk:enable-path-metadata": True}
    app = App(context=context, outdir=str(outdir))
    build_stages(app, default_account="123456789012", default_region=None)
    try:
        app.synth()
    except Exception as error:  # nag failures raise here; the report still reads validation-report.json
        if not (outdir / "validation-report.json").exists():
            raise
        print(f"synth failed: {error}")
    result = sr.build_report(outdir)  # one checkov run for the session
    sr.write_report(result, tmp_path_factory.mktemp("reports"))
    return result


def _roles(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [role for env in report["environments"] for stack in env["stacks"] for role in stack["iam"]]


def test_no_failed_nag_findings_in_any_pack(report: dict[str, Any]) -> None:
    assert report["nag_failed_findings"] == []
    for env in report["environments"]:
        for stack in env["stacks"]:
            assert set(stack["nag"]["packs"]) == set(PACKS)
            for pack, figures in stack["nag"]["packs"].items():
                assert figures["failed"] == [], (env["env"], stack["stack"], pack)


def test_every_pack_has_applicable_and_passed_rules(report: dict[str, Any]) -> None:
    for env in report["environments"]:
        for pack in PACKS:
            applicable = sum(s["nag"]["packs"][pack]["applicable"] for s in env["stacks"])
            passed = sum(len(s["nag"]["packs"][pack]["passed"]) for s in env["stacks"])
            assert applicable > 0 and passed > 0, (env["env"], pack)


def test_rule_catalogue_comes_from_the_installed_packs() -> None:
    catalogue = rule_catalogue()
    assert set(catalogue) == set(PACKS)
    ids = {r.rule_id for rules in catalogue.values() for r in rules}
    assert {"AwsSolutions-IAM5", "HIPAA.Security-S3BucketReplicationEnabled", "Serverless-LambdaDLQ"} <= ids
    assert all(r.resource_types for rules in catalogue.values() for r in rules)


def test_every_acknowledgement_has_a_reason_and_a_resource(report: dict[str, Any]) -> None:
    for env in report["environments"]:
        for stack in env["stacks"]:
            for figures in stack["nag"]["packs"].values():
                for ack in figures["acknowledged"]:
                    assert len(ack["reason"]) >= 30, ack
                    assert ack["resources"], f"acknowledgement covers no resource: {ack}"
                assert figures["acknowledged_not_applicable"] == [], (
                    "stale acknowledgement: the rule is not in the pack or no resource of its type is in the stack"
                )


def test_acknowledgements_within_budget(report: dict[str, Any]) -> None:
    budget = json.loads((ROOT / "docs" / "acknowledgement-budget.json").read_text())["environments"]
    for env, figures in report["acknowledgement_budget"].items():
        assert env in budget, f"no acknowledgement budget for {env} in docs/acknowledgement-budget.json"
        assert figures["actual"] <= budget[env], (
            f"{env} has {figures['actual']} nag acknowledgements, budget {budget[env]}: fix the finding instead, or "
            "raise the budget in docs/acknowledgement-budget.json with an entry in 'changes' justifying it"
        )


def test_no_wildcard_resource_outside_unscopable_actions_and_passrole_is_scoped(report: dict[str, Any]) -> None:
    roles = _roles(report)
    assert len(roles) >= 9 * len(report["environments"]) // 3
    violations = {role["path"]: role["violations"] for role in roles if role["violations"]}
    assert violations == {}


def test_aws_managed_policies_are_the_documented_ones(report: dict[str, Any]) -> None:
    managed = {name for role in _roles(report) for name in role["aws_managed_policies"]}
    # API Gateway account role (nag IAM4 acknowledged) and CDK's default-SG custom resource provider.
    assert managed <= {"AmazonAPIGatewayPushToCloudWatchLogs", "AWSLambdaBasicExecutionRole"}


def _one_named_role(trust: dict[str, Any]) -> bool:
    """An account principal held to exactly one role ARN (`aws:PrincipalArn`, no wildcard): a pipeline step's role
    in the pipeline account assuming its role in an environment (IAM User Guide, "AWS global condition context
    keys": aws:PrincipalArn)."""
    condition = trust.get("condition") or {}
    arns = condition.get("ArnEquals", {}).get("aws:PrincipalArn")
    return (
        len(trust["principals"]) == 1
        and re.fullmatch(r"AWS: arn:aws:iam::\d{12}:root", trust["principals"][0]) is not None
        and isinstance(arns, str)
        and re.fullmatch(r"arn:[^:]+:iam::\d{12}:role/[A-Za-z0-9+=,.@_-]+", arns) is not None
    )


def test_every_role_is_assumed_by_a_service_a_role_of_the_same_stack_or_one_named_role(report: dict[str, Any]) -> None:
    same_stack_role = re.compile(r"^AWS: \$\{[A-Za-z0-9]+\.Arn\}$")
    for role in _roles(report):
        assert role["trust"], role["path"]
        for trust in role["trust"]:
            principals = trust["principals"]
            assert principals, role["path"]
            assert _one_named_role(trust) or all(
                p.startswith("Service: ") or same_stack_role.match(p) for p in principals
            ), (role["path"], principals, trust.get("condition"))


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Action": "s3:GetObject", "Resource": "*"}, "s3:GetObject on *"),
        ({"Action": "cloudwatch:PutMetricData", "Resource": "*"}, "without a condition on cloudwatch:namespace"),
        ({"Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/x"}, "iam:PassRole without a condition"),
        (
            {"Action": "iam:PassRole", "Resource": "*", "Condition": {"StringEquals": {"iam:PassedToService": "x"}}},
            "iam:PassRole on *",
        ),
        ({"Action": "ec2:*", "Resource": "*"}, "ec2:* on *"),
    ],
)
def test_wildcard_rule_rejects(statement: dict[str, Any], expected: str) -> None:
    from scripts.security_report_iam import statements

    problems = statement_violations(statements({"Statement": [statement]})[0])
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "statement",
    [
        {
            "Action": ["ec2:DescribeNetworkInterfaces", "xray:PutTraceSegments", "ecr:GetAuthorizationToken"],
            "Resource": "*",
        },
        {
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringLike": {"cloudwatch:namespace": "x"}},
        },
        {"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/k"},
        {
            "Action": "iam:PassRole",
            "Resource": "arn:aws:iam::1:role/x",
            "Condition": {"StringEquals": {"iam:PassedToService": "s"}},
        },
    ],
)
def test_wildcard_rule_accepts(statement: dict[str, Any]) -> None:
    from scripts.security_report_iam import statements

    assert statement_violations(statements({"Statement": [statement]})[0]) == []


def test_exactly_one_internet_path_to_the_model_per_environment(report: dict[str, Any]) -> None:
    assert {"dev", "staging", "prod"} <= {env["env"] for env in report["environments"]}
    for env in report["environments"]:
        network = env["network"]
        assert network["other_entry_points"] == [], env["env"]
        has_model = network["serves_model"]
        assert len(network["model_paths"]) == (1 if has_model else 0), env["env"]
        if not has_model:  # e.g. the delivery pipeline's own stack: nothing reachable from the internet
            continue
        (path,) = network["model_paths"]
        assert path["problems"] == [], path
        assert path["waf"] and path["stage"] and path["method"] == "POST /v1/predict"
        assert path["sagemaker_endpoint"] == f"mlapi-{env['env'].split('-')[-1]}-endpoint"
        assert len(path["endpoint_subnets"]) >= 2


def test_every_data_store_is_encrypted_with_a_platform_key(report: dict[str, Any]) -> None:
    for env in report["environments"]:
        kinds = {row["type"] for row in env["encryption"]}
        # The StepAccess stage holds roles and the model registry's bucket; every other stage all five kinds.
        expected = {"S3 bucket"} if env["env"].endswith("StepAccess") else {
            "S3 bucket", "DynamoDB table", "SQS queue", "SNS topic", "log group"
        }  # fmt: skip
        assert expected <= kinds, env["env"]
        for row in env["encryption"]:
            if row["type"] == "S3 bucket" and row["path"].endswith("AccessLogs/Resource"):
                assert row["key"].startswith("SSE-S3"), row  # S3 log delivery cannot write to SSE-KMS
            else:
                assert row["key"].startswith("KMS key "), row


def test_declared_log_groups_have_retention(report: dict[str, Any]) -> None:
    for env in report["environments"]:
        for group in env["logs"]:
            if group["kind"] == "log group":
                assert group["retention_days"], group
                assert group["writers"], f"log group nothing writes to: {group}"


def test_report_files_are_written_and_mention_every_pack(report: dict[str, Any], tmp_path: Path) -> None:
    markdown, data = sr.write_report(report, tmp_path)
    text = markdown.read_text()
    for pack in PACKS:
        assert pack in text
    for section in (
        "## IAM review",
        "## Encryption",
        "## Log destinations",
        "## Network paths",
        "## checkov",
        "## cfn-lint",
    ):
        assert section in text
    assert json.loads(data.read_text())["headline"] == report["headline"]


def test_checkov_skips_have_reasons() -> None:
    skips = sr.checkov_skips()
    assert skips, ".checkov.yaml lists no skipped checks"
    for check_id, reason in skips.items():
        assert len(reason) >= 60, f"{check_id}: skip without a reason a reviewer would accept"


def test_cfn_lint_is_clean(report: dict[str, Any]) -> None:
    assert report["cfn_lint"]["ran"], report["cfn_lint"]
    assert report["cfn_lint"]["findings"] == []


def _checkov(report: dict[str, Any]) -> dict[str, Any]:
    if not report["checkov"]["ran"]:
        pytest.skip(report["checkov"]["reason"])
    return report["checkov"]


def test_checkov_has_zero_failed_checks(report: dict[str, Any]) -> None:
    assert _checkov(report)["failed"] == []
