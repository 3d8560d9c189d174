"""The bake check against CloudWatch answers stubbed with botocore's Stubber (moto lacks alarm history)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from scripts.bake_check import main

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALARMS = ["mlapi-staging-endpoint-5xx", "mlapi-staging-model-latency-p99"]


@pytest.fixture
def cloudwatch() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("cloudwatch", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def alarm(name: str, state: str = "OK") -> dict[str, Any]:
    return {"AlarmName": name, "StateValue": state}


def transition(name: str, new_state: str, minutes_ago: int) -> dict[str, Any]:
    data = {"oldState": {"stateValue": "OK"}, "newState": {"stateValue": new_state}}
    return {
        "AlarmName": name,
        "AlarmType": "MetricAlarm",
        "Timestamp": NOW - timedelta(minutes=minutes_ago),
        "HistoryItemType": "StateUpdate",
        "HistorySummary": f"Alarm updated from OK to {new_state}",
        "HistoryData": json.dumps(data),
    }


def expect_alarms(stubber: Stubber, alarms: list[dict[str, Any]], **query: Any) -> None:
    stubber.add_response(
        "describe_alarms",
        {"MetricAlarms": alarms, "CompositeAlarms": []},
        {"AlarmTypes": ["MetricAlarm", "CompositeAlarm"], **query},
    )


def expect_history(stubber: Stubber, name: str, items: list[dict[str, Any]], since: datetime) -> None:
    stubber.add_response(
        "describe_alarm_history",
        {"AlarmHistoryItems": items},
        {"AlarmName": name, "AlarmTypes": ANY, "HistoryItemType": "StateUpdate", "StartDate": since, "EndDate": NOW},
    )


def run(client: Any, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(list(args), cloudwatch=client, now=NOW)
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def test_quiet_window_passes(cloudwatch: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]) -> None:
    client, stubber = cloudwatch
    since = NOW - timedelta(minutes=30)
    expect_alarms(stubber, [alarm(n) for n in ALARMS], AlarmNames=ALARMS)
    for name in ALARMS:
        # An OK -> INSUFFICIENT_DATA update is not a failure.
        expect_history(stubber, name, [transition(name, "INSUFFICIENT_DATA", 5)], since)
    code, report, _ = run(client, capsys, "--alarms", ",".join(ALARMS), "--minutes", "30")
    assert code == 0 and report["passed"] and sorted(report["alarms"]) == ALARMS


def test_alarm_that_fired_and_recovered_fails(
    cloudwatch: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    client, stubber = cloudwatch
    since = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    expect_alarms(stubber, [alarm(n) for n in ALARMS], AlarmNames=ALARMS)
    expect_history(stubber, ALARMS[0], [transition(ALARMS[0], "OK", 10), transition(ALARMS[0], "ALARM", 20)], since)
    expect_history(stubber, ALARMS[1], [], since)
    code, report, err = run(client, capsys, "--alarms", ",".join(ALARMS), "--since", "2026-03-01T11:00:00Z")
    assert code == 1 and report["alarms"][ALARMS[0]]["state"] == "OK"
    assert f"alarm {ALARMS[0]} went to ALARM 1 time(s)" in err


def test_alarm_in_alarm_now_fails(cloudwatch: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]) -> None:
    client, stubber = cloudwatch
    since = NOW - timedelta(minutes=30)
    expect_alarms(stubber, [alarm(ALARMS[0], "ALARM"), alarm(ALARMS[1])], AlarmNamePrefix="mlapi-staging-")
    for name in ALARMS:
        expect_history(stubber, name, [], since)  # went to ALARM before the window: still a failure now
    code, _, err = run(client, capsys, "--alarm-prefix", "mlapi-staging-", "--minutes", "30")
    assert code == 1 and f"alarm {ALARMS[0]} is in ALARM now" in err


def test_unknown_alarm_name_fails(cloudwatch: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]) -> None:
    client, stubber = cloudwatch
    expect_alarms(stubber, [alarm(ALARMS[0])], AlarmNames=[ALARMS[0], "typo"])
    expect_history(stubber, ALARMS[0], [], NOW - timedelta(minutes=5))
    code, _, err = run(client, capsys, "--alarms", f"{ALARMS[0]},typo", "--minutes", "5")
    assert code == 1 and "alarm typo does not exist" in err


def test_prefix_matching_nothing_fails(cloudwatch: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]) -> None:
    client, stubber = cloudwatch
    expect_alarms(stubber, [], AlarmNamePrefix="nope-")
    code, _, err = run(client, capsys, "--alarm-prefix", "nope-", "--minutes", "5")
    assert code == 1 and "no alarm is named nope-*" in err


def test_aws_error_exits_3(cloudwatch: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]) -> None:
    client, stubber = cloudwatch
    stubber.add_client_error("describe_alarms", "AccessDenied", "not allowed")
    code, _, err = run(client, capsys, "--alarms", "a", "--minutes", "5")
    assert code == 3 and "AccessDenied" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--alarms", "a"],
        ["--minutes", "5"],
        ["--alarms", "a", "--since", "2030-01-01"],
        ["--alarms", " , ", "--minutes", "5"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args, cloudwatch=object(), now=NOW)
    assert exit_info.value.code == 2
