"""AWS WAF web ACL for the API stage: managed rules, per-API-key and per-IP rate limits, body-size limit, redacted
logs."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from ml_constructs.encrypted_logs import encrypted_log_group

API_KEY_HEADER = "x-api-key"
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
)


class ApiFirewall(Construct):
    """Regional web ACL associated with `stage_arn`; exposes `web_acl`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        stage_arn: str,
        rate_limit_per_5_minutes: int,
        max_body_kb: int,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        key_rate_limit_per_5_minutes: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        block = wafv2.CfnWebACL.RuleActionProperty(block={})

        def rate_rule(
            name: str, priority: int, statement: wafv2.CfnWebACL.RateBasedStatementProperty
        ) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                action=block,
                visibility_config=visibility(name),
                statement=wafv2.CfnWebACL.StatementProperty(rate_based_statement=statement),
            )

        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name="body-size",
                priority=0,
                action=block,
                visibility_config=visibility("body-size"),
                statement=wafv2.CfnWebACL.StatementProperty(
                    size_constraint_statement=wafv2.CfnWebACL.SizeConstraintStatementProperty(
                        field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                            body=wafv2.CfnWebACL.BodyProperty(oversize_handling="MATCH")
                        ),
                        comparison_operator="GT",
                        size=max_body_kb * 1024,
                        text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
                    )
                ),
            ),
            # Consumers are limited per API key, so that several behind one NAT address keep their plans' rates
            # ("Aggregating rate-based rules in AWS WAF": custom keys, here the x-api-key header). A request without
            # the header is "omitted from the rate-based rule evaluation" (API reference, RateBasedStatementCustomKey):
            # the per-IP rule below is the backstop for those and for made-up keys. Without a key limit of its own
            # the key rule takes the per-IP limit, which settings keep at or above the key limit.
            rate_rule(
                "rate-per-api-key",
                1,
                wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=key_rate_limit_per_5_minutes or rate_limit_per_5_minutes,
                    aggregate_key_type="CUSTOM_KEYS",
                    custom_keys=[
                        wafv2.CfnWebACL.RateBasedStatementCustomKeyProperty(
                            header=wafv2.CfnWebACL.RateLimitHeaderProperty(
                                name=API_KEY_HEADER,
                                text_transformations=[
                                    wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                                ],
                            )
                        )
                    ],
                ),
            ),
            rate_rule(
                "rate-per-ip",
                2,
                wafv2.CfnWebACL.RateBasedStatementProperty(limit=rate_limit_per_5_minutes, aggregate_key_type="IP"),
            ),
        ]
        for priority, group in enumerate(MANAGED_RULE_GROUPS, start=3):
            overrides = None
            if group == "AWSManagedRulesCommonRuleSet":
                # Its 8 KB body rule would cap batches below the API's limit, which the body-size rule enforces.
                overrides = [
                    wafv2.CfnWebACL.RuleActionOverrideProperty(
                        name="SizeRestrictions_BODY", action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                    )
                ]
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=group,
                    priority=priority,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    visibility_config=visibility(group),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=group, rule_action_overrides=overrides
                        )
                    ),
                )
            )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=f"{prefix}-api",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(f"{prefix}-api"),
            rules=rules,
            association_config=wafv2.CfnWebACL.AssociationConfigProperty(
                request_body={
                    "API_GATEWAY": wafv2.CfnWebACL.RequestBodyAssociatedResourceTypeConfigProperty(
                        default_size_inspection_limit=f"KB_{max_body_kb}"
                    )
                }
            ),
        )
        wafv2.CfnWebACLAssociation(self, "Association", resource_arn=stage_arn, web_acl_arn=self.web_acl.attr_arn)

        # WAF requires the log group name to start with aws-waf-logs-.
        log_group = encrypted_log_group(
            self,
            "Logs",
            key=logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
            log_group_name=f"aws-waf-logs-{prefix}",
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            # WAF wants the log group ARN without the ":*" suffix that CloudFormation's Arn attribute has.
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=f"aws-waf-logs-{prefix}",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": "x-api-key"}),
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": "authorization"}),
            ],
        ).node.add_dependency(log_group)
