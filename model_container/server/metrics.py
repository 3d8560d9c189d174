"""Per-worker request metrics, aggregated and flushed as CloudWatch Embedded Metric Format.

Each interval with requests gives one record with dimensions ModelName, ModelVersion: request counts, errors,
latency, Rows, and what was predicted, by the model card's task:
    binary_classification      MeanPositiveProbability (mean P(positive)), PositiveRate (share labelled positive)
    regression                 MeanPredictedValue
    multiclass_classification  one more record per class with the dimension PredictedClass (the class name):
                               PredictedClassShare, the share of the interval's rows predicted as that class
An EMF record takes its dimension values from its root members, so a class dimension needs a record per class
(CloudWatch User Guide, "Specification: Embedded metric format": DimensionSet members "must be ... the root node").
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from model_container.card import BINARY, MAX_CLASS_SHARES, MULTICLASS, OTHER_CLASSES, REGRESSION
from model_container.server.model import Tally

NAMESPACE = "MlApi/ModelServer"
# Each class name is a dimension value, so a metric stream (CloudWatch bills custom metrics per stream): past
# MAX_CLASS_SHARES classes (model_container/card.py), the rest share one stream named OTHER_CLASSES.
MAX_LATENCY_SAMPLES = 200_000  # bounds memory; counts stay exact past it
CLIENT_CLOSED = 499  # a response the client left before it could be sent: counted apart, not as a 4xx
# Stored at 1-second resolution so the guard alarms can use 10-second periods (CloudWatch User Guide,
# "Specification: Embedded metric format", MetricDefinition StorageResolution: 1 = high resolution; and
# "Using Amazon CloudWatch alarms": a high-resolution alarm's period is 10 s, 30 s or a multiple of 60 s).
HIGH_RESOLUTION = frozenset(("Requests", "Errors4xx", "Errors5xx", "LatencyP50", "LatencyP99", "LatencyMax"))


class MetricsAggregator:
    """Accumulates requests between flushes and renders one EMF record per interval."""

    def __init__(self, model_name: str, worker: int, task: str = BINARY, class_names: list[str] | None = None) -> None:
        self.model_name, self.worker = model_name, worker
        self.model_version = "none"
        self.task, self.class_names = task, list(class_names or [])  # set from the model card once it is loaded
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.rows = 0
        self.score_sum = 0.0
        self.positives = 0
        self.class_counts: Counter[int] = Counter()
        self.statuses: Counter[int] = Counter()
        self.latencies_ms: list[float] = []

    def observe(self, status: int, latency_ms: float, rows: int = 0, tally: Tally | None = None) -> None:
        self.requests += 1
        self.statuses[status] += 1
        self.rows += rows
        if tally is not None:
            self.score_sum += tally.score_sum
            self.positives += tally.positives
            if tally.class_counts is not None:
                self.class_counts.update(dict(enumerate(tally.class_counts)))
        if len(self.latencies_ms) < MAX_LATENCY_SAMPLES:
            self.latencies_ms.append(latency_ms)

    def flush(self, now: float | None = None) -> list[dict[str, Any]]:
        """Return the EMF records for the interval ([] if idle; the request record first) and start a new one."""
        if not self.requests:
            return []
        now = time.time() if now is None else now
        latencies = np.array(self.latencies_ms)
        values: dict[str, tuple[float, str]] = {
            "Requests": (self.requests, "Count"),
            "Rows": (self.rows, "Count"),
            "Errors4xx": (
                sum(n for s, n in self.statuses.items() if 400 <= s < 500 and s != CLIENT_CLOSED),
                "Count",
            ),
            "Errors5xx": (sum(n for s, n in self.statuses.items() if s >= 500), "Count"),
            "LatencyP50": (round(float(np.percentile(latencies, 50)), 3), "Milliseconds"),
            "LatencyP99": (round(float(np.percentile(latencies, 99)), 3), "Milliseconds"),
            "LatencyMax": (round(float(latencies.max()), 3), "Milliseconds"),
        }
        for status, count in sorted(self.statuses.items()):
            if status >= 400 and status != CLIENT_CLOSED:
                values[f"Status{status}"] = (count, "Count")
        if self.statuses[CLIENT_CLOSED]:
            values["ClientClosed"] = (self.statuses[CLIENT_CLOSED], "Count")
        if self.rows and self.task == BINARY:
            values["MeanPositiveProbability"] = (round(self.score_sum / self.rows, 6), "None")
            values["PositiveRate"] = (round(self.positives / self.rows, 6), "None")
        elif self.rows and self.task == REGRESSION:
            values["MeanPredictedValue"] = (round(self.score_sum / self.rows, 6), "None")
        records = [self.record(now, "metrics", ["ModelName", "ModelVersion"], values)]
        if self.rows and self.task == MULTICLASS:
            records.extend(
                self.record(now, "class_metrics", ["ModelName", "ModelVersion", "PredictedClass"], {key: value})
                | {"PredictedClass": name}
                for name, key, value in self.class_shares()
            )
        self.reset()
        return records

    def class_shares(self) -> list[tuple[str, str, tuple[float, str]]]:
        """(class name, metric name, (share, unit)) per class: every class of the card, predicted or not."""
        names = self.class_names or [str(i) for i in sorted(self.class_counts)]
        counts = [self.class_counts[i] for i in range(len(names))]
        if len(names) > MAX_CLASS_SHARES:
            names = [*names[:MAX_CLASS_SHARES], OTHER_CLASSES]
            counts = [*counts[:MAX_CLASS_SHARES], sum(counts[MAX_CLASS_SHARES:])]
        return [
            (name, "PredictedClassShare", (round(n / self.rows, 6), "None"))
            for name, n in zip(names, counts, strict=True)
        ]

    def record(
        self, now: float, event: str, dimensions: list[str], values: dict[str, tuple[float, str]]
    ) -> dict[str, Any]:
        return {
            "_aws": {
                "Timestamp": int(now * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [dimensions],
                        "Metrics": [metric_definition(name, unit) for name, (_, unit) in values.items()],
                    }
                ],
            },
            "ModelName": self.model_name,
            "ModelVersion": self.model_version,
            "worker": self.worker,
            "event": event,
            **{name: value for name, (value, _) in values.items()},
        }


def metric_definition(name: str, unit: str) -> dict[str, Any]:
    definition: dict[str, Any] = {"Name": name, "Unit": unit}
    if name in HIGH_RESOLUTION or name.startswith("Status"):
        definition["StorageResolution"] = 1
    return definition
