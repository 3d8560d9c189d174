"""Budgets and cost anomaly alerts (issue 20): one monthly budget and one anomaly monitor per environment, on the
environment's cost allocation tag, notifying the alarm topic; the topic and its key let AWS Budgets and Cost Anomaly
Detection in, for this account only.

Cost Management User Guide: "Creating an Amazon SNS topic for budget notifications" (topic policy with
aws:SourceAccount and aws:SourceArn arn:aws:budgets::<account>:*; key policy for encrypted topics), "Creating an
Amazon SNS topic for anomaly notifications" (costalerts.amazonaws.com, aws:SourceAccount); SNS Developer Guide, "Key
management" (event sources and encrypted topics); Budgets API reference, Notification (10 notifications, one SNS and
10 e-mail subscribers); CE API reference, AnomalySubscription (IMMEDIATE over SNS, DAILY/WEEKLY by e-mail).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from ml_constructs.alarm_topic import alarm_topic
from ml_constructs.cost_alerts import CostAlerts
from platform_config import ConfigError, CostSettings, load_environments
from tests.config_context import with_change
from tests.infra.conftest import Synthesized

ACCOUNT = "123456789012"  # the session synth's default account
ENVIRONMENTS = ("dev", "staging", "prod")


def only(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, sorted(resources)
    [(logical_id, resource)] = resources.items()
    return logical_id, resource


def alarm_topic_id(synthesized: Synthesized, env: str) -> str:
    """The topic whose policy lets this environment's CloudWatch alarms in: the environment's alarm topic."""
    policies = synthesized.resources(env, "inference", "AWS::SNS::TopicPolicy")
    for policy in policies.values():
        sids = {s.get("Sid") for s in policy["Properties"]["PolicyDocument"]["Statement"]}
        if "CloudWatchAlarmsOfThisEnvironment" in sids:
            [topic] = policy["Properties"]["Topics"]
            return str(topic["Ref"])
    raise AssertionError(f"{env}: no alarm topic")


def topic_statements(synthesized: Synthesized, env: str) -> tuple[str, dict[str, dict[str, Any]]]:
    topic = alarm_topic_id(synthesized, env)
    for logical_id, policy in synthesized.resources(env, "inference", "AWS::SNS::TopicPolicy").items():
        if policy["Properties"]["Topics"] == [{"Ref": topic}]:
            statements = policy["Properties"]["PolicyDocument"]["Statement"]
            return logical_id, {s.get("Sid", ""): s for s in statements}
    raise AssertionError(f"{env}: no policy on {topic}")


def environment_settings(env: str, context: dict[str, Any]) -> Any:
    [settings] = load_environments(context["ml-platform"], selected=env, default_account=ACCOUNT)
    return settings


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_monthly_cost_budget_on_the_environment_tag_notifies_the_alarm_topic(
    synthesized: Synthesized, env: str
) -> None:
    settings = environment_settings(env, synthesized.context)
    _, budget = only(synthesized.resources(env, "inference", "AWS::Budgets::Budget"))
    data = budget["Properties"]["Budget"]
    assert data["BudgetName"] == f"mlapi-{env}-monthly"
    assert (data["BudgetType"], data["TimeUnit"]) == ("COST", "MONTHLY")
    assert data["BudgetLimit"] == {"Amount": settings.cost.monthly_budget_usd, "Unit": "USD"}
    assert data["CostFilters"] == {"TagKeyValue": [f"user:environment${env}"]}
    topic = alarm_topic_id(synthesized, env)
    notified = set()
    for entry in budget["Properties"]["NotificationsWithSubscribers"]:
        notification = entry["Notification"]
        assert (notification["ComparisonOperator"], notification["ThresholdType"]) == ("GREATER_THAN", "PERCENTAGE")
        assert entry["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": topic}}]
        notified.add((notification["NotificationType"], notification["Threshold"]))
    expected = {("ACTUAL", value) for value in settings.cost.actual_threshold_percent}
    expected |= {("FORECASTED", value) for value in settings.cost.forecast_threshold_percent}
    assert notified == expected
    assert {("ACTUAL", 80.0), ("ACTUAL", 100.0), ("FORECASTED", 100.0)} <= notified


def test_budgets_differ_per_environment_as_configured(synthesized: Synthesized) -> None:
    amounts = {
        env: only(synthesized.resources(env, "inference", "AWS::Budgets::Budget"))[1]["Properties"]["Budget"][
            "BudgetLimit"
        ]["Amount"]
        for env in ENVIRONMENTS
    }
    assert amounts == {"dev": 400, "staging": 800, "prod": 1500}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_filtered_tag_is_the_one_the_environment_stacks_carry(synthesized: Synthesized, env: str) -> None:
    # A budget or monitor filtered on a tag nothing carries tracks 0 USD forever, silently.
    for stack in ("data", "network", "inference"):
        tagged = [
            r
            for r in synthesized.templates[(env, stack)]["Resources"].values()
            if isinstance(r.get("Properties", {}).get("Tags"), list)
        ]
        assert tagged, stack
        for resource in tagged:
            assert {"Key": "environment", "Value": env} in resource["Properties"]["Tags"], (stack, resource["Type"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_an_anomaly_monitor_on_the_environment_tag_alerts_the_topic_at_once(synthesized: Synthesized, env: str) -> None:
    settings = environment_settings(env, synthesized.context)
    monitor_id, monitor = only(synthesized.resources(env, "inference", "AWS::CE::AnomalyMonitor"))
    assert monitor["Properties"]["MonitorType"] == "CUSTOM"
    assert "MonitorDimension" not in monitor["Properties"]
    assert json.loads(monitor["Properties"]["MonitorSpecification"]) == {
        "Tags": {"Key": "environment", "Values": [env], "MatchOptions": ["EQUALS"]}
    }
    topic = alarm_topic_id(synthesized, env)
    # The shipped config has no cost e-mails: one subscription, to the topic.
    _, subscription = only(synthesized.resources(env, "inference", "AWS::CE::AnomalySubscription"))
    props = subscription["Properties"]
    assert props["Frequency"] == "IMMEDIATE"
    assert props["MonitorArnList"] == [{"Fn::GetAtt": [monitor_id, "MonitorArn"]}]
    assert props["Subscribers"] == [{"Type": "SNS", "Address": {"Ref": topic}}]
    assert json.loads(props["ThresholdExpression"]) == {
        "Dimensions": {
            "Key": "ANOMALY_TOTAL_IMPACT_ABSOLUTE",
            "MatchOptions": ["GREATER_THAN_OR_EQUAL"],
            "Values": [f"{settings.cost.anomaly_impact_usd:g}"],
        }
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_topic_lets_budgets_and_cost_anomaly_detection_of_this_account_publish(
    synthesized: Synthesized, env: str
) -> None:
    topic = alarm_topic_id(synthesized, env)
    policy_id, statements = topic_statements(synthesized, env)
    budgets = statements["BudgetsOfThisAccount"]
    assert budgets["Effect"] == "Allow"
    assert budgets["Principal"] == {"Service": "budgets.amazonaws.com"}
    assert budgets["Action"] == "sns:Publish"
    assert budgets["Resource"] == {"Ref": topic}
    assert budgets["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:budgets::{ACCOUNT}:*"},
    }
    anomalies = statements["CostAnomalyDetectionOfThisAccount"]
    assert anomalies["Principal"] == {"Service": "costalerts.amazonaws.com"}
    assert (anomalies["Effect"], anomalies["Action"], anomalies["Resource"]) == ("Allow", "sns:Publish", {"Ref": topic})
    assert anomalies["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    # Both services are pointed at the topic only once the policy lets them in ("Invalid SNS topic" otherwise).
    for kind in ("AWS::Budgets::Budget", "AWS::CE::AnomalySubscription"):
        for resource in synthesized.resources(env, "inference", kind).values():
            assert policy_id in resource.get("DependsOn", []), kind


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_topic_key_lets_both_services_encrypt_for_this_accounts_topics_only(
    synthesized: Synthesized, env: str
) -> None:
    topic = synthesized.resources(env, "inference", "AWS::SNS::Topic")[alarm_topic_id(synthesized, env)]
    key_import = json.dumps(topic["Properties"]["KmsMasterKeyId"])
    keys = synthesized.resources(env, "data", "AWS::KMS::Key")
    [(key_id, key)] = [(kid, k) for kid, k in keys.items() if kid in key_import]  # the key the topic uses
    statements = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Sid") == "CostAlertsEncryptForThisAccountsTopics"
    ]
    assert len(statements) == 1, key_id
    [statement] = statements
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Principal"]["Service"]) == ["budgets.amazonaws.com", "costalerts.amazonaws.com"]
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert statement["Resource"] == "*"
    region = environment_settings(env, synthesized.context).region
    assert statement["Condition"] == {
        "StringLike": {"kms:EncryptionContext:aws:sns:topicArn": f"arn:aws:sns:{region}:{ACCOUNT}:*"}
    }
    # No other key grants the two services anything.
    for other_id, other in keys.items():
        if other_id != key_id:
            assert "CostAlerts" not in json.dumps(other["Properties"]["KeyPolicy"])


def small_stack(settings: CostSettings, *, imported_key: bool = False) -> Template:
    app = App()
    stack = Stack(app, "Costs", env={"account": ACCOUNT, "region": "eu-west-1"})
    key: kms.IKey = (
        kms.Key.from_key_arn(stack, "Key", f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000")
        if imported_key
        else kms.Key(stack, "Key")
    )
    topic: sns.Topic = alarm_topic(stack, "Topic", prefix="mlapi-dev", key=key, emails=())
    CostAlerts(
        stack, "CostAlerts", prefix="mlapi-dev", environment_name="dev", settings=settings, topic=topic, topic_key=key
    )
    return Template.from_stack(stack)


def test_cost_emails_get_every_budget_notification_and_a_daily_anomaly_summary() -> None:
    emails = ("finance@example.com", "ml-operations@example.com")
    template = small_stack(
        CostSettings(
            monthly_budget_usd=250, actual_threshold_percent=(50,), forecast_threshold_percent=(90, 110), emails=emails
        )
    )
    [budget] = template.find_resources("AWS::Budgets::Budget").values()
    notifications = budget["Properties"]["NotificationsWithSubscribers"]
    assert {(n["Notification"]["NotificationType"], n["Notification"]["Threshold"]) for n in notifications} == {
        ("ACTUAL", 50),
        ("FORECASTED", 90),
        ("FORECASTED", 110),
    }
    for entry in notifications:
        assert entry["Subscribers"][0]["SubscriptionType"] == "SNS"
        assert [s["Address"] for s in entry["Subscribers"][1:]] == list(emails)
        assert {s["SubscriptionType"] for s in entry["Subscribers"][1:]} == {"EMAIL"}
    template.resource_count_is("AWS::CE::AnomalySubscription", 2)
    template.has_resource_properties(
        "AWS::CE::AnomalySubscription",
        {
            "Frequency": "DAILY",
            "Subscribers": [{"Type": "EMAIL", "Address": email} for email in emails],
            "SubscriptionName": "mlapi-dev-anomalies-daily",
        },
    )
    template.has_resource_properties(
        "AWS::CE::AnomalySubscription",
        {"Frequency": "IMMEDIATE", "Subscribers": [Match.object_like({"Type": "SNS"})]},
    )


def test_anomaly_alerts_can_be_left_out_and_the_budget_stays() -> None:
    template = small_stack(CostSettings(anomaly_alerts=False, emails=("finance@example.com",)))
    template.resource_count_is("AWS::CE::AnomalyMonitor", 0)
    template.resource_count_is("AWS::CE::AnomalySubscription", 0)
    template.resource_count_is("AWS::Budgets::Budget", 1)


def test_an_imported_topic_key_fails_synth_instead_of_dropping_the_key_grant() -> None:
    with pytest.raises(ValueError, match="imported"):
        small_stack(CostSettings(), imported_key=True)


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        ("environments.dev.cost.monthly_budget_usd", 0, "environments.dev.cost.monthly_budget_usd", "positive"),
        ("environments.dev.cost.monthly_budget_usd", "400", "environments.dev.cost.monthly_budget_usd", "a number"),
        ("environments.prod.cost.actual_threshold_percent", [80, 0], "cost.actual_threshold_percent[1]", "percentage"),
        ("environments.prod.cost.actual_threshold_percent", [80, 80], "cost.actual_threshold_percent[1]", "twice"),
        (
            "environments.staging.cost.forecast_threshold_percent",
            list(range(10, 100, 10)),
            "environments.staging.cost.forecast_threshold_percent",
            "over the 10 notifications",
        ),
        ("defaults.cost.emails", ["not-an-address"], "environments.dev.cost.emails[0]", "not an email address"),
        (
            "defaults.cost.emails",
            [f"u{i}@example.com" for i in range(11)],
            "environments.dev.cost.emails",
            "at most 10",
        ),
        ("environments.dev.cost.budget", 5, "environments.dev.cost.budget", "unknown key"),
        ("environments.dev.cost.anomaly_impact_usd", -1, "environments.dev.cost.anomaly_impact_usd", "non-negative"),
        ("environments.dev.cost.anomaly_alerts", "no", "environments.dev.cost.anomaly_alerts", "true or false"),
    ],
)
def test_bad_cost_settings_fail_naming_the_dotted_key(path: str, value: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_environments(with_change(path, value))
    assert raised.value.key.endswith(key), raised.value.key
    assert raised.value.key.startswith("ml-platform.environments.")
    assert fragment in str(raised.value)


def test_no_threshold_at_all_fails_naming_the_key() -> None:
    context = with_change("defaults.cost.actual_threshold_percent", [])
    context["defaults"]["cost"]["forecast_threshold_percent"] = []
    with pytest.raises(ConfigError, match=r"environments\.dev\.cost\.actual_threshold_percent'.*notifies nobody"):
        load_environments(context)


# Cheaper defaults that cost no safety (issue 20), each measured with `make cost` (README "Cost"):
# - the API's access and execution logs are kept as long as the environment's other logs in dev (30 days) and
#   staging (90); production keeps a year;
# - dev and staging capture a fifth of their requests: only production's captured traffic feeds retraining
#   (pipeline.training, README "train"), and staging's traffic is mostly the pipeline's own test requests, which the
#   drift job leaves out anyway; production captures everything.
API_LOG_RETENTION = {"dev": 30, "staging": 90, "prod": 365}
CAPTURE_PERCENT = {"dev": 20, "staging": 20, "prod": 100}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_api_logs_are_kept_per_environment(synthesized: Synthesized, env: str) -> None:
    groups = {
        logical_id: group["Properties"]["RetentionInDays"]
        for logical_id, group in synthesized.resources(env, "inference", "AWS::Logs::LogGroup").items()
        if logical_id.startswith(("ApiAccessLogs", "ApiExecutionLogs"))
    }
    assert len(groups) == 2, groups
    assert set(groups.values()) == {API_LOG_RETENTION[env]}
    assert environment_settings(env, synthesized.context).api.access_log_retention_days == API_LOG_RETENTION[env]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_capture_samples_dev_and_staging_and_keeps_all_of_production(synthesized: Synthesized, env: str) -> None:
    _, config = only(synthesized.resources(env, "inference", "AWS::SageMaker::EndpointConfig"))
    capture = config["Properties"]["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == CAPTURE_PERCENT[env]
