"""Log chunking, EMF aggregation and environment configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from model_container.server.config import ServerConfig
from model_container.server.logs import PIPE_BUF, LogWriter, RequestLog, utc_timestamp
from model_container.server.metrics import MetricsAggregator
from model_container.server.model import Tally


def test_log_lines_are_json_and_written_in_atomic_chunks(tmp_path: Path) -> None:
    writes: list[int] = []
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    writer = LogWriter(fd=fd)
    original = writer._write_all

    def recording_write(data: bytes) -> None:
        writes.append(len(data))
        original(data)

    writer._write_all = recording_write  # type: ignore[method-assign]
    for i in range(500):
        writer.write({"event": "request", "i": i, "pad": "x" * 50})
    writer.flush()
    os.close(fd)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines] == list(range(500))
    assert max(writes) <= PIPE_BUF and len(writes) > 1


def test_utc_timestamp() -> None:
    assert utc_timestamp(0.25) == "1970-01-01T00:00:00.250Z"
    assert utc_timestamp(86400.5) == "1970-01-02T00:00:00.500Z"


def test_emf_record_aggregates_an_interval() -> None:
    metrics = MetricsAggregator("m", 0)
    assert metrics.flush() == []
    metrics.model_version = "3.2.1"
    for latency in range(1, 101):
        metrics.observe(200, float(latency), rows=2, tally=Tally(score_sum=1.0, positives=1))
    metrics.observe(400, 0.5)
    metrics.observe(503, 0.5)
    (record,) = metrics.flush(now=1000.0)
    definition = record["_aws"]["CloudWatchMetrics"][0]
    assert record["_aws"]["Timestamp"] == 1_000_000
    assert definition["Dimensions"] == [["ModelName", "ModelVersion"]]
    names = {m["Name"] for m in definition["Metrics"]}
    assert {
        "Requests",
        "Rows",
        "Errors4xx",
        "Errors5xx",
        "LatencyP50",
        "LatencyP99",
        "Status400",
        "Status503",
        "MeanPositiveProbability",
    } <= names
    assert all(name in record for name in names)
    assert (record["Requests"], record["Rows"], record["Errors4xx"], record["Errors5xx"]) == (102, 200, 1, 1)
    assert record["MeanPositiveProbability"] == 0.5 and record["LatencyP99"] > 98
    assert metrics.flush() == []  # a new interval starts empty


def test_config_from_env() -> None:
    config = ServerConfig.from_env({})
    assert (config.port, config.timeout_s, config.user) == (8080, 60, "model-server")
    assert str(config.model_dir) == "/opt/ml/model" and config.max_body_bytes == 6 * 1024 * 1024
    assert config.workers == len(os.sched_getaffinity(0)) and config.pin_workers
    assert not ServerConfig.from_env({"MODEL_SERVER_PIN_WORKERS": "0"}).pin_workers
    config = ServerConfig.from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "5",
            "MODEL_DIR": "/m",
        }
    )
    assert (config.port, config.workers, config.timeout_s, str(config.model_dir)) == (9000, 3, 5, "/m")
    with pytest.raises(SystemExit, match="SAGEMAKER_MODEL_SERVER_WORKERS"):
        ServerConfig.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "many"})
    with pytest.raises(SystemExit):
        ServerConfig.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "0"})


def logged(sample: float, statuses: list[int], latency_ms: float = 0.5) -> list[dict]:  # type: ignore[type-arg]
    logs = LogWriter()
    request_log = RequestLog(logs, sample, slow_ms=100)
    for i, status in enumerate(statuses):
        request_log.request(f"r-{i}", 0, b"POST", b"/invocations", status, 1, latency_ms, "3.2.1", None)
    return [json.loads(line) for line in logs.lines]


def test_request_log_samples_successes_and_keeps_every_error_and_slow_request() -> None:
    successes = logged(0.01, [200] * 1000)
    assert len(successes) == 10 and all(r["sample_rate"] == 0.01 for r in successes)
    assert len(logged(0.01, [400, 413, 499, 500, 503] * 20)) == 100
    assert len(logged(0.01, [200] * 50, latency_ms=250)) == 50  # slow: always
    everything = logged(1.0, [200] * 30)
    assert len(everything) == 30 and "sample_rate" not in everything[0]
    assert logged(0.0, [200] * 100) == []


def test_guard_metrics_are_high_resolution_and_client_closed_is_not_a_4xx() -> None:
    metrics = MetricsAggregator("m", 0)
    for status in (200, 404, 499, 500):
        metrics.observe(status, 1.0)
    (record,) = metrics.flush(now=1.0)
    definitions = {m["Name"]: m for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    for name in ("Requests", "Errors4xx", "Errors5xx", "LatencyP99", "Status500"):
        assert definitions[name].get("StorageResolution") == 1, name
    assert "StorageResolution" not in definitions["Rows"]  # not a guard metric: standard resolution
    assert (record["Errors4xx"], record["ClientClosed"], "Status499" in record) == (1, 1, False)


def test_serving_settings_from_the_environment() -> None:
    config = ServerConfig.from_env(
        {
            "MODEL_SERVER_KEEPALIVE_TIMEOUT": "75",
            "MODEL_SERVER_MAX_CONNECTIONS": "100",
            "MODEL_SERVER_REQUEST_LOG_SAMPLE": "0.01",
        }
    )
    assert (config.keepalive_timeout_s, config.max_connections, config.request_log_sample) == (75, 100, 0.01)
    defaults = ServerConfig.from_env({})
    assert (defaults.keepalive_timeout_s, defaults.request_log_sample, defaults.metrics_interval_s) == (300, 1.0, 5)
    with pytest.raises(SystemExit, match="MODEL_SERVER_REQUEST_LOG_SAMPLE"):
        ServerConfig.from_env({"MODEL_SERVER_REQUEST_LOG_SAMPLE": "5"})
