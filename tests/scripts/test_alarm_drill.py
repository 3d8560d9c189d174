"""The alarm drill against moto (CloudWatch, SNS, DynamoDB, SageMaker, Logs) and the real rollback controller.

moto implements SetAlarmState but not DescribeAlarmHistory, and nothing in moto turns an alarm's state change
into an SNS publish or an EventBridge event. `FakeCloudWatch` does what CloudWatch does on a state change
(SetAlarmState API Reference: "When the updated state differs from the previous value, the action configured for
the appropriate state is invoked"): it records the StateUpdate and Action history items (AlarmHistoryItem
layout: HistoryItemType, HistorySummary, HistoryData) and delivers the "CloudWatch Alarm State Change" event to
the real controller handler (lambda_src/releases/release_history/controller.py), which writes its decision into
the moto release table exactly as it does in AWS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.cloudwatch.models import cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends

from scripts import alarm_drill

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "lambda_src" / "releases") not in sys.path:
    sys.path.append(str(ROOT / "lambda_src" / "releases"))  # the Lambda's code root, as its own tests do

from release_history import controller  # noqa: E402
from release_history.repository import Release, ReleaseRepository, Status  # noqa: E402
from release_history.runtime import get_runtime  # noqa: E402
from release_history.timeutil import iso  # noqa: E402

from tests.release_table import create_release_table  # noqa: E402

REGION = "eu-west-1"
PREFIX = "mlapi-dev"
ALARM = f"{PREFIX}-container-error-rate"
ENDPOINT = f"{PREFIX}-endpoint"
TABLE = f"{PREFIX}-releases"
CONFIGS = (f"{ENDPOINT}-v1", f"{ENDPOINT}-v2")
SNS_DENIED = (
    'Received error: "Resource: arn:aws:cloudwatch:{region}:{account}:alarm:{alarm} is not authorized to perform: '
    'SNS:Publish on resource: {topic} because no resource-based policy allows the SNS:Publish action"'
)


@dataclass
class FakeCloudWatch:
    """What CloudWatch does after SetAlarmState that moto does not: history items and the EventBridge event."""

    topic: str
    action_error: str | None = None  # None: SNS accepted the publish
    deliver_event: bool = True  # False: the GuardAlarms rule never invokes the controller
    pending: set[str] = field(default_factory=set)  # e-mail endpoints that never confirmed
    items: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def on_set_alarm_state(self, **_: Any) -> None:
        alarm = cloudwatch_backends[DEFAULT_ACCOUNT_ID][REGION].alarms[ALARM]
        previous = alarm.history[-1][3]  # moto keeps (type, reason, data, state, timestamp) of the old state
        if previous == alarm.state_value:
            return  # no transition: no history item, no action, no event
        at = alarm.state_updated_timestamp.replace(tzinfo=UTC)
        new_state = {"stateValue": alarm.state_value, "stateReason": alarm.state_reason}
        if alarm.state_reason_data:
            new_state["stateReasonData"] = json.loads(alarm.state_reason_data)
        summary = f"Alarm updated from {previous} to {alarm.state_value}"
        self.items.append(self._item("StateUpdate", at, summary, {"newState": new_state}))
        if self.action_error is None:
            summary, data = f"Successfully executed action {self.topic}", {"actionState": "Succeeded"}
        else:
            summary = f"Failed to execute action {self.topic}. {self.action_error}"
            data = {"actionState": "Failed", "error": self.action_error}
        self.items.append(self._item("Action", at, summary, {**data, "notificationResource": self.topic}))
        # The GuardAlarms rule matches ALARM transitions only.
        if self.deliver_event and alarm.state_value == "ALARM":
            self.decisions.append(controller.handler(self._event(alarm, at, previous), LambdaContext()))

    @staticmethod
    def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)  # before-call only sees the serialized request

    def on_describe_history(self, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        params = context["api_params"]
        start = params["StartDate"]
        items = [
            item
            for item in self.items
            if item["HistoryItemType"] == params.get("HistoryItemType") and item["Timestamp"] >= start
        ]
        # CloudWatch returns the newest first.
        answer = {"AlarmHistoryItems": sorted(items, key=lambda i: i["Timestamp"], reverse=True)}
        return AWSResponse("https://monitoring.amazonaws.com/", 200, {}, None), answer

    def on_list_subscriptions(self, parsed: dict[str, Any], **_: Any) -> None:
        # An unconfirmed subscription is listed with the SubscriptionArn "PendingConfirmation".
        for sub in parsed.get("Subscriptions", []):
            if sub.get("Endpoint") in self.pending:
                sub["SubscriptionArn"] = "PendingConfirmation"

    @staticmethod
    def _item(kind: str, at: datetime, summary: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "AlarmName": ALARM,
            "AlarmType": "MetricAlarm",
            "Timestamp": at,
            "HistoryItemType": kind,
            "HistorySummary": summary,
            "HistoryData": json.dumps({"version": "1.0", **data}),
        }

    @staticmethod
    def _event(alarm: Any, at: datetime, previous: str) -> dict[str, Any]:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"  # CloudWatch's event timestamp format
        return {
            "version": "0",
            "id": "drill-event",
            "source": "aws.cloudwatch",
            "detail-type": "CloudWatch Alarm State Change",
            "account": DEFAULT_ACCOUNT_ID,
            "time": iso(at),
            "region": REGION,
            "resources": [alarm.alarm_arn],
            "detail": {
                "alarmName": ALARM,
                "state": {"value": alarm.state_value, "reason": alarm.state_reason, "timestamp": stamp},
                "previousState": {"value": previous, "reason": "", "timestamp": stamp},
            },
        }


@dataclass
class LambdaContext:
    function_name: str = f"{PREFIX}-release-controller"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:{PREFIX}-release-controller"
    aws_request_id: str = "drill-request"


@dataclass
class World:
    session: boto3.Session
    cloud: FakeCloudWatch
    repo: ReleaseRepository

    def release(self, config: str, status: Status, minutes_ago: float) -> None:
        at = iso(datetime.now(UTC) - timedelta(minutes=minutes_ago))
        live_at = at if status in (Status.LIVE, Status.SUPERSEDED) else None
        assert self.repo.register(
            Release(
                release_id=config,
                endpoint_name=ENDPOINT,
                status=status,
                registered_at=at,
                deployed_at=at,
                live_at=live_at,
            )
        )

    def alarm_state(self) -> str:
        return cloudwatch_backends[DEFAULT_ACCOUNT_ID][REGION].alarms[ALARM].state_value


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "TABLE_NAME": TABLE,
        "ENDPOINT_NAME": ENDPOINT,
        "ALARM_NAMES": ",".join(f"{PREFIX}-{name}" for name in alarm_drill.GUARD_ALARMS),
        "POWERTOOLS_SERVICE_NAME": "release-controller",
        "POWERTOOLS_METRICS_NAMESPACE": "Test/Releases",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "AWS_API_MAX_ATTEMPTS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        topic = session.client("sns").create_topic(Name=f"{PREFIX}-alarms")["TopicArn"]
        monkeypatch.setenv("TOPIC_ARN", topic)
        for email in ("oncall@example.com", "lead@example.com"):
            session.client("sns").subscribe(TopicArn=topic, Protocol="email", Endpoint=email)
        session.client("cloudwatch").put_metric_alarm(
            AlarmName=ALARM,
            Namespace="MlApi/ModelServer",
            MetricName="Status500",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=3,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
            AlarmActions=[topic],
            OKActions=[topic],
        )
        table = _create_table(session)
        _create_endpoint(session)
        cloud = FakeCloudWatch(topic=topic)
        session.events.register("after-call.cloudwatch.SetAlarmState", cloud.on_set_alarm_state)
        session.events.register("before-parameter-build.cloudwatch.DescribeAlarmHistory", cloud.keep_params)
        session.events.register("before-call.cloudwatch.DescribeAlarmHistory", cloud.on_describe_history)
        session.events.register("after-call.sns.ListSubscriptionsByTopic", cloud.on_list_subscriptions)
        get_runtime.cache_clear()
        world = World(session=session, cloud=cloud, repo=ReleaseRepository(table, ENDPOINT))
        world.release(CONFIGS[0], Status.LIVE, minutes_ago=90)  # the first deploy, baked and live
        yield world
        get_runtime.cache_clear()


def _create_table(session: boto3.Session) -> Any:
    return create_release_table(session.resource("dynamodb"), TABLE)


def _create_endpoint(session: boto3.Session) -> None:
    sagemaker = session.client("sagemaker")
    for config in CONFIGS:
        model = config.replace("endpoint", "model")
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/sagemaker",
            PrimaryContainer={"Image": f"123.dkr.ecr/{PREFIX}:{config[-2:]}"},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {"VariantName": "main", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
            ],
        )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=CONFIGS[0])


def drill(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    argv = ["--env-prefix", PREFIX, "--wait", "0.3", "--poll", "0.05", *args]
    code = alarm_drill.main(argv, session=world.session)
    out, err = capsys.readouterr()
    return code, out, err


def test_guard_alarms_are_the_constructs_rollback_alarms() -> None:
    from ml_constructs.endpoint_alarms import ROLLBACK_ALARMS

    assert alarm_drill.GUARD_ALARMS == ROLLBACK_ALARMS


def test_working_loop_passes_with_the_notification_and_the_controllers_decision(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = drill(world, capsys)

    assert code == 0, out + err
    assert world.alarm_state() == "ALARM"  # set by the drill, with CloudWatch's own API
    assert "email oncall@example.com: confirmed" in out
    assert f"Successfully executed action {world.cloud.topic}" in out
    # The only release is live: the controller has nothing to roll back to, records that and changes nothing.
    [decision] = world.cloud.decisions
    assert decision["outcome"] == "no_last_known_good"
    assert "controller decision: no_last_known_good" in out
    assert out.strip().splitlines()[-1].startswith("VERDICT: PASS")


def test_failed_sns_publish_in_the_history_fails_the_drill(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.cloud.action_error = SNS_DENIED.format(
        region=REGION, account=DEFAULT_ACCOUNT_ID, alarm=ALARM, topic=world.cloud.topic
    )

    code, out, _ = drill(world, capsys)

    assert code == 1
    verdict = out[out.index("VERDICT: FAIL") :]
    assert "notification failed: Failed to execute action" in verdict
    assert "is not authorized to perform: SNS:Publish" in verdict
    assert world.cloud.decisions  # the controller did decide: only the notification is broken


def test_no_decision_within_the_wait_fails_and_says_where_to_look(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.cloud.deliver_event = False  # e.g. the GuardAlarms rule does not match the alarm

    code, out, _ = drill(world, capsys, "--wait", "0.2")

    assert code == 1
    assert f"no rollback-controller decision on {ALARM} in {TABLE} within 0.2 s" in out
    assert f"log group /aws/lambda/{PREFIX}-release-controller does not exist" in out
    assert "Successfully executed action" in out  # the notification part still passed


def test_a_second_drill_reads_its_own_history_and_decision_not_the_first_ones(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.cloud.action_error = SNS_DENIED.format(
        region=REGION, account=DEFAULT_ACCOUNT_ID, alarm=ALARM, topic=world.cloud.topic
    )
    assert drill(world, capsys)[0] == 1
    world.session.client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="evaluated")
    world.cloud.action_error, world.cloud.deliver_event = None, False  # fixed topic policy; the rule now broken

    code, out, _ = drill(world, capsys)

    assert code == 1
    assert "Successfully executed action" in out and "notification failed" not in out
    assert "no rollback-controller decision" in out  # the first drill's decision does not count


def test_unconfirmed_email_subscriptions_fail_the_drill(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.cloud.pending = {"oncall@example.com", "lead@example.com"}

    code, out, _ = drill(world, capsys)

    assert code == 1
    assert "email oncall@example.com: PENDING CONFIRMATION" in out
    assert "has no confirmed subscription: the notification reaches nobody" in out


def test_refuses_when_the_controller_could_really_roll_back(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.repo.register(
        Release(
            release_id="older",
            endpoint_name=ENDPOINT,
            status=Status.SUPERSEDED,
            registered_at=iso(datetime.now(UTC) - timedelta(days=1)),
            live_at=iso(datetime.now(UTC) - timedelta(days=1)),
        )
    )

    code, _, err = drill(world, capsys)

    assert code == 2
    assert "may really roll mlapi-dev-endpoint back" in err and "release_history freeze" in err
    assert world.alarm_state() == "OK"  # refused before touching the alarm
    assert not world.cloud.decisions


def test_frozen_rollback_lets_the_drill_run_and_the_controller_only_reports(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # v2 is live on the endpoint, v1 was live before it: a real alarm would roll back to v1.
    world.repo.set_freeze(True, reason="alarm drill", by="operator", at=iso(datetime.now(UTC)))
    sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints[ENDPOINT].endpoint_config_name = CONFIGS[1]
    world.release(CONFIGS[1], Status.LIVE, minutes_ago=30)
    world.repo.transition(world.repo.get(CONFIGS[0]), Status.SUPERSEDED, at=iso(datetime.now(UTC)), by="t", reason="t")

    code, out, err = drill(world, capsys)

    assert code == 0, out + err
    assert world.cloud.decisions[0]["outcome"] == "frozen"
    assert sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints[ENDPOINT].endpoint_config_name == CONFIGS[1]


def test_alarm_already_in_alarm_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.session.client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="real")
    world.cloud.items.clear()
    world.cloud.decisions.clear()

    code, _, err = drill(world, capsys)

    assert code == 2 and "is in ALARM already" in err


def test_unknown_environment_prefix_names_no_alarm(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code = alarm_drill.main(["--env-prefix", "mlapi-qa"], session=world.session)

    assert code == 2
    assert "alarm mlapi-qa-container-error-rate does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --env-prefix"),
        (["--env-prefix", "mlapi-dev", "--alarm", "cpu"], "argument --alarm: invalid choice: 'cpu'"),
        (["--env-prefix", "mlapi-dev-"], "is not a resource prefix like mlapi-dev"),
        (["--env-prefix", "mlapi-dev-container-error-rate-"], "is not a resource prefix"),
        (["--env-prefix", "mlapi-dev", "--wait", "-1"], "--wait must be >= 0"),
        (["--env-prefix", "mlapi-dev", "--wait", "soon"], "argument --wait: invalid float value"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        alarm_drill.main(argv)

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
