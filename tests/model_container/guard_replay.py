"""Replays the container's EMF output through a CloudWatch alarm definition, as CloudWatch evaluates it.

The records are the server's own: server/metrics.py aggregates each worker's requests and server/logs.py writes
the EMF line (as the worker does every `metrics_interval_s`); they are read back from what was written. The alarm
is a synthesized `AWS::CloudWatch::Alarm` (its Properties): a single-metric alarm (Namespace, MetricName,
Dimensions, Statistic, Period) or a metric-math alarm (Metrics with MetricStat queries and one expression).
Evaluation follows CloudWatch User Guide, "Using Amazon CloudWatch alarms", "Evaluating an alarm": after each
period the last EvaluationPeriods datapoints are taken, and the alarm is in ALARM once DatapointsToAlarm of them
breach; a period without data is missing, and `notBreaching` counts it as good. Periods under 60 s need
high-resolution metrics: CloudWatch keeps only 1-minute data of a standard one, so each replayed metric must be
declared with StorageResolution 1 ("Specification: Embedded metric format", MetricDefinition).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from model_container.server.logs import LogWriter
from model_container.server.metrics import MetricsAggregator

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}
STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "Sum": sum,
    "Maximum": max,
    "Minimum": min,
    "Average": lambda values: sum(values) / len(values),
    "SampleCount": len,
}


@dataclass(frozen=True)
class Traffic:
    """What each worker answers: `before` until `release_at_s`, `after` from then on, as (status, latency ms)."""

    before: tuple[int, float]
    after: tuple[int, float]
    release_at_s: float = 300.0
    requests_per_s: int = 50  # per worker
    workers: int = 2


def emf_records(traffic: Traffic, *, model_name: str, model_version: str, interval_s: float, until_s: float) -> list:
    """The EMF records the workers write (one per worker per interval), parsed back from the written lines."""
    with tempfile.TemporaryFile() as out:
        logs = LogWriter(fd=out.fileno())
        for worker in range(traffic.workers):
            metrics = MetricsAggregator(model_name, worker)
            metrics.model_version = model_version
            next_flush = worker * interval_s / traffic.workers + interval_s  # workers start at different moments
            for tick in range(int(until_s * traffic.requests_per_s)):
                now = tick / traffic.requests_per_s
                if now >= next_flush:
                    for record in metrics.flush(now=now):
                        logs.write(record, now=now)
                    next_flush += interval_s
                status, latency_ms = traffic.after if now >= traffic.release_at_s else traffic.before
                metrics.observe(status, latency_ms, rows=1)
        logs.flush()
        out.seek(0)
        lines = os.read(out.fileno(), 1 << 26).splitlines()
    records = [orjson.loads(line) for line in lines]
    assert records and all(r["event"] == "metrics" for r in records)
    return records


def datapoints(records: list[dict[str, Any]], stat: dict[str, Any]) -> dict[int, float]:
    """A MetricStat's datapoints, by period index: its statistic over the EMF values whose Timestamp falls in it."""
    metric, period = stat["Metric"], stat["Period"]
    statistic = STATISTICS[stat["Stat"]]
    dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
    values: dict[int, list[float]] = defaultdict(list)
    for record in records:
        directive = record["_aws"]["CloudWatchMetrics"][0]
        if directive["Namespace"] != metric["Namespace"]:
            continue
        if {d for group in directive["Dimensions"] for d in group} != set(dimensions) or any(
            record.get(name) != value for name, value in dimensions.items()
        ):
            continue
        definitions = {m["Name"]: m for m in directive["Metrics"]}
        name = metric["MetricName"]
        if name not in definitions:
            continue
        if period < 60:
            assert definitions[name].get("StorageResolution") == 1, f"{name} is not a high-resolution metric"
        values[int(record["_aws"]["Timestamp"] / 1000 // period)].append(record[name])
    return {index: statistic(found) for index, found in values.items()}


def evaluate(expression: str, variables: dict[str, float]) -> float:
    python = re.sub(r"MAX\(\[([^\]]*)\]\)", r"max(\1)", expression)
    assert re.fullmatch(r"[\w\s*/+\-().,]+", python), expression
    return float(eval(python, {"__builtins__": {}, "max": max}, variables))  # names, numbers, operators only


def alarm_series(alarm: dict[str, Any], records: list[dict[str, Any]]) -> tuple[int, dict[int, float]]:
    """The alarm's period and its value per period that has data (missing periods are absent)."""
    if "Metrics" not in alarm:  # a single-metric alarm
        assert "ExtendedStatistic" not in alarm, "percentile statistics are not replayed"
        stat = {
            "Metric": {k: alarm[k] for k in ("Namespace", "MetricName", "Dimensions") if k in alarm},
            "Period": alarm["Period"],
            "Stat": alarm["Statistic"],
        }
        return alarm["Period"], datapoints(records, stat)
    queries = alarm["Metrics"]
    [expression] = [q for q in queries if q.get("ReturnData", True) and "Expression" in q]
    stats = {q["Id"]: q["MetricStat"] for q in queries if "MetricStat" in q}
    [period] = {s["Period"] for s in stats.values()}
    assert expression.get("Period", period) == period
    inputs = {name: datapoints(records, stat) for name, stat in stats.items()}
    indexes = set().union(*inputs.values())
    series = {
        index: evaluate(expression["Expression"], {name: v.get(index, 0.0) for name, v in inputs.items()})
        for index in indexes
    }
    return period, series


def detection_seconds(alarm: dict[str, Any], records: list[dict[str, Any]], release_at_s: float) -> float:
    """Seconds from `release_at_s` until the alarm is in ALARM (inf if it never is), evaluated after each period."""
    assert alarm.get("TreatMissingData") == "notBreaching"
    period, series = alarm_series(alarm, records)
    breaches = COMPARISONS[alarm["ComparisonOperator"]]
    needed = alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"])
    breaching: list[bool] = []
    for index in range(min(series, default=0), max(series, default=-1) + 1):
        breaching.append(index in series and breaches(series[index], alarm["Threshold"]))  # missing: not breaching
        if sum(breaching[-alarm["EvaluationPeriods"] :]) >= needed:
            return (index + 1) * period - release_at_s  # evaluated once the period has ended
    return math.inf
