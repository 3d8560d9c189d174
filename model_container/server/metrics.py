"""Per-worker request metrics, aggregated and flushed as CloudWatch Embedded Metric Format."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

NAMESPACE = "MlApi/ModelServer"
MAX_LATENCY_SAMPLES = 200_000  # bounds memory; counts stay exact past it
CLIENT_CLOSED = 499  # a response the client left before it could be sent: counted apart, not as a 4xx
# Stored at 1-second resolution so the guard alarms can use 10-second periods (CloudWatch User Guide,
# "Specification: Embedded metric format", MetricDefinition StorageResolution: 1 = high resolution; and
# "Using Amazon CloudWatch alarms": a high-resolution alarm's period is 10 s, 30 s or a multiple of 60 s).
HIGH_RESOLUTION = frozenset(("Requests", "Errors4xx", "Errors5xx", "LatencyP50", "LatencyP99", "LatencyMax"))


class MetricsAggregator:
    """Accumulates requests between flushes and renders one EMF record per interval."""

    def __init__(self, model_name: str, worker: int) -> None:
        self.model_name, self.worker = model_name, worker
        self.model_version = "none"
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.rows = 0
        self.probability_sum = 0.0
        self.positives = 0
        self.statuses: Counter[int] = Counter()
        self.latencies_ms: list[float] = []

    def observe(
        self, status: int, latency_ms: float, rows: int = 0, probability_sum: float = 0.0, positives: int = 0
    ) -> None:
        self.requests += 1
        self.statuses[status] += 1
        self.rows += rows
        self.probability_sum += probability_sum
        self.positives += positives
        if len(self.latencies_ms) < MAX_LATENCY_SAMPLES:
            self.latencies_ms.append(latency_ms)

    def flush(self, now: float | None = None) -> dict[str, Any] | None:
        """Return the EMF record for the interval (None if idle) and start a new interval."""
        if not self.requests:
            return None
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
        if self.rows:
            values["MeanPositiveProbability"] = (round(self.probability_sum / self.rows, 6), "None")
            values["PositiveRate"] = (round(self.positives / self.rows, 6), "None")
        record: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(now * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [["ModelName", "ModelVersion"]],
                        "Metrics": [metric_definition(name, unit) for name, (_, unit) in values.items()],
                    }
                ],
            },
            "ModelName": self.model_name,
            "ModelVersion": self.model_version,
            "worker": self.worker,
            "event": "metrics",
            **{name: value for name, (value, _) in values.items()},
        }
        self.reset()
        return record


def metric_definition(name: str, unit: str) -> dict[str, Any]:
    definition: dict[str, Any] = {"Name": name, "Unit": unit}
    if name in HIGH_RESOLUTION or name.startswith("Status"):
        definition["StorageResolution"] = 1
    return definition
