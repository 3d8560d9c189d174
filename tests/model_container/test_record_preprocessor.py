"""The Model Monitor record preprocessor, run as the analyzer runs it: the rendered file on its own."""

from __future__ import annotations

import base64
import json
import random
from types import SimpleNamespace
from typing import Any

import pytest

from model_container.monitoring.record_preprocessor import render

NAMES = ["radius", "texture", "perimeter"]


@pytest.fixture(scope="module")
def handler() -> Any:
    namespace: dict[str, Any] = {"__name__": "record_preprocessor"}
    exec(compile(render(NAMES), "record_preprocessor.py", "exec"), namespace)  # as the analyzer loads it
    return namespace["preprocess_handler"]


def record(data: str, content_type: str, encoding: str = "JSON", output: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        endpoint_input=SimpleNamespace(data=data, encoding=encoding, observed_content_type=content_type),
        endpoint_output=SimpleNamespace(data=output, encoding="JSON", observed_content_type="application/json"),
        event_metadata={"eventId": "e-1"},
    )


def test_json_batches_become_one_row_per_instance_in_schema_order(handler: Any) -> None:
    shuffled = dict(random.Random(7).sample(list(zip(NAMES, [1, 2, 3], strict=True)), 3))
    body = json.dumps({"instances": [[0.5, 1, 2.5], shuffled]})
    assert handler(record(body, "application/json")) == [
        {"_c0": 0.5, "_c1": 1.0, "_c2": 2.5},
        {"_c0": 1.0, "_c1": 2.0, "_c2": 3.0},
    ]


def test_csv_with_parameters_and_base64_encoding_is_read(handler: Any) -> None:
    body = base64.b64encode(b"1,2,3\n4.5,5,6\n").decode()
    rows = handler(record(body, "text/csv; charset=utf-8", encoding="BASE64"))
    assert rows == [{"_c0": 1.0, "_c1": 2.0, "_c2": 3.0}, {"_c0": 4.5, "_c1": 5.0, "_c2": 6.0}]


@pytest.mark.parametrize(
    ("data", "content_type", "encoding"),
    [
        ('{"instances": [[1, 2', "application/json", "JSON"),
        ('{"instances": [[1, true, 3]]}', "application/json", "JSON"),
        ('{"instances": [{"radius": 1, "texture": 2}]}', "application/json", "JSON"),
        ("1,two,3", "text/csv", "CSV"),
        ("%%%", "text/csv", "BASE64"),
        ("<x/>", "application/xml", "JSON"),
    ],
)
def test_a_record_the_server_would_refuse_yields_no_rows_and_a_warning(
    handler: Any, data: str, content_type: str, encoding: str
) -> None:
    warnings: list[str] = []
    logger = SimpleNamespace(warning=lambda message, *args: warnings.append(message % args))
    assert handler(record(data, content_type, encoding), logger) == []
    assert warnings == ["captured record {'eventId': 'e-1'} has no readable feature rows"]


