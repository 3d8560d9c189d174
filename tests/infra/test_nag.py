"""Every nag pack runs on every stack; the app synthesizes with no unacknowledged finding."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3

from ml_constructs.nag import RULE_PACKS, acknowledge, add_rule_packs


def test_app_has_no_failed_findings(synthesized) -> None:
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    assert [v for plugin in report["pluginReports"] for v in plugin["violations"]] == []


def test_every_acknowledgement_carries_a_reviewable_reason(synthesized) -> None:
    seen = 0
    for template in synthesized.templates.values():
        for resource in template["Resources"].values():
            for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                seen += 1
                assert len(rule["reason"]) >= 40, rule
    assert seen > 0


def test_all_five_packs_are_attached() -> None:
    names = {pack.__name__ for pack in RULE_PACKS}
    assert names == {
        "AwsSolutionsChecks",
        "HIPAASecurityChecks",
        "NIST80053R5Checks",
        "PCIDSS321Checks",
        "ServerlessChecks",
    }


def test_an_insecure_resource_fails_synth_and_an_acknowledgement_is_scoped(tmp_path) -> None:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Probe")
    s3.Bucket(stack, "Plain")
    add_rule_packs(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert {
        "AwsSolutions-S10",
        "HIPAA.Security-S3DefaultEncryptionKMS",
        "NIST.800.53.R5-S3BucketLoggingEnabled",
        "PCI.DSS.321-S3BucketSSLRequestsOnly",
    } <= rules

    acked_app = App(outdir=str(tmp_path / "acked"))
    bucket = s3.Bucket(Stack(acked_app, "Probe"), "Plain")
    acknowledge(bucket, ["AwsSolutions-S10"], "probe: only this one rule is acknowledged in this test")
    add_rule_packs(acked_app)
    with pytest.raises(RuntimeError):
        acked_app.synth()
    report = json.loads((tmp_path / "acked" / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert "AwsSolutions-S10" not in rules and "AwsSolutions-S1" in rules
