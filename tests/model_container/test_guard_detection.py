"""A bad release's errors put the container's guard alarm in ALARM within 60 s.

The container's EMF output (server/metrics.py, at the interval ServerConfig gives it) is fed through the alarm's
own definition as synthesized (period, metric statistic, math expression, evaluation periods, datapoints to alarm,
threshold, missing data), evaluated the way CloudWatch evaluates an M-of-N alarm: after each period, the last
EvaluationPeriods datapoints, ALARM once DatapointsToAlarm of them breach (CloudWatch User Guide, "Using Amazon
CloudWatch alarms", "Evaluating an alarm"). Periods under 60 s need high-resolution metrics, so the records must
declare StorageResolution 1 ("Specification: Embedded metric format", MetricDefinition).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

import pytest

from model_container.server.config import ServerConfig
from model_container.server.metrics import MetricsAggregator

RELEASE_AT_S = 300.0  # the bad release starts answering 500 here
REQUESTS_PER_S = 50  # per worker
WORKERS = 2


def guard_alarm() -> dict[str, Any]:
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk.assertions import Template

    from ml_constructs.endpoint_alarms import EndpointAlarms
    from platform_config import AlarmSettings

    stack = Stack(App(), "Alarms")
    EndpointAlarms(
        stack,
        "Alarms",
        prefix="p",
        settings=AlarmSettings(),
        emails=(),
        key=kms.Key(stack, "Key"),
        endpoint_name="e",
        variant_name="primary",
        api_name="a",
        api_stage="v1",
        model_name="m",
        model_version="1.0.0",
        max_instances=4,
    )
    alarms = Template.from_stack(stack).find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": "p-container-error-rate"}}
    )
    [alarm] = alarms.values()
    return dict(alarm["Properties"])


def emf_records(interval_s: float, until_s: float) -> list[dict[str, Any]]:
    """What each worker writes: one EMF record per interval, requests OK before the release, 500 after."""
    records = []
    for worker in range(WORKERS):
        metrics = MetricsAggregator("m", worker)
        metrics.model_version = "1.0.0"
        phase = worker * interval_s / WORKERS  # workers start (and flush) at different moments
        next_flush = phase + interval_s
        for tick in range(int(until_s * REQUESTS_PER_S)):
            now = tick / REQUESTS_PER_S
            if now >= next_flush:
                record = metrics.flush(now=now)
                if record:
                    records.append(record)
                next_flush += interval_s
            metrics.observe(500 if now >= RELEASE_AT_S else 200, 0.4, rows=1)
    return records


def datapoints(records: list[dict[str, Any]], stat: dict[str, Any]) -> dict[int, float]:
    """The alarm's metric, per period: the statistic over the EMF values whose Timestamp falls in it."""
    metric = stat["Metric"]
    assert stat["Stat"] == "Sum"
    period = stat["Period"]
    values: dict[int, float] = defaultdict(float)
    for record in records:
        directive = record["_aws"]["CloudWatchMetrics"][0]
        if directive["Namespace"] != metric["Namespace"]:
            continue
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        if any(record.get(name) != value for name, value in dimensions.items()):
            continue
        definitions = {m["Name"]: m for m in directive["Metrics"]}
        name = metric["MetricName"]
        if name not in definitions:
            continue
        if period < 60:  # CloudWatch keeps only 1-minute data of a standard-resolution metric
            assert definitions[name].get("StorageResolution") == 1, f"{name} is not a high-resolution metric"
        values[int(record["_aws"]["Timestamp"] / 1000 // period)] += record[name]
    return values


def evaluate(expression: str, variables: dict[str, float]) -> float:
    python = re.sub(r"MAX\(\[([^\]]*)\]\)", r"max(\1)", expression)
    assert re.fullmatch(r"[\w\s*/+\-().,]+", python), expression
    return float(eval(python, {"__builtins__": {}, "max": max}, variables))  # names, numbers, operators only


def detection_seconds(alarm: dict[str, Any], records: list[dict[str, Any]]) -> float:
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    [expression] = [q for q in queries.values() if q.get("ReturnData", True) and "Expression" in q]
    inputs = {q["Id"]: datapoints(records, q["MetricStat"]) for q in queries.values() if "MetricStat" in q}
    period = expression.get("Period") or next(q["MetricStat"]["Period"] for q in queries.values() if "MetricStat" in q)
    assert {q["MetricStat"]["Period"] for q in queries.values() if "MetricStat" in q} == {period}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm.get("TreatMissingData") == "notBreaching"
    first, last = min(min(v) for v in inputs.values()), max(max(v) for v in inputs.values())
    breaching: list[bool] = []
    for index in range(first, last + 1):
        if all(index not in v for v in inputs.values()):
            breaching.append(False)  # missing: not breaching
        else:
            value = evaluate(expression["Expression"], {name: v.get(index, 0.0) for name, v in inputs.items()})
            breaching.append(value > alarm["Threshold"])
        window = breaching[-alarm["EvaluationPeriods"] :]
        if sum(window) >= alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]):
            return (index + 1) * period - RELEASE_AT_S  # evaluated once the period has ended
    return math.inf


def test_guard_alarm_uses_10_second_periods_of_high_resolution_metrics() -> None:
    alarm = guard_alarm()
    periods = {q["MetricStat"]["Period"] for q in alarm["Metrics"] if "MetricStat" in q}
    assert periods == {10}


@pytest.mark.parametrize("interval_s", [None, 10.0])
def test_bad_release_errors_alarm_within_60_seconds(interval_s: float | None) -> None:
    """With the server's default EMF interval (and at 10 s, the longest that still fills each period)."""
    interval = interval_s or ServerConfig.from_env({}).metrics_interval_s
    alarm = guard_alarm()
    records = emf_records(interval, RELEASE_AT_S + 180)
    healthy = [r for r in records if r["_aws"]["Timestamp"] < RELEASE_AT_S * 1000]
    assert detection_seconds(alarm, healthy) == math.inf  # no false alarm before the release
    detected = detection_seconds(alarm, records)
    assert detected <= 60, f"rollback alarm in ALARM {detected:.0f} s after the release's first errors"