def test_in_model_quality_mode_a_single_row_prediction_is_handed_over_and_batches_are_skipped(
    handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORD_MODE", "model_quality")
    one = json.dumps({"predictions": [{"label": 1, "probability": 0.973214, "model_version": "4.0.2"}]})
    assert handler(record("[]", "application/json", output=one)) == {"label": 1, "probability": 0.973214}
    two = json.dumps({"predictions": [{"label": 1, "probability": 0.9}, {"label": 0, "probability": 0.1}]})
    warnings: list[str] = []
    logger = SimpleNamespace(warning=lambda message, *args: warnings.append(message % args))
    assert handler(record("[]", "application/json", output=two), logger) == []
    assert handler(record("[]", "application/json", output='{"error": {"code": "x"}}'), logger) == []
    assert len(warnings) == 2


@pytest.mark.parametrize(
    "metadata",
    [
        {"eventId": "e-1", "inferenceId": "pipeline-test-8f1c"},
        SimpleNamespace(event_id="e-1", inference_id="pipeline-test-8f1c"),
    ],
)
def test_the_pipelines_marked_test_traffic_is_left_out_in_both_modes(
    handler: Any, monkeypatch: pytest.MonkeyPatch, metadata: Any
) -> None:
    """Issue 13 item 3 with monitoring.engine model_monitor: the load tests' records must not reach the analyzer."""
    marked = record(json.dumps({"instances": [[1, 2, 3]]}), "application/json")
    marked.endpoint_output.data = json.dumps({"predictions": [{"label": 1, "probability": 0.9}]})
    marked.event_metadata = metadata
    assert handler(marked) == []
    monkeypatch.setenv("RECORD_MODE", "model_quality")
    assert handler(marked) == []
    consumer = record(marked.endpoint_input.data, "application/json", output=marked.endpoint_output.data)
    consumer.event_metadata = {"eventId": "e-2", "inferenceId": "7c1d-api-request-id"}
    assert handler(consumer) == {"label": 1, "probability": 0.9}  # a consumer's record still counts
    monkeypatch.delenv("RECORD_MODE")
    assert handler(consumer) == [{"_c0": 1.0, "_c1": 2.0, "_c2": 3.0}]


def test_the_prefix_is_the_one_the_api_marks_and_the_drift_job_skips() -> None:
    import sys

    from ml_constructs.prediction_api import TEST_INFERENCE_ID_PREFIX as marked

    sys.path.insert(0, "lambda_src/drift_monitor")
    try:
        from drift_engine.capture_records import TEST_INFERENCE_ID_PREFIX as skipped
    finally:
        sys.path.remove("lambda_src/drift_monitor")
    from model_container.monitoring.record_preprocessor import TEST_INFERENCE_ID_PREFIX as filtered

    assert marked == skipped == filtered


@pytest.mark.parametrize(
    ("prediction", "handed_over"),
    [
        ({"label": 2, "probabilities": {"a": 0.1, "b": 0.2, "c": 0.7}}, {"label": 2}),
        ({"label": 0, "probabilities": {"a": 0.9, "b": 0.05, "c": 0.05}}, {"label": 0}),
        ({"value": 151.25}, {"value": 151.25}),
        ({"value": -3}, {"value": -3.0}),
        ({"label": True, "probabilities": {"a": 1.0}}, None),  # a boolean is not a class index
        ({"label": -1, "probabilities": {"a": 1.0}}, None),
        ({"label": 1, "probabilities": [0.2, 0.8]}, None),
        ({"value": "151"}, None),
        ({"value": None}, None),
        ({"value": False}, None),
        ({"label": 2, "probability": 0.9}, None),  # binary labels are 0 or 1
    ],
)
def test_in_model_quality_mode_each_task_hands_over_its_problem_types_attributes(
    handler: Any, monkeypatch: pytest.MonkeyPatch, prediction: dict[str, Any], handed_over: dict[str, Any] | None
) -> None:
    """Multiclass: the class index (MulticlassClassification); regression: the value (Regression)."""
    monkeypatch.setenv("RECORD_MODE", "model_quality")
    output = json.dumps({"predictions": [prediction | {"model_version": "4.0.2"}]})
    assert handler(record("[]", "application/json", output=output)) == (handed_over or [])


def test_a_positive_label_0_card_hands_model_monitor_the_probability_of_class_1(
    handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model Monitor's binary metrics take class 1 as positive (EndpointInput names no positive class,
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_EndpointInput.html); the container answers
    P(label = positive_label), so for positive_label 0 the preprocessor hands over its complement."""
    monkeypatch.setenv("RECORD_MODE", "model_quality")
    monkeypatch.setenv("POSITIVE_LABEL", "0")
    # label 0 with P(label = 0) = 0.973214: class 1 has 0.026786, below the job's 0.5 threshold, as the label says
    output = json.dumps({"predictions": [{"label": 0, "probability": 0.973214, "model_version": "4.0.2"}]})
    assert handler(record("[]", "application/json", output=output)) == {"label": 0, "probability": 0.026786}
    monkeypatch.setenv("POSITIVE_LABEL", "1")
    assert handler(record("[]", "application/json", output=output)) == {"label": 0, "probability": 0.973214}
