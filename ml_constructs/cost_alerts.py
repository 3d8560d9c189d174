"""An environment's monthly cost budget and its cost anomaly alerts, to the alarm topic and configured e-mails."""

from __future__ import annotations

import json

from aws_cdk import Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_ce as ce
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from platform_config import CostSettings

# The tag platform_stage.py puts on every stack of one environment (data, network, inference): the budget and the
# anomaly monitor follow its value. Cost allocation tags count only once activated in the Billing console (no
# CloudFormation resource does it): README "Cost".
ENVIRONMENT_TAG = "environment"
BUDGETS = "budgets.amazonaws.com"
COST_ANOMALY_DETECTION = "costalerts.amazonaws.com"


def budget_tag_filter(environment_name: str) -> dict[str, list[str]]:
    """CostFilters of a budget on the environment tag: `TagKeyValue` takes `user:<key>$<value>` (AWS CLI, budgets
    create-budget, "To create a Cost and Usage budget"). The values of one filter key are alternatives (OR), so the
    project tag cannot narrow it further here; every stack that carries `environment` is this project's."""
    return {"TagKeyValue": [f"user:{ENVIRONMENT_TAG}${environment_name}"]}


class CostAlerts(Construct):
    """`budget`: monthly COST budget on the environment's tag, ACTUAL and FORECASTED percentage notifications to
    `topic` and `settings.emails`; `monitor` + `subscriptions`: Cost Anomaly Detection on the same tag, to `topic` at
    once and to the e-mails daily (unless `settings.anomaly_alerts` is false: None and []).

    Regions: AWS Budgets and Cost Explorer are global services; CloudFormation registers AWS::Budgets::Budget,
    AWS::CE::AnomalyMonitor and AWS::CE::AnomalySubscription in the environment's region (cfn-lint's eu-west-1 and
    eu-central-1 resource schemas list all three; in 2022 the CE types were us-east-1 only, CloudFormation coverage
    roadmap issue 1375). Neither service documents a region for its SNS topic, only that a budget's topic "must be in
    the same account" (Cost Management User Guide, "Creating an Amazon SNS topic for budget notifications"), so both
    publish to the environment's own alarm topic. E-mail subscribers bypass SNS and KMS: a wrong topic or key
    policy cannot silence every cost alert at once.

    Permissions on the KMS-encrypted topic (`enforce_ssl` makes the topic policy explicit, alarm_topic.py):
    - topic policy: budgets.amazonaws.com may publish for this account's budgets only (aws:SourceAccount and
      aws:SourceArn arn:<partition>:budgets::<account>:*, "Creating an Amazon SNS topic for budget notifications");
      costalerts.amazonaws.com for this account's anomaly subscriptions (aws:SourceAccount, Cost Management User
      Guide, "Creating an Amazon SNS topic for anomaly notifications");
    - key policy of `topic_key`: both services get kms:GenerateDataKey* and kms:Decrypt ("Protecting your Amazon SNS
      budget alerts data with SSE and AWS KMS" and its anomaly detection twin; SNS Developer Guide, "Key management",
      "Enable compatibility between event sources from AWS services and encrypted topics"), held to SNS topics of
      this account and region by the encryption context SNS sets (kms:EncryptionContext:aws:sns:topicArn). Not the
      topic's own ARN: the key lives in the data stack, which the inference stack depends on, so naming the topic
      there would be a cycle.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        environment_name: str,
        settings: CostSettings,
        topic: sns.Topic,
        topic_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        account, partition = stack.account, stack.partition
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetsOfThisAccount",
                principals=[iam.ServicePrincipal(BUDGETS)],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": f"arn:{partition}:budgets::{account}:*"},
                },
            )
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CostAnomalyDetectionOfThisAccount",
                principals=[iam.ServicePrincipal(COST_ANOMALY_DETECTION)],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": account}},
            )
        )
        key_stack = Stack.of(topic_key)
        added = topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CostAlertsEncryptForThisAccountsTopics",
                principals=[iam.ServicePrincipal(BUDGETS), iam.ServicePrincipal(COST_ANOMALY_DETECTION)],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],
                # kms:EncryptionContext:<key> is a String condition key (AWS KMS Developer Guide, "AWS KMS condition
                # keys", kms:EncryptionContext:context-key), so a String operator, not ArnLike.
                conditions={
                    "StringLike": {
                        "kms:EncryptionContext:aws:sns:topicArn": (
                            f"arn:{key_stack.partition}:sns:{key_stack.region}:{key_stack.account}:*"
                        )
                    }
                },
            )
        )
        if not added.statement_added:
            raise ValueError(
                f"CostAlerts {construct_id}: the alarm topic's key is imported, so its policy cannot grant AWS Budgets "
                "and Cost Anomaly Detection kms:GenerateDataKey*/kms:Decrypt; pass the kms.Key the topic uses"
            )
        # The topic policy must exist before either service is pointed at the topic ("Invalid SNS topic", same page).
        topic_policy = topic.node.try_find_child("Policy")

        sns_subscriber = budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic.topic_arn)
        email_subscribers = [
            budgets.CfnBudget.SubscriberProperty(subscription_type="EMAIL", address=email) for email in settings.emails
        ]
        thresholds = [("ACTUAL", value) for value in settings.actual_threshold_percent] + [
            ("FORECASTED", value) for value in settings.forecast_threshold_percent
        ]
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=f"{prefix}-monthly",
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=settings.monthly_budget_usd, unit="USD"),
                cost_filters=budget_tag_filter(environment_name),
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=kind,
                        comparison_operator="GREATER_THAN",
                        threshold=value,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=[sns_subscriber, *email_subscribers],
                )
                for kind, value in thresholds
            ],
        )

        self.monitor: ce.CfnAnomalyMonitor | None = None
        self.subscriptions: list[ce.CfnAnomalySubscription] = []
        if settings.anomaly_alerts:
            self._anomaly_alerts(prefix, environment_name, settings, topic)
        if topic_policy is not None:
            self.budget.node.add_dependency(topic_policy)
            for subscription in self.subscriptions:
                subscription.node.add_dependency(topic_policy)

    def _anomaly_alerts(self, prefix: str, environment_name: str, settings: CostSettings, topic: sns.Topic) -> None:
        # A customer managed (CUSTOM) monitor on the environment tag: it watches this environment's spend in
        # aggregate (CE API reference, AnomalyMonitor: MonitorType, MonitorSpecification). Not DIMENSIONAL SERVICE:
        # an account holds one monitor per dimension (CloudFormation coverage roadmap issue 2515, "Limit exceeded on
        # dimensional spend monitor creation"), so a second environment in the account would fail to deploy, and
        # it watches the whole account. Not the project tag: every alert would repeat once per environment of the
        # account.
        self.monitor = ce.CfnAnomalyMonitor(
            self,
            "Monitor",
            monitor_name=f"{prefix}-spend",
            monitor_type="CUSTOM",
            monitor_specification=json.dumps(
                {"Tags": {"Key": ENVIRONMENT_TAG, "Values": [environment_name], "MatchOptions": ["EQUALS"]}}
            ),
        )
        impact = json.dumps(
            {
                "Dimensions": {
                    "Key": "ANOMALY_TOTAL_IMPACT_ABSOLUTE",
                    "MatchOptions": ["GREATER_THAN_OR_EQUAL"],
                    "Values": [f"{settings.anomaly_impact_usd:g}"],
                }
            }
        )
        # Cost Explorer sends IMMEDIATE alerts over SNS only, DAILY and WEEKLY summaries by e-mail only (CE API
        # reference, AnomalySubscription: Frequency), hence one subscription per channel.
        self.subscriptions = [
            ce.CfnAnomalySubscription(
                self,
                "ToTopic",
                subscription_name=f"{prefix}-anomalies-to-topic",
                frequency="IMMEDIATE",
                monitor_arn_list=[self.monitor.attr_monitor_arn],
                subscribers=[ce.CfnAnomalySubscription.SubscriberProperty(type="SNS", address=topic.topic_arn)],
                threshold_expression=impact,
            )
        ]
        if settings.emails:
            self.subscriptions.append(
                ce.CfnAnomalySubscription(
                    self,
                    "DailyEmail",
                    subscription_name=f"{prefix}-anomalies-daily",
                    frequency="DAILY",
                    monitor_arn_list=[self.monitor.attr_monitor_arn],
                    subscribers=[
                        ce.CfnAnomalySubscription.SubscriberProperty(type="EMAIL", address=email)
                        for email in settings.emails
                    ],
                    threshold_expression=impact,
                )
            )
